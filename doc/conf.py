"""Sphinx configuration of the Libervia backend documentation."""

import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent
sys.path.insert(0, str(DOC.parent))

project = "Libervia backend"
author = "Libervia developers"
copyright = "2026, Libervia developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
exclude_patterns = ["_build"]
html_theme = "alabaster"
nitpicky = False
autodoc_inherit_docstrings = False

# --- generated pages -------------------------------------------------------------------------
# The bridge reference is derived from libervia/backend/bridge/api.py at each build (nothing
# generated is checked in); bridge.rst includes it.
exclude_patterns.append("_generated")


def write_bridge_reference(app: object) -> None:
    from libervia.backend.bridge.reference import full_api

    out = DOC / "_generated" / "bridge_api.rst"
    out.parent.mkdir(exist_ok=True)
    api, refused = full_api()
    if refused:
        raise RuntimeError(f"plugins not loaded, their bridge methods would be missing: {refused}")
    text = api.to_rst()
    if not out.exists() or out.read_text() != text:  # unchanged: no needless rebuild
        out.write_text(text)


def write_cli_reference(app: object) -> None:
    """li's command reference and exit codes, from its argument parser (cli.rst includes them)."""
    from libervia.cli.docgen import exit_codes_rst, reference_rst

    for name, text in (
        ("cli_reference.rst", reference_rst()),
        ("cli_exit_codes.rst", exit_codes_rst()),
    ):
        out = DOC / "_generated" / name
        out.parent.mkdir(exist_ok=True)
        if not out.exists() or out.read_text() != text:
            out.write_text(text)


def setup(app: object) -> None:
    app.connect("builder-inited", write_bridge_reference)  # type: ignore[attr-defined]
    app.connect("builder-inited", write_cli_reference)  # type: ignore[attr-defined]
