"""The frame of ``li``: the command tree, the global options, the run of one command.

A command is a :class:`Command` subclass (a leaf: ``li profile create``) or a :class:`Group`
(``li profile``) listing its subcommands. :func:`build_parser` turns the tree into an argparse
parser (also used for the documentation and the shell completion); :func:`main` parses the
command line, connects to the daemon through :class:`~libervia.frontends.bridge.BridgeClient`,
waits until it is ready, prepares the profile (``-p``, ``--pwd``, ``-c``), runs the command and
turns every error into one line on stderr and a documented exit code (see
:mod:`libervia.cli.constants`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import sys
import textwrap
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from libervia.cli import constants as C
from libervia.cli.output import Output
from libervia.frontends.bridge.client import (
    BridgeClient,
    BridgeError,
    BridgeTimeout,
    BridgeUnavailable,
)

#: seconds to wait for the daemon to be ready (it may be starting)
READY_TIMEOUT = 60.0

T = TypeVar("T")


async def in_thread(fn: Callable[[], T]) -> T:
    """Run a blocking read (stdin, a terminal prompt) in a daemon thread.

    Not ``asyncio.to_thread``: on Ctrl-C, ``asyncio.run`` waits for the threads of the default
    executor, so ``li`` would hang until the read ends; a daemon thread is just left behind.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result = fn()
        except BaseException as e:
            loop.call_soon_threadsafe(settle, None, e)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=work, name="li-read", daemon=True).start()
    return await future


class CommandError(Exception):
    """An error detected by ``li``: printed as one line, exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = C.EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Command:
    """A leaf command. Subclasses set the class attributes and implement :meth:`run`.

    Attributes:
        name: the word on the command line.
        help: one line, shown in the parent's list of commands.
        description: longer text for ``--help`` (default: ``help``).
        examples: (command line, what it does) pairs, shown by ``--help`` and in the docs.
        use_profile: the command acts on a profile: it gets ``-p/--profile``, ``--pwd`` and
            ``-c/--connect``, and ``cli.profile`` is the resolved profile name.
        need_connect: the profile must be connected (``-c`` connects it first; without it an
            unconnected profile is an error).
        use_output: the command prints data: it gets ``-O/--output``.
        stops_on_interrupt: Ctrl-C is the normal way to stop the command (exit code 0, not
            "cancelled").
        need_daemon: false for the few commands that work without the daemon
            (``li completion``); ``use_profile`` must then be false too.
        extra_words: name of a ``nargs="*"`` positional that also takes the words given
            after an option (``li message send JID -s SUBJECT some text``: argparse alone
            refuses "some text" there).
    """

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    description: ClassVar[str | None] = None
    examples: ClassVar[Sequence[tuple[str, str]]] = ()
    use_profile: ClassVar[bool] = True
    need_connect: ClassVar[bool] = False
    need_daemon: ClassVar[bool] = True
    stops_on_interrupt: ClassVar[bool] = False
    use_output: ClassVar[bool] = False
    extra_words: ClassVar[str | None] = None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's own arguments."""

    def wants_profile(self, args: argparse.Namespace) -> bool:
        """Whether this run acts on a profile (``use_profile``; a command may need one only
        with some arguments: ``li info version`` with a JID)."""
        return self.use_profile

    async def run(self, cli: Cli) -> None:
        raise NotImplementedError


