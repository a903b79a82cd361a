"""A minimal template engine: ``{{ name }}`` substitution with escaping."""

import html
import re

_PLACEHOLDER = re.compile(r"{{\s*([a-zA-Z_][a-zA-Z0-9_.]*)\s*(\|\s*safe\s*)?}}")


class TemplateError(Exception):
    """A template refers to a value the context does not have."""


def lookup(context: dict, dotted: str):
    """Resolve ``user.name`` against nested dictionaries and attributes."""
    value = context
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif hasattr(value, part):
            value = getattr(value, part)
        else:
            raise TemplateError(f"{dotted!r} is not defined")
    return value


def render_string(source: str, context: dict) -> str:
    """Render `source`, escaping every value unless marked ``| safe``."""
    def substitute(match):
        value = lookup(context, match.group(1))
        return str(value) if match.group(2) else html.escape(str(value))

    return _PLACEHOLDER.sub(substitute, source)


class Templates:
    """Templates loaded from a folder and cached after the first read."""

    def __init__(self, folder: str):
        self.folder = folder
        self._cache = {}

    def source(self, name: str) -> str:
        """Return the text of template `name`, reading it once."""
        if name not in self._cache:
            with open(f"{self.folder}/{name}", encoding="utf-8") as fh:
                self._cache[name] = fh.read()
        return self._cache[name]

    def render(self, name: str, **context) -> str:
        """Render template `name` with `context`."""
        return render_string(self.source(name), context)
