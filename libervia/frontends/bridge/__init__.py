"""Client side of the bridge, shared by every frontend (see :mod:`.client`)."""

from libervia.frontends.bridge.client import (
    BridgeClient,
    BridgeError,
    BridgeTimeout,
    BridgeUnavailable,
    SignalHandle,
)

__all__ = ["BridgeClient", "BridgeError", "BridgeTimeout", "BridgeUnavailable", "SignalHandle"]
