"""``python -m libervia.cli`` is ``li``."""

from libervia.cli.base import console_main

console_main()
