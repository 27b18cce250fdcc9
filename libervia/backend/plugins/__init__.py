"""Plugins (DESIGN.md §7): one module per XEP or feature, discovered by core.plugins.

Importing this package installs the wokkel shim first, so that a plugin module may import wokkel
at its top, whatever imported it.
"""

from libervia.backend.core import compat  # noqa: F401
