"""The frontend client's copy of the fixed D-Bus names."""

from __future__ import annotations

from libervia.backend.bridge import api
from libervia.frontends.bridge import client


def test_client_names_match_the_daemon() -> None:
    """The frontend client cannot import the backend: its copy of the fixed names must agree."""
    assert client.BUS_NAME == api.BUS_NAME == "org.libervia.Libervia"
    assert client.OBJECT_PATH == api.OBJECT_PATH == "/org/libervia/Libervia/bridge"
    assert client.ERROR_PREFIX == api.ERROR_PREFIX == "org.libervia.Libervia.Error."
    assert client.INTERFACES == tuple(api.interface_name(i) for i in api.INTERFACES)
