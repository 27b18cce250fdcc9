"""The top-level commands of ``li``, in the order ``li --help`` lists them."""

from __future__ import annotations

from libervia.cli.base import Command, Group
from libervia.cli.cmd_blog import Blog
from libervia.cli.cmd_completion import Completion
from libervia.cli.cmd_debug import Debug
from libervia.cli.cmd_file import File
from libervia.cli.cmd_info import Info
from libervia.cli.cmd_message import Message
from libervia.cli.cmd_param import Param
from libervia.cli.cmd_ping import Ping
from libervia.cli.cmd_profile import Profile
from libervia.cli.cmd_pubsub import Pubsub
from libervia.cli.cmd_roster import Roster

COMMANDS: tuple[type[Command] | type[Group], ...] = (
    Profile,
    Message,
    Roster,
    Pubsub,
    Blog,
    File,
    Info,
    Ping,
    Param,
    Debug,
    Completion,
)
