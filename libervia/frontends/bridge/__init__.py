"""Client side of the bridge, shared by every frontend (see :mod:`.client`).

The names are imported on first use (PEP 562): the daemon imports
:mod:`.dbus_fast_compat` from this package and does not need the client on its start path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from libervia.frontends.bridge.client import (
        BridgeClient,
        BridgeError,
        BridgeTimeout,
        BridgeUnavailable,
        SignalHandle,
    )

__all__ = ["BridgeClient", "BridgeError", "BridgeTimeout", "BridgeUnavailable", "SignalHandle"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from libervia.frontends.bridge import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
