"""The whole bridge API (core and shipped plugins) for the documentation, without a daemon.

Plugins declare their bridge methods and signals when they are instantiated (``__init__`` does
no I/O, DESIGN.md §7), so loading them on an unstarted host with a recording bridge gives their
declarations: ``doc/bridge.rst`` lists them from there, nothing is written by hand twice.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import task

from libervia.backend.bridge.api import Arg, BridgeAPI, Method, Signal, core_api
from libervia.backend.core import plugins as plugin_loader
from libervia.backend.core.config import Config
from libervia.backend.core.main import LiberviaBackend


class _Recorder:
    """Collects declarations as the D-Bus bridge would, serves nothing."""

    def __init__(self, api: BridgeAPI) -> None:
        self.api = api

    def add_method(
        self,
        name: str,
        handler: Callable[..., Any],
        args: Sequence[Any] = (),
        returns: str = "",
        doc: str = "",
        *,
        before_ready: bool = False,
    ) -> None:
        spec = tuple(a if isinstance(a, Arg) else Arg(*a) for a in args)
        self.api.add_method(Method(name, spec, returns, doc, "plugin", before_ready))

    def add_signal(self, name: str, args: Sequence[Any] = (), doc: str = "") -> None:
        spec = tuple(a if isinstance(a, Arg) else Arg(*a) for a in args)
        self.api.add_signal(Signal(name, spec, doc, "plugin"))

    def emit(self, signal: str, *args: Any) -> None:
        pass


def full_api() -> tuple[BridgeAPI, dict[str, str]]:
    """The core declarations plus those of every plugin that loads; and the refused plugins
    (import name -> reason)."""
    api = core_api()
    loop = asyncio.new_event_loop()  # the host wants a loop to exist; nothing runs on it
    previous = None
    try:
        try:
            previous = asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:
            previous = None
        asyncio.set_event_loop(loop)
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "libervia.conf"
            conf.write_text(f"[DEFAULT]\nlocal_dir = {tmp}\n")
            host = LiberviaBackend(Config.load(conf), reactor=task.Clock())
            host.bridge = _Recorder(api)  # type: ignore[assignment]
            candidates, failures = plugin_loader.discover(host.plugins_package)
            host.plugins.refused.update(failures)
            host.plugins.load(host, candidates)
            return api, dict(host.plugins.refused)
    finally:
        asyncio.set_event_loop(previous)
        loop.close()
