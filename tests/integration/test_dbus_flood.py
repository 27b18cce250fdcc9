"""The D-Bus flood: thousands of pipelined calls on a real private dbus-daemon are all answered
and nobody is knocked off the bus (dbus-fast with our EAGAIN-safe writer).

``bus_address`` is the private dbus-daemon of ``tests/dbus.py``."""

from __future__ import annotations

import asyncio

import pytest

from libervia.frontends.bridge import dbus_fast_compat
from tests.conftest import aio


@pytest.mark.timeout(120)
@aio
async def test_flood_of_pipelined_calls(bus_address: str) -> None:
    """5,000 calls in flight with large replies: all answered, service still on the bus."""
    from dbus_fast.aio import MessageBus
    from dbus_fast.service import ServiceInterface, method

    assert dbus_fast_compat.is_installed()

    class Echo(ServiceInterface):
        def __init__(self) -> None:
            super().__init__("org.libervia.Test")

        @method()
        def echo(self, text: s) -> s:  # type: ignore[name-defined]  # noqa: F821
            return text * 50

    service = await MessageBus(bus_address=bus_address).connect()
    client = await MessageBus(bus_address=bus_address).connect()
    try:
        service.export("/test", Echo())
        await service.request_name("org.libervia.TestService")
        introspection = await client.introspect("org.libervia.TestService", "/test")
        proxy = client.get_proxy_object("org.libervia.TestService", "/test", introspection)
        interface = proxy.get_interface("org.libervia.Test")
        calls = 5000
        results = await asyncio.gather(
            *(interface.call_echo(f"{i:0200d}") for i in range(calls)), return_exceptions=True
        )
        errors = [r for r in results if not isinstance(r, str)]
        assert errors == []
        assert all(r == f"{i:0200d}" * 50 for i, r in enumerate(results))
        assert service.connected and client.connected
        # and the service still answers afterwards
        assert await interface.call_echo("x") == "x" * 50
    finally:
        service.disconnect()
        client.disconnect()
        await asyncio.gather(service.wait_for_disconnect(), client.wait_for_disconnect())


def test_install_is_idempotent() -> None:
    """install() can be called again; the writer stays ours."""
    dbus_fast_compat.install()
    dbus_fast_compat.install()
    assert dbus_fast_compat.is_installed()
