"""Converting command-line strings to Python values."""

import os

from clikit.errors import BadParameter


class ParamType:
    """Base class of value converters; `name` appears in help and errors."""

    name = "text"

    def convert(self, value: str):
        """Convert `value` or raise `BadParameter`."""
        return value

    def fail(self, message: str):
        """Raise a `BadParameter` with `message`."""
        raise BadParameter(message)


class IntType(ParamType):
    """Integers, optionally limited to a range."""

    name = "integer"

    def __init__(self, min: int = None, max: int = None):
        self.min = min
        self.max = max

    def convert(self, value: str) -> int:
        """Parse an int and check the bounds."""
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is not an integer")
        if self.min is not None and number < self.min:
            self.fail(f"{number} is smaller than {self.min}")
        if self.max is not None and number > self.max:
            self.fail(f"{number} is larger than {self.max}")
        return number


class FloatType(ParamType):
    """Floating-point numbers."""

    name = "float"

    def convert(self, value: str) -> float:
        """Parse a float."""
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number")


class BoolType(ParamType):
    """Booleans written as yes/no, true/false, on/off or 1/0."""

    name = "boolean"
    TRUE = {"1", "true", "yes", "on", "y"}
    FALSE = {"0", "false", "no", "off", "n"}

    def convert(self, value: str) -> bool:
        """Map the usual spellings to True or False."""
        lowered = value.strip().lower()
        if lowered in self.TRUE:
            return True
        if lowered in self.FALSE:
            return False
        self.fail(f"{value!r} is not a boolean")


class Choice(ParamType):
    """One of a fixed set of strings."""

    name = "choice"

    def __init__(self, choices, case_sensitive: bool = True):
        self.choices = list(choices)
        self.case_sensitive = case_sensitive

    def convert(self, value: str) -> str:
        """Return the matching choice as declared."""
        for choice in self.choices:
            if choice == value or (not self.case_sensitive and choice.lower() == value.lower()):
                return choice
        self.fail(f"{value!r} is not one of {', '.join(self.choices)}")


class PathType(ParamType):
    """A file-system path, optionally required to exist."""

    name = "path"

    def __init__(self, exists: bool = False, dir_okay: bool = True, file_okay: bool = True):
        self.exists = exists
        self.dir_okay = dir_okay
        self.file_okay = file_okay

    def convert(self, value: str) -> str:
        """Check existence and kind as configured."""
        if self.exists and not os.path.exists(value):
            self.fail(f"{value!r} does not exist")
        if not self.dir_okay and os.path.isdir(value):
            self.fail(f"{value!r} is a directory")
        if not self.file_okay and os.path.isfile(value):
            self.fail(f"{value!r} is a file")
        return value


def resolve_type(hint) -> ParamType:
    """Turn ``int``, ``float``, ``bool``, a list of choices or a ParamType into a ParamType."""
    if isinstance(hint, ParamType):
        return hint
    if hint is int:
        return IntType()
    if hint is float:
        return FloatType()
    if hint is bool:
        return BoolType()
    if isinstance(hint, (list, tuple)):
        return Choice(hint)
    return ParamType()
