"""A fake daemon behind a real DBusBridge: handlers of every shape of signature, no XMPP.

Used in-process by the bridge tests, and as a D-Bus activatable service
(``python tests/bridge_fake.py``: connects to ``DBUS_STARTER_ADDRESS``, serves until the bus
goes away or ``SIGTERM``).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

from libervia.backend.core.exceptions import ProfileUnknownError  # noqa: E402


class FakeHandlers:
    """Core method handlers returning canned values and recording the calls."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.gate = asyncio.Event()  # a slow call waits for it

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def version_get(self) -> str:
        return "0.0.test"

    async def ready_get(self) -> None:
        await self.ready.wait()

    def profiles_list_get(self, clients: bool, components: bool) -> list[str]:
        self._record("profiles_list_get", clients, components)
        return (["alice", "bob"] if clients else []) + (["pubsub"] if components else [])

    async def profile_create(self, profile: str, password: str, component: str) -> None:
        self._record("profile_create", profile, password, component)

    def profile_name_get(self, profile_key: str) -> str:
        if profile_key == "@DEFAULT@":
            return "alice"
        raise ProfileUnknownError(f"unknown profile {profile_key!r}")

    def connect(self, profile_key: str, password: str, options: dict[str, str]) -> bool:
        self._record("connect", profile_key, password, options)
        return options.get("already") == "yes"

    async def disconnect(self, profile_key: str) -> None:
        """Slow: waits until a later call opens the gate."""
        self._record("disconnect", profile_key)
        await self.gate.wait()

    def is_connected(self, profile_key: str) -> bool:
        self.gate.set()
        return profile_key == "alice"

    def param_get_a_async(
        self, name: str, category: str, attribute: str, security_limit: int, profile_key: str
    ) -> str:
        return f"{category}/{name}/{attribute}/{security_limit}/{profile_key}"

    def contact_update(self, entity_jid: str, name: str, groups: list[str], profile: str) -> None:
        self._record("contact_update", entity_jid, name, groups, profile)

    def history_get(
        self,
        from_jid: str,
        to_jid: str,
        limit: int,
        between: bool,
        filters: dict[str, str],
        profile: str,
    ) -> list[Any]:
        self._record("history_get", from_jid, to_jid, limit, between, filters, profile)
        return [
            [f"uid{i}", 1.7e9 + i / 4, from_jid, to_jid, {"": f"m{i}"}, {}, "chat", "{}"]
            for i in range(max(limit, 0))
        ]

    def contacts_get(self, profile_key: str) -> list[Any]:
        return [["bob@example.org", {"name": "Bob"}, ["friends", "work"]]]

    def presence_statuses_get(self, profile_key: str) -> dict[str, Any]:
        return {"bob@example.org": {"phone": ["away", -1, {"": "out", "fr": "dehors"}]}}

    async def disco_infos(
        self, entity_jid: str, node: str, use_cache: bool, profile_key: str
    ) -> list[Any]:
        await asyncio.sleep(0)
        return [
            ["http://jabber.org/protocol/disco#info"],
            [["client", "pc", "Libervia"]],
            {"urn:xmpp:dataforms:softwareinfo": [[{"var": "os"}, ["Linux"]]]},
        ]

    def disco_items(
        self, entity_jid: str, node: str, use_cache: bool, profile_key: str
    ) -> list[Any]:
        return "not a list"  # type: ignore[return-value]  # a bug: wrong return type

    def contact_del(self, entity_jid: str, profile_key: str) -> None:
        raise RuntimeError(f"unexpected failure with secret {entity_jid}")


async def serve(address: str) -> None:
    """Serve the fake daemon until the bus goes away or SIGTERM."""
    from libervia.backend.bridge.dbus import DBusBridge

    handlers = FakeHandlers()
    handlers.ready.set()
    bridge = DBusBridge(handlers, bus_address=address)
    await bridge.connect()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    waits = [asyncio.ensure_future(bridge.wait_disconnected()), asyncio.ensure_future(stop.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()
    await bridge.disconnect()


if __name__ == "__main__":
    import os

    asyncio.run(serve(os.environ["DBUS_STARTER_ADDRESS"]))
