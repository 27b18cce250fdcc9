"""The wokkel shim: run wokkel 18.0.0 (its last release) on current Twisted.

wokkel imports names that Twisted dropped. Measured on Twisted 26: only
``twisted.python.compat._PY3`` and the ``twisted.python.constants`` module are really missing
(``iteritems``, ``itervalues``, ``unicode`` and ``StringType`` still exist, deprecated). This
module restores them — ``_PY3 = True``, and ``twisted.python.constants`` as an alias of the
``constantly`` package it was extracted to — and must be imported before any wokkel module
(importing it is enough; :func:`install` is idempotent).
"""

from __future__ import annotations

import sys
import types


def install() -> None:
    """Restore what wokkel needs in Twisted (idempotent)."""
    import warnings

    import twisted.python.compat as twisted_compat

    with warnings.catch_warnings():
        # the names still present in Twisted are deprecated: looking them up warns
        warnings.simplefilter("ignore", DeprecationWarning)
        _install_compat_names(twisted_compat)
    _install_constants()


def _install_compat_names(twisted_compat: types.ModuleType) -> None:
    if not hasattr(twisted_compat, "_PY3"):
        twisted_compat._PY3 = True  # type: ignore[attr-defined]
    for name, method in (("iteritems", "items"), ("itervalues", "values")):
        if not hasattr(twisted_compat, name):  # still present (deprecated) in Twisted 26
            setattr(twisted_compat, name, lambda d, _m=method: getattr(d, _m)())
    for name in ("unicode", "StringType"):
        if not hasattr(twisted_compat, name):  # still present (deprecated) in Twisted 26
            setattr(twisted_compat, name, str)


def _install_constants() -> None:
    if "twisted.python.constants" not in sys.modules:
        try:
            import twisted.python.constants  # noqa: F401
        except ImportError:
            import constantly

            module = types.ModuleType("twisted.python.constants", constantly.__doc__)
            for name in constantly.__all__:
                setattr(module, name, getattr(constantly, name))
            module.__all__ = list(constantly.__all__)  # type: ignore[attr-defined]
            sys.modules["twisted.python.constants"] = module
            import twisted.python

            twisted.python.constants = module  # type: ignore[attr-defined]


install()
