"""Sphinx configuration of the Libervia backend documentation."""

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
