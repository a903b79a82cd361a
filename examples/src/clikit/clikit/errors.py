"""Errors a command line reports to its user."""


class CliError(Exception):
    """Base class of errors that end the program with a message."""

    exit_code = 1

    def format_message(self) -> str:
        """The text shown to the user."""
        return str(self)


class UsageError(CliError):
    """The command line was wrong: an unknown option, a missing argument.

    The usage line of the command is printed along with the message.
    """

    exit_code = 2

    def __init__(self, message: str, command=None):
        super().__init__(message)
        self.command = command

    def format_message(self) -> str:
        """Prefix the message with the command's usage line when known."""
        if self.command is None:
            return f"Error: {self}"
        return f"{self.command.usage()}\n\nError: {self}"


class BadParameter(UsageError):
    """A value could not be converted or failed validation."""

    def __init__(self, message: str, param_name: str = None, command=None):
        super().__init__(message, command)
        self.param_name = param_name

    def format_message(self) -> str:
        """Name the parameter in the message."""
        if self.param_name:
            return f"Error: invalid value for {self.param_name}: {self}"
        return super().format_message()


class Abort(CliError):
    """The user cancelled (Ctrl-C, or answered no to a confirmation)."""

    def format_message(self) -> str:
        """A fixed message."""
        return "Aborted!"
