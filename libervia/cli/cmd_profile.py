"""``li profile``: create, list, delete, connect and inspect profiles."""

from __future__ import annotations

import argparse
from typing import Any

from libervia.cli import constants as C
from libervia.cli.base import Cli, Command, CommandError, Group
from libervia.frontends.bridge.client import BridgeError

CONNECTION = "Connection"


def bool_arg(value: str) -> str:
    """``true``/``false`` (also yes/no, 1/0, on/off) as the daemon's boolean strings."""
    lowered = value.lower()
    if lowered in ("true", "yes", "1", "on"):
        return "true"
    if lowered in ("false", "no", "0", "off"):
        return "false"
    raise argparse.ArgumentTypeError(f"expected true or false, not {value!r}")


def port_arg(value: str) -> str:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}")
    return str(port)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The Connection parameters shared by ``profile create`` and ``profile modify``."""
    parser.add_argument(
        "-A",
        "--autoconnect",
        type=bool_arg,
        nargs="?",
        const="true",
        metavar="true|false",
        help="connect this profile when the daemon starts (-A alone: true)",
    )
    parser.add_argument(
        "--server",
        metavar="HOST",
        help="connect to this host instead of the one named by the JID (Force server)",
    )
    parser.add_argument(
        "--port", type=port_arg, help="connect to this port instead of 5222 (Force port)"
    )
    cert = parser.add_mutually_exclusive_group()
    cert.add_argument(
        "--no-check-certificate",
        dest="check_certificate",
        action="store_const",
        const="false",
        help="accept the server's TLS certificate even if it cannot be verified (a local "
        "server with a self-signed certificate); TLS stays required",
    )
    cert.add_argument(
        "--check-certificate",
        dest="check_certificate",
        action="store_const",
        const="true",
        help="the server's certificate must be valid (the default)",
    )


def connection_params(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(name, value) of the Connection parameters given on the command line."""
    params = []
    if args.jid is not None:
        params.append(("JabberID", args.jid))
    for name, value in (
        ("Force server", args.server),
        ("Force port", args.port),
        ("check_certificate", args.check_certificate),
        ("autoconnect", args.autoconnect),
    ):
        if value is not None:
            params.append((name, value))
    return params


class ProfileCreate(Command):
    name = "create"
    help = "create a new profile"
    description = (
        "Create a profile for an XMPP account. With -p, the profile is protected by a "
        "password: its secrets are encrypted and it needs --pwd (or -p PASSWORD here) to "
        "connect. Without -x, the XMPP password is the profile password."
    )
    examples = (
        (
            "li profile create alice -j alice@example.org -x 'xmpp password' -C",
            "create a profile and connect it at once",
        ),
        (
            "li profile create bob -j bob@localhost -x pass --server 127.0.0.1 --port 5222 "
            "--no-check-certificate",
            "an account on a local server with a self-signed certificate",
        ),
        (
            "li profile create work -j me@work.example -x pass -p 'profile password' -A",
            "a protected profile, connected when the daemon starts",
        ),
    )
    use_profile = False

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name", metavar="NAME", help="name of the new profile")
        parser.add_argument("-j", "--jid", help="XMPP address of the account (user@server)")
        parser.add_argument(
            "-x",
            "--xmpp-password",
            metavar="PASSWORD",
            help="password of the XMPP account (default: the profile password)",
        )
        parser.add_argument(
            "-p",
            "--password",
            default="",
            help="password protecting the profile (default: none, an unprotected profile)",
        )
        parser.add_argument(
            "-C",
            "--connect-now",
            action="store_true",
            help="connect the profile once it is created",
        )
        add_connection_arguments(parser)

    async def run(self, cli: Cli) -> None:
        args, bridge = cli.args, cli.bridge
        name, password = args.name, args.password
        await bridge.profile_create(name, password, "")
        try:
            if password:
                await bridge.profile_start_session(password, name)
            params = connection_params(args)
            xmpp_password = args.xmpp_password if args.xmpp_password is not None else password
            if xmpp_password:
                params.append(("Password", xmpp_password))
            for param, value in params:
                await bridge.param_set(param, value, CONNECTION, -1, name)
        except BaseException:
            # a half-made profile would be confusing: remove it, then report the error
            try:
                await bridge.profile_delete_async(name)
            except BridgeError as e:
                cli.debug(f"could not remove the half-made profile {name!r}: {e}")
            raise
        cli.out.info(f"profile {name} created")
        if args.connect_now:
            await bridge.connect(name, password, {})
            cli.out.info(f"profile {name} connected")


class ProfileList(Command):
    name = "list"
    help = "list the profiles"
    examples = (
        ("li profile list", "every profile (the default one is marked with *)"),
        ("li profile list -O json", "as a JSON list of names"),
    )
    use_profile = False
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        kind = parser.add_mutually_exclusive_group()
        kind.add_argument("--clients", action="store_true", help="client profiles only")
        kind.add_argument("--components", action="store_true", help="component profiles only")

    async def run(self, cli: Cli) -> None:
        args = cli.args
        clients = not args.components
        components = not args.clients
        profiles = list(await cli.bridge.profiles_list_get(clients, components))
        if cli.out.json:
            cli.out.show(profiles)
            return
        default = ""
        if profiles:
            try:
                default = await cli.bridge.profile_name_get(C.DEFAULT_PROFILE)
            except BridgeError:
                default = ""
        if cli.out.rich:
            cli.out.items(f"{p} *" if p == default else p for p in profiles)
        else:
            cli.out.items(profiles)


