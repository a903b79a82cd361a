"""Declaring options and arguments on command functions."""

from clikit.errors import BadParameter
from clikit.types import BoolType, resolve_type


class Parameter:
    """Common behaviour of options and arguments."""

    def __init__(self, name: str, type=None, default=None, required: bool = False, help: str = "", multiple: bool = False):
        self.name = name
        self.type = resolve_type(type if type is not None else (bool if isinstance(default, bool) else None))
        self.default = default
        self.required = required
        self.help = help
        self.multiple = multiple

    def convert(self, raw):
        """Convert the raw string(s), naming this parameter on failure."""
        try:
            if self.multiple:
                return [self.type.convert(v) for v in raw]
            return self.type.convert(raw)
        except BadParameter as exc:
            exc.param_name = self.display_name()
            raise

    def display_name(self) -> str:
        """How the parameter is named in messages."""
        return self.name


class Option(Parameter):
    """A named ``--option`` with an optional short ``-o`` form.

    Boolean options are flags: present means True. ``--no-NAME`` turns a
    flag off when its default is True.
    """

    def __init__(self, name: str, short: str = None, envvar: str = None, **kwargs):
        super().__init__(name, **kwargs)
        self.short = short
        self.envvar = envvar

    @property
    def is_flag(self) -> bool:
        """Whether the option takes no value."""
        return isinstance(self.type, BoolType)

    def flags(self) -> list:
        """Every spelling that selects this option."""
        spellings = ["--" + self.name.replace("_", "-")]
        if self.short:
            spellings.append("-" + self.short)
        return spellings

    def display_name(self) -> str:
        """The long flag, as users type it."""
        return self.flags()[0]


class Argument(Parameter):
    """A positional argument; `nargs=-1` takes all remaining values."""

    def __init__(self, name: str, nargs: int = 1, **kwargs):
        kwargs.setdefault("required", nargs == 1)
        super().__init__(name, multiple=nargs != 1, **kwargs)
        self.nargs = nargs

    def display_name(self) -> str:
        """Upper-case metavar, e.g. ``FILE``."""
        return self.name.upper()


def _attach(fn, param):
    params = getattr(fn, "__clikit_params__", [])
    params.insert(0, param)
    fn.__clikit_params__ = params
    return fn


def option(name: str, short: str = None, **kwargs):
    """Declare an option on a command function."""
    def decorator(fn):
        return _attach(fn, Option(name, short=short, **kwargs))

    return decorator


def argument(name: str, **kwargs):
    """Declare a positional argument on a command function."""
    def decorator(fn):
        return _attach(fn, Argument(name, **kwargs))

    return decorator
