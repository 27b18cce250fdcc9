"""The bridge: how frontends reach the daemon (D-Bus).

- :mod:`.api`: the declarations of every method and signal (the single source of truth);
- :mod:`.render`: introspection XML and the documentation derived from them;
- :mod:`.errors`: exceptions -> D-Bus error names;
- :mod:`.dbus`: the D-Bus service (:class:`~.dbus.DBusBridge`).
"""

from libervia.backend.bridge.api import (
    BUS_NAME,
    ERROR_PREFIX,
    OBJECT_PATH,
    Arg,
    BridgeAPI,
    Method,
    Signal,
    core_api,
    interface_name,
)

__all__ = [
    "BUS_NAME",
    "ERROR_PREFIX",
    "OBJECT_PATH",
    "Arg",
    "BridgeAPI",
    "Method",
    "Signal",
    "core_api",
    "interface_name",
]
