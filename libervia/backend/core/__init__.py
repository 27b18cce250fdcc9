"""The core of the backend.

Importing any core module first installs the wokkel shim (:mod:`.compat`), so that wokkel can
be imported anywhere after ``libervia.backend.core`` (DESIGN.md §6).
"""

from libervia.backend.core import compat  # noqa: F401
