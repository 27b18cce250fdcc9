"""``libervia-backend``: the daemon's command.

The asyncio reactor is installed before anything imports ``twisted.internet.reactor``.

For now the command prepares the storage: it creates or migrates the database of the user's
configuration and prints where it is (``libervia-backend db``, the default). The daemon commands
(``fg``, ``start``, ``stop``, ``status``) come with the daemon.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _install_reactor() -> None:
    from twisted.internet import asyncioreactor

    if "twisted.internet.reactor" not in sys.modules:
        asyncioreactor.install()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="libervia-backend",
        description="Libervia backend: the XMPP client daemon.",
        epilog="The configuration file is $LIBERVIA_CONFIG, else ~/.config/libervia/libervia.conf.",
    )
    parser.add_argument("-c", "--config", help="configuration file (default: see below)")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default: WARNING)")
    sub = parser.add_subparsers(dest="command")
    db = sub.add_parser(
        "db", help="create or migrate the database, then print where it is (default command)"
    )
    db.add_argument("--json", action="store_true", help="print a JSON object (for scripts)")
    return parser


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
    _install_reactor()
    from twisted.internet import task

    from libervia.backend.core import log
    from libervia.backend.core.aio import as_deferred
    from libervia.backend.core.exceptions import LiberviaError

    args = build_parser().parse_args(argv)
    log.configure(args.log_level)
    exit_code = 0

    async def run() -> None:
        nonlocal exit_code
        try:
            info = await prepare_storage(args.config)
        except LiberviaError as e:
            print(f"libervia-backend: error: {e}", file=sys.stderr)
            exit_code = 1
            return
        _print_status(info, getattr(args, "json", False))

    try:
        task.react(lambda reactor: as_deferred(run()))
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
