"""Commands and groups of commands."""

import inspect
import sys

from clikit.errors import Abort, CliError, UsageError
from clikit.formatting import HelpFormatter
from clikit.options import Argument, Option
from clikit.parser import apply_environment, parse_args


class Context:
    """State shared along one invocation: the command path and an object slot."""

    def __init__(self, command, parent=None, obj=None):
        self.command = command
        self.parent = parent
        self.obj = obj if obj is not None else (parent.obj if parent else None)

    @property
    def command_path(self) -> str:
        """``tool sub subsub``: the names from the root to this command."""
        names = []
        ctx = self
        while ctx is not None:
            names.append(ctx.command.name)
            ctx = ctx.parent
        return " ".join(reversed(names))

    def find_root(self):
        """The outermost context."""
        ctx = self
        while ctx.parent is not None:
            ctx = ctx.parent
        return ctx


class Command:
    """A function exposed as a command with options and arguments.

    The function's docstring is its help text; its first line is the short
    description shown in a group's command list.
    """

    def __init__(self, name: str, callback, params=None, help: str = None, hidden: bool = False):
        self.name = name
        self.callback = callback
        self.params = list(params or getattr(callback, "__clikit_params__", []))
        self.help = help if help is not None else inspect.getdoc(callback) or ""
        self.hidden = hidden
        self.add_help_option()

    def add_help_option(self) -> None:
        """Give every command a ``--help`` flag."""
        if not any(p.name == "help" for p in self.params):
            self.params.append(Option("help", short="h", default=False, help="Show this message and exit."))

    @property
    def options(self) -> list:
        """The declared options, in order."""
        return [p for p in self.params if isinstance(p, Option)]

    @property
    def arguments(self) -> list:
        """The declared positional arguments, in order."""
        return [p for p in self.params if isinstance(p, Argument)]

    def short_help(self) -> str:
        """The first line of the help text."""
        return self.help.split("\n", 1)[0]

    def usage(self, prog: str = None) -> str:
        """The usage line, e.g. ``Usage: tool copy [OPTIONS] SRC DEST``."""
        metavars = ["[OPTIONS]"] + [a.display_name() + ("..." if a.nargs != 1 else "") for a in self.arguments]
        return f"Usage: {prog or self.name} {' '.join(metavars)}"

    def format_help(self, prog: str = None) -> str:
        """Full help: usage, description and the options table."""
        out = HelpFormatter()
        out.write_usage(prog or self.name, " ".join(["[OPTIONS]"] + [a.display_name() for a in self.arguments]))
        out.write_text(self.help)
        rows = [(", ".join(o.flags()) + ("" if o.is_flag else " " + o.type.name.upper()), o.help) for o in self.options]
        out.write_section("Options", rows)
        return out.getvalue()

    def parse(self, argv):
        """Turn `argv` into keyword arguments for the callback."""
        found = parse_args(argv, self.options)
        if found.options.get("help") == "true":
            return None
        apply_environment(self.options, found.options)
        values = {}
        for opt in self.options:
            if opt.name == "help":
                continue
            if opt.name in found.options:
                values[opt.name] = opt.convert(found.options[opt.name])
            elif opt.required:
                raise UsageError(f"missing option {opt.display_name()}", self)
            else:
                values[opt.name] = opt.default
        positionals = list(found.positionals)
        for arg in self.arguments:
            if arg.nargs == -1:
                values[arg.name] = arg.convert(positionals)
                positionals = []
            elif positionals:
                values[arg.name] = arg.convert(positionals.pop(0))
            elif arg.required:
                raise UsageError(f"missing argument {arg.display_name()}", self)
            else:
                values[arg.name] = arg.default
        if positionals:
            raise UsageError(f"unexpected extra argument {positionals[0]!r}", self)
        return values

    def invoke(self, argv, parent=None):
        """Parse `argv` and call the callback; help requests print help."""
        ctx = Context(self, parent)
        values = self.parse(argv)
        if values is None:
            print(self.format_help(ctx.command_path))
            return 0
        if "ctx" in inspect.signature(self.callback).parameters:
            values["ctx"] = ctx
        return self.callback(**values)

    def main(self, argv=None, prog: str = None) -> int:
        """Run as a program: handle errors and return an exit code."""
        argv = sys.argv[1:] if argv is None else argv
        try:
            result = self.invoke(argv)
        except KeyboardInterrupt:
            result = None
            print(Abort().format_message(), file=sys.stderr)
            return 1
        except CliError as exc:
            print(exc.format_message(), file=sys.stderr)
            return exc.exit_code
        return result if isinstance(result, int) else 0


class Group(Command):
    """A command made of subcommands: ``tool SUBCOMMAND [ARGS]``."""

    def __init__(self, name: str, callback=None, **kwargs):
        super().__init__(name, callback or (lambda **kw: None), **kwargs)
        self.commands = {}

    def add_command(self, cmd: Command, name: str = None) -> None:
        """Register `cmd` under `name` (default: its own name)."""
        self.commands[name or cmd.name] = cmd

    def command(self, name: str = None, **kwargs):
        """Decorator: make the function a subcommand of this group."""
        def decorator(fn):
            cmd = Command(name or fn.__name__.replace("_", "-"), fn, **kwargs)
            self.add_command(cmd)
            return cmd

        return decorator

    def format_help(self, prog: str = None) -> str:
        """Group help lists the visible subcommands."""
        text = super().format_help(prog)
        out = HelpFormatter()
        out.write_section("Commands", [(n, c.short_help()) for n, c in sorted(self.commands.items()) if not c.hidden])
        return text + "\n" + out.getvalue()

    def resolve_command(self, name: str) -> Command:
        """Find a subcommand, suggesting a close match on a typo."""
        if name in self.commands:
            return self.commands[name]
        from difflib import get_close_matches

        close = get_close_matches(name, list(self.commands), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"no such command {name!r}.{hint}", self)

    def invoke(self, argv, parent=None):
        """Run the group's own callback, then the chosen subcommand."""
        ctx = Context(self, parent)
        found = parse_args(argv, self.options, stop_at_positional=True)
        if found.options.get("help") == "true" or not found.rest:
            print(self.format_help(ctx.command_path))
            return 0
        self.callback(**{o.name: o.convert(found.options[o.name]) for o in self.options if o.name in found.options and o.name != "help"})
        sub = self.resolve_command(found.rest[0])
        return sub.invoke(found.rest[1:], parent=ctx)


def command(name: str = None, **kwargs):
    """Decorator: turn a function into a `Command`."""
    def decorator(fn):
        return Command(name or fn.__name__.replace("_", "-"), fn, **kwargs)

    return decorator


def group(name: str = None, **kwargs):
    """Decorator: turn a function into a `Group`."""
    def decorator(fn):
        return Group(name or fn.__name__.replace("_", "-"), fn, **kwargs)

    return decorator
