"""``li``: the command-line frontend of Libervia (it talks to the daemon over the D-Bus bridge).

Entry point: :func:`libervia.cli.base.main`. The command tree is built by
:func:`libervia.cli.base.build_parser` from the command classes of the ``cmd_*`` modules.
"""