class Group:
    """A command with subcommands (``li profile``)."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    description: ClassVar[str | None] = None
    subcommands: ClassVar[Sequence[type[Command] | type[Group]]] = ()


def examples_epilog(examples: Sequence[tuple[str, str]]) -> str | None:
    if not examples:
        return None
    lines = ["examples:"]
    for line, what in examples:
        lines.append(f"  {what}:")
        lines.append(f"    $ {line}")
    return "\n".join(lines)


def _fill(text: str) -> str:
    return textwrap.fill(text, 79)


def _exit_codes_epilog() -> str:
    lines = ["exit codes:"]
    lines += [f"  {code:>3}  {meaning}" for code, meaning in C.EXIT_CODES]
    return "\n".join(lines)


# --- the parser ----------------------------------------------------------------------------


def _common_parents() -> dict[str, argparse.ArgumentParser]:
    """Options accepted both before the command and after it (``li -p bob message send`` and
    ``li message send -p bob``). Their default is SUPPRESS, so that a value given before the
    command is not reset by the subcommand's parser; :func:`options` fills the defaults."""
    general = argparse.ArgumentParser(add_help=False)
    general.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more details (-v: debug lines on stderr and tracebacks of li's own bugs)",
    )
    general.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print only the data (no informational lines)",
    )
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument(
        "-O",
        "--output",
        choices=C.OUTPUTS,
        default=argparse.SUPPRESS,
        help="output format: default (tables and colours on a terminal), json (for scripts), "
        "simple (plain text); default: default",
    )
    profile = argparse.ArgumentParser(add_help=False)
    profile.add_argument(
        "-p",
        "--profile",
        default=argparse.SUPPRESS,
        help="profile to use (default: the default profile, @DEFAULT@)",
    )
    profile.add_argument(
        "--pwd",
        metavar="PASSWORD",
        default=argparse.SUPPRESS,
        help="profile password, to start the session of a protected profile",
    )
    profile.add_argument(
        "-c",
        "--connect",
        action="store_true",
        default=argparse.SUPPRESS,
        help="connect the profile first if it is not connected",
    )
    return {"general": general, "output": output, "profile": profile}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree of ``li``."""
    from libervia.cli.commands import COMMANDS

    parents = _common_parents()
    parser = argparse.ArgumentParser(
        prog="li",
        description="Libervia's command-line frontend: it drives the Libervia daemon "
        "(libervia-backend) over D-Bus.",
        epilog=examples_epilog(
            [
                (
                    "li profile create alice -j alice@example.org -x 'xmpp password' -C",
                    "create a profile for an XMPP account and connect it",
                ),
                ("li message send -p alice bob@example.org hello", "send a message"),
                ("li message history -p alice bob@example.org -O json", "the history as JSON"),
            ]
        )
        + "\n\n"
        + _exit_codes_epilog(),
        formatter_class=_Formatter,
        parents=[parents["general"], parents["output"], parents["profile"]],
    )
    parser.add_argument("--version", action="version", version=f"li {li_version()}")
    _add_subcommands(parser, COMMANDS, parents, ("li",))
    return parser


def _add_subcommands(
    parser: argparse.ArgumentParser,
    commands: Sequence[type[Command] | type[Group]],
    parents: dict[str, argparse.ArgumentParser],
    path: tuple[str, ...],
) -> None:
    sub = parser.add_subparsers(
        dest="_".join(path[1:] + ("command",)) if len(path) > 1 else "command",
        metavar="COMMAND",
        title="commands",
        required=True,
    )
    for cls in commands:
        if issubclass(cls, Group):
            group_parser = sub.add_parser(
                cls.name,
                help=cls.help,
                description=_fill(cls.description or cls.help),
                formatter_class=_Formatter,
                parents=[parents["general"]],
            )
            _add_subcommands(group_parser, cls.subcommands, parents, path + (cls.name,))
            continue
        command = cls()
        used = [parents["general"]]
        if cls.use_output:
            used.append(parents["output"])
        if cls.use_profile:
            used.append(parents["profile"])
        leaf = sub.add_parser(
            cls.name,
            help=cls.help,
            description=_fill(cls.description or cls.help),
            epilog=examples_epilog(cls.examples),
            formatter_class=_Formatter,
            parents=used,
        )
        command.add_arguments(leaf)
        leaf.set_defaults(_command=command)


def iter_commands(
    commands: Sequence[type[Command] | type[Group]] | None = None,
    path: tuple[str, ...] = (),
) -> list[tuple[tuple[str, ...], type[Command] | type[Group]]]:
    """Every command and group with its path (``("profile", "create")``), depth first."""
    if commands is None:
        from libervia.cli.commands import COMMANDS

        commands = COMMANDS
    found: list[tuple[tuple[str, ...], type[Command] | type[Group]]] = []
    for cls in commands:
        found.append((path + (cls.name,), cls))
        if issubclass(cls, Group):
            found.extend(iter_commands(cls.subcommands, path + (cls.name,)))
    return found


def li_version() -> str:
    try:
        return importlib.metadata.version("libervia-backend")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --- one run -------------------------------------------------------------------------------


class Options:
    """The global options with their defaults filled in."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.profile: str = getattr(args, "profile", None) or C.DEFAULT_PROFILE
        self.pwd: str | None = getattr(args, "pwd", None)
        self.connect: bool = getattr(args, "connect", False)
        self.output: str = getattr(args, "output", "default")
        self.verbose: int = getattr(args, "verbose", 0)
        self.quiet: bool = getattr(args, "quiet", False)


