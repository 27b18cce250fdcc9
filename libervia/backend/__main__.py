"""``libervia-backend``: the daemon's command.

The arguments are parsed, then the asyncio reactor is installed (for the commands that run it:
``db`` and ``fg``) before anything imports ``twisted.internet.reactor``, and the command is
dispatched:

- ``fg``, ``start``, ``stop``, ``status``: the daemon (see :mod:`libervia.backend.daemon`);
- ``db`` (the default): create or migrate the database of the user's configuration and print
  where it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from libervia.backend.core.log import check_level


def _install_reactor() -> None:
    from twisted.internet import asyncioreactor

    if "twisted.internet.reactor" not in sys.modules:
        asyncioreactor.install()


def build_parser() -> argparse.ArgumentParser:
    # the common options are accepted before and after the command (`fg --log-level DEBUG`)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--config", default=argparse.SUPPRESS, help="configuration file (default: see below)"
    )
    common.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        type=_log_level,
        help="logging level, overrides the log_level option (default: INFO; WARNING for db)",
    )
    epilog = "The configuration file is $LIBERVIA_CONFIG, else ~/.config/libervia/libervia.conf."
    parser = argparse.ArgumentParser(
        prog="libervia-backend",
        description="Libervia backend: the XMPP client daemon.",
        epilog=epilog,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "fg",
        parents=[common],
        help="run the daemon in the foreground (logs to stderr); stop it with Ctrl-C or SIGTERM",
        epilog=epilog,
    )
    start = sub.add_parser(
        "start",
        parents=[common],
        help="run the daemon in the background (logs to <local_dir>/libervia-backend.log)",
        epilog=epilog,
    )
    start.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the daemon to be ready (default: 60)",
    )
    stop = sub.add_parser(
        "stop", parents=[common], help="stop the running daemon cleanly", epilog=epilog
    )
    stop.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for it (default: 30)"
    )
    sub.add_parser(
        "status",
        parents=[common],
        help="exit code 0 if the daemon is running, 3 if not",
        epilog=epilog,
    )
    db = sub.add_parser(
        "db",
        parents=[common],
        help="create or migrate the database, then print where it is (default command)",
        epilog=epilog,
    )
    db.add_argument("--json", action="store_true", help="print a JSON object (for scripts)")
    return parser


def _log_level(value: str) -> str:
    try:
        return check_level(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


async def prepare_storage(config_path: str | None) -> dict[str, Any]:
    from libervia.backend.core.config import Config
    from libervia.backend.memory.engine import is_sqlite
    from libervia.backend.memory.schema import sqlite_path
    from libervia.backend.memory.sqla import Storage

    config = Config.load(config_path)
    storage = Storage(config.db_url)
    try:
        status = await storage.initialise()
        profiles = storage.get_profiles_list()
    finally:
        await storage.close()
    path = sqlite_path(config.db_url) if is_sqlite(config.db_url) else None
    from sqlalchemy.engine import make_url

    return {
        "config": str(config.path),
        "db_url": make_url(config.db_url).render_as_string(hide_password=True),
        "path": str(path) if path else None,
        "state": status.state.value,
        "revision": status.head,
        "previous_revision": status.revision,
        "backup": str(status.backup) if status.backup else None,
        "profiles": profiles,
    }


def _print_status(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(info))
        return
    where = info["path"] or info["db_url"]
    state = {
        "new": "created",
        "behind": f"upgraded from revision {info['previous_revision']}",
        "up_to_date": "up to date",
    }[info["state"]]
    print(f"database: {where}")
    print(f"  {state}, at revision {info['revision']}; {len(info['profiles'])} profile(s)")
    if info["backup"]:
        print(f"  backup of the previous version: {info['backup']}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in (None, "db", "fg"):
        # only these run the reactor; start/stop/status stay quick (~0.3 s less)
        _install_reactor()
    config: str | None = getattr(args, "config", None)
    log_level: str | None = getattr(args, "log_level", None)
    try:
        if args.command in (None, "db"):
            return run_db(config, log_level, getattr(args, "json", False))
        from libervia.backend import daemon

        if args.command == "fg":
            return daemon.foreground(config, log_level)
        if args.command == "start":
            return daemon.start(config, log_level, args.timeout)
        if args.command == "stop":
            return daemon.stop(config, args.timeout)
        assert args.command == "status"
        return daemon.status(config)
    except Exception as e:  # a bug: one line, the traceback only when debugging
        if log_level == "DEBUG":
            raise
        print(
            f"libervia-backend: error: unexpected {type(e).__name__}: {e} "
            "(run with --log-level DEBUG for details)",
            file=sys.stderr,
        )
        return 1


def run_db(config_path: str | None, log_level: str | None, as_json: bool) -> int:
    """``libervia-backend db``."""
    from twisted.internet import task

    from libervia.backend.core import log
    from libervia.backend.core.aio import as_deferred
    from libervia.backend.core.exceptions import LiberviaError

    log.configure(log_level or "WARNING")
    exit_code = 0

    async def run() -> None:
        nonlocal exit_code
        try:
            info = await prepare_storage(config_path)
        except LiberviaError as e:
            print(f"libervia-backend: error: {e}", file=sys.stderr)
            exit_code = 1
            return
        _print_status(info, as_json)

    try:
        task.react(lambda reactor: as_deferred(run()))
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
