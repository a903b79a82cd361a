"""Splitting ``argv`` into option values and positional arguments."""

import os

from clikit.errors import UsageError


class ParseResult:
    """Values found on the command line, before conversion."""

    def __init__(self):
        self.options = {}
        self.positionals = []
        self.rest = []


def split_long(token: str):
    """Split ``--name=value`` into ``("--name", "value")``; no ``=`` gives None."""
    name, sep, value = token.partition("=")
    return (name, value) if sep else (name, None)


def parse_args(argv, options, stop_at_positional: bool = False) -> ParseResult:
    """Walk `argv`, matching flags to `options`.

    ``--`` ends option parsing. With `stop_at_positional`, the first
    positional and everything after it go to ``rest`` (used by groups so a
    subcommand parses its own options).
    """
    by_flag = {}
    for opt in options:
        for flag in opt.flags():
            by_flag[flag] = opt
        if opt.is_flag:
            by_flag["--no-" + opt.name.replace("_", "-")] = opt
    result = ParseResult()
    args = list(argv)
    while args:
        token = args.pop(0)
        if token == "--":
            result.positionals.extend(args)
            break
        if token.startswith("-") and token != "-":
            name, inline = split_long(token) if token.startswith("--") else (token, None)
            opt = by_flag.get(name)
            if opt is None:
                raise UsageError(f"no such option: {name}")
            if opt.is_flag:
                result.options[opt.name] = "false" if name.startswith("--no-") else "true"
                continue
            value = inline if inline is not None else _take_value(args, name)
            if opt.multiple:
                result.options.setdefault(opt.name, []).append(value)
            else:
                result.options[opt.name] = value
        elif stop_at_positional:
            result.rest = [token] + args
            break
        else:
            result.positionals.append(token)
    return result


def _take_value(args, name):
    if not args:
        raise UsageError(f"option {name} requires a value")
    return args.pop(0)


def apply_environment(options, found: dict, environ=None) -> None:
    """Fill options absent from the command line from their ``envvar``."""
    environ = os.environ if environ is None else environ
    for opt in options:
        if opt.name not in found and opt.envvar and opt.envvar in environ:
            found[opt.name] = environ[opt.envvar]
