"""Modules imported at their first use.

The daemon's start time and memory are mostly imported code (doc/benchmarks.rst, "Daemon
start and memory"): a module that only some features need (lxml for Atom entries: ~4.5 MiB
and ~10 ms) is bound with :class:`LazyModule` and imported when one of its attributes is
first read.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module ``name``, imported at the first attribute read (then its
    attributes are copied here: later reads cost nothing more). Raises the module's
    ImportError at that first read if it cannot be imported."""

    def __init__(self, name: str) -> None:
        self._lazy_name = name

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__") and attribute.endswith("__"):
            raise AttributeError(attribute)  # (copy, pickle... probing: not a reason to load)
        module = importlib.import_module(self._lazy_name)
        self.__dict__.update(vars(module))
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"
