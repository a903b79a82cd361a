"""clikit: build command-line tools from decorated functions."""

from clikit.commands import Command, Group, command, group
from clikit.errors import UsageError, Abort
from clikit.options import Argument, Option, option, argument

__all__ = ["Abort", "Argument", "Command", "Group", "Option", "UsageError", "argument", "command", "group", "option"]