class ProfileDelete(Command):
    name = "delete"
    help = "delete a profile and everything stored for it"
    examples = (("li profile delete alice -f", "delete without asking for confirmation"),)
    use_profile = False

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name", metavar="NAME", help="profile to delete")
        parser.add_argument(
            "-f", "--force", action="store_true", help="delete without confirmation"
        )

    async def run(self, cli: Cli) -> None:
        name = await cli.bridge.profile_name_get(cli.args.name)  # ProfileUnknown if absent
        await cli.confirm(
            f"Delete profile {name!r} and all its data (history, settings)?", cli.args.force
        )
        await cli.bridge.profile_delete_async(name)
        cli.out.info(f"profile {name} deleted")


class ProfileConnect(Command):
    name = "connect"
    help = "connect a profile to its XMPP server"
    examples = (
        ("li profile connect -p alice", "connect the profile alice"),
        ("li profile connect -p work --pwd 'profile password'", "connect a protected profile"),
    )

    async def run(self, cli: Cli) -> None:
        if cli.opts.connect:  # -c: already connected by the common options
            cli.out.info(f"profile {cli.profile} connected")
            return
        already = await cli.bridge.connect(cli.profile, cli.opts.pwd or "", {})
        cli.out.info(f"profile {cli.profile} {'was already ' if already else ''}connected")


class ProfileDisconnect(Command):
    name = "disconnect"
    help = "disconnect a profile from its XMPP server"
    examples = (("li profile disconnect -p alice", "disconnect the profile alice"),)

    async def run(self, cli: Cli) -> None:
        await cli.bridge.disconnect(cli.profile)
        cli.out.info(f"profile {cli.profile} disconnected")


class ProfileInfo(Command):
    name = "info"
    help = "show a profile's settings and state"
    examples = (("li profile info -p alice -O json", "alice's settings as JSON"),)
    use_output = True
    PARAMS = (
        ("jid", "JabberID"),
        ("server", "Force server"),
        ("port", "Force port"),
        ("check_certificate", "check_certificate"),
        ("autoconnect", "autoconnect"),
    )

    async def run(self, cli: Cli) -> None:
        bridge, profile = cli.bridge, cli.profile
        data: dict[str, Any] = {"profile": profile}
        session = await bridge.profile_is_session_started(profile)
        for key, param in self.PARAMS:
            try:
                value = await bridge.param_get_a_async(param, CONNECTION, "value", -1, profile)
            except BridgeError as e:
                cli.debug(f"cannot read {CONNECTION}/{param}: {e}")
                continue
            if key in ("check_certificate", "autoconnect"):
                data[key] = value == "true"
            else:
                data[key] = value
        data["default"] = await bridge.profile_name_get(C.DEFAULT_PROFILE) == profile
        data["session_started"] = session
        data["connected"] = await bridge.is_connected(profile)
        cli.out.show(data)


class ProfileDefault(Command):
    name = "default"
    help = "print the default profile (change it with `li profile modify -D`)"
    examples = (("li profile default", "print the name of the default profile"),)
    use_profile = False
    use_output = True

    async def run(self, cli: Cli) -> None:
        cli.out.show(await cli.bridge.profile_name_get(C.DEFAULT_PROFILE))


class ProfileModify(Command):
    name = "modify"
    help = "change a profile's settings"
    examples = (
        ("li profile modify -p alice -D", "make alice the default profile"),
        ("li profile modify -p alice -x 'new password'", "change the XMPP password"),
        ("li profile modify -p alice -A false", "do not connect alice at startup"),
        (
            "li profile modify -p alice --pwd OLD -w NEW",
            "protect alice with a new profile password (--pwd: the current one)",
        ),
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-j", "--jid", help="XMPP address of the account")
        parser.add_argument(
            "-x", "--xmpp-password", metavar="PASSWORD", help="new XMPP account password"
        )
        parser.add_argument(
            "-D", "--default", action="store_true", help="make it the default profile"
        )
        parser.add_argument(
            "-w",
            "--profile-password",
            metavar="PASSWORD",
            help="new profile password protecting the profile (empty: unprotected); give the "
            "current one with --pwd",
        )
        add_connection_arguments(parser)

    async def run(self, cli: Cli) -> None:
        args, bridge, profile = cli.args, cli.bridge, cli.profile
        params = connection_params(args)
        if args.xmpp_password is not None:
            params.append(("Password", args.xmpp_password))
        if not params and not args.default and args.profile_password is None:
            raise CommandError("nothing to change (see li profile modify --help)", C.EXIT_USAGE)
        if args.profile_password is not None:
            await bridge.profile_password_set(cli.opts.pwd or "", args.profile_password, profile)
        for param, value in params:
            await bridge.param_set(param, value, CONNECTION, -1, profile)
        if args.default:
            await bridge.profile_set_default(profile)
        cli.out.info(f"profile {profile} modified")


class Profile(Group):
    name = "profile"
    help = "manage profiles (XMPP accounts)"
    subcommands = (
        ProfileConnect,
        ProfileDisconnect,
        ProfileCreate,
        ProfileDefault,
        ProfileDelete,
        ProfileInfo,
        ProfileList,
        ProfileModify,
    )