class Cli:
    """What a command works with: the parsed ``args``, the global ``opts``, the ``bridge``
    client, the resolved ``profile`` name and the ``out`` printer."""

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        stdout: Any = None,
        stderr: Any = None,
        bus_address: str | None = None,
    ) -> None:
        self.args = args
        self.opts = Options(args)
        self.command: Command = args._command
        self.stderr = stderr if stderr is not None else sys.stderr
        self.out = Output(self.opts.output, stdout, quiet=self.opts.quiet)
        self.bus_address = bus_address
        self._bridge: BridgeClient | None = None
        self.profile: str = ""

    @property
    def bridge(self) -> BridgeClient:
        assert self._bridge is not None, "not connected to the daemon"
        return self._bridge

    def debug(self, text: str) -> None:
        if self.opts.verbose:
            self.stderr.write(f"li: {text}\n")

    def error(self, text: str) -> None:
        self.stderr.write(f"li: error: {text}\n")
        self.stderr.flush()

    async def run(self) -> int:
        """Run the command; returns the exit code (never raises, except KeyboardInterrupt)."""
        try:
            try:
                if self.command.need_daemon:
                    self.debug("connecting to the daemon")
                    self._bridge = await BridgeClient.open(self.bus_address)
                    await self._bridge.wait_ready(timeout=READY_TIMEOUT)
                if self.command.use_profile and self.command.wants_profile(self.args):
                    await self.prepare_profile()
                await self.command.run(self)
            finally:
                if self._bridge is not None:
                    await self._bridge.close()
        except CommandError as e:
            self.error(e.message)
            return e.exit_code
        except BridgeUnavailable as e:
            text = e.message
            if C.START_HINT not in text:
                text += f" ({C.START_HINT})"
            self.error(text)
            return C.EXIT_DAEMON_UNAVAILABLE
        except BridgeTimeout as e:
            self.error(f"{e.message} (is the daemon busy or stuck? see its log)")
            return C.EXIT_TIMEOUT
        except BridgeError as e:
            self.error(describe_error(e))
            return C.ERROR_EXIT_CODES.get(e.code, C.EXIT_BRIDGE_ERROR)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as e:
            if self.opts.verbose:
                traceback.print_exc(file=self.stderr)
            self.error(
                f"internal error in li: {type(e).__name__}: {e}"
                + ("" if self.opts.verbose else " (run with -v for the traceback)")
            )
            return C.EXIT_INTERNAL_ERROR
        return C.EXIT_OK

    async def prepare_profile(self) -> None:
        """Resolve ``-p``; start the session with ``--pwd``; connect with ``-c``; check the
        connection when the command needs it."""
        self.profile = await self.bridge.profile_name_get(self.opts.profile)
        self.debug(f"profile {self.profile}")
        if self.opts.pwd is not None and not self.opts.connect:
            await self.bridge.profile_start_session(self.opts.pwd, self.profile)
        if self.opts.connect:
            await self.bridge.connect(self.profile, self.opts.pwd or "", {})
        elif self.command.need_connect and not await self.bridge.is_connected(self.profile):
            raise CommandError(
                f"profile {self.profile!r} is not connected: connect it with "
                f"`li profile connect -p {self.profile}`, or add -c to this command"
            )

    async def confirm(self, question: str, force: bool = False) -> None:
        """Ask a yes/no question on the terminal; raises CommandError(EXIT_CANCELLED) unless
        the answer is yes. ``force`` (``-f``) skips it."""
        if force:
            return
        if not sys.stdin.isatty():
            raise CommandError(
                f"{question} Not asking without a terminal: add -f to confirm",
                C.EXIT_CANCELLED,
            )
        try:
            answer = await in_thread(lambda: input(f"{question} [y/N] "))
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            raise CommandError("cancelled", C.EXIT_CANCELLED)


def describe_error(e: BridgeError) -> str:
    """One line for a bridge error: its message, then its code."""
    message = " ".join((e.message or "").split()) or "(no message)"
    if e.code == "NotConnected":
        message += " (connect the profile with `li profile connect`, or add -c)"
    return f"{message} [{e.code}]"


def _split_at(words: list[str], sep: str) -> tuple[list[str], bool, list[str]]:
    if sep in words:
        i = words.index(sep)
        return words[:i], True, words[i + 1 :]
    return words, False, []


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """``parser.parse_args``, except that the words argparse leaves after an option go to the
    command's :attr:`Command.extra_words` positional, if it has one (raises SystemExit)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        dest = getattr(args, "_command", None) and args._command.extra_words
        before, dashes, after = _split_at(extra, "--")
        if dest is None or any(word.startswith("-") and word != "-" for word in before):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        getattr(args, dest).extend(before + after)
    return args


def main(argv: Sequence[str] | None = None, *, bus_address: str | None = None) -> int:
    """Run ``li`` with ``argv`` (default: the command line); returns the exit code."""
    parser = build_parser()
    try:
        args = parse_args(parser, argv)
    except SystemExit as e:  # --help, --version (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else C.EXIT_USAGE
    cli = Cli(args, bus_address=bus_address)
    try:
        return asyncio.run(cli.run())
    except KeyboardInterrupt:
        if cli.command.stops_on_interrupt:
            return C.EXIT_OK
        cli.error("cancelled")
        return C.EXIT_CANCELLED


def console_main() -> None:
    """The ``li`` console script."""
    sys.exit(main())
