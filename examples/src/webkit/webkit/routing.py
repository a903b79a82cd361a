"""Matching request paths to handlers.

Route patterns use ``{name}`` segments, optionally typed as ``{id:int}``;
captured values are converted before the handler sees them.
"""

import re

from webkit.errors import MethodNotAllowed, NotFound

CONVERTERS = {
    "str": (r"[^/]+", str),
    "int": (r"[0-9]+", int),
    "path": (r".+", str),
    "slug": (r"[a-z0-9-]+", str),
}


def compile_pattern(pattern: str):
    """Compile a route pattern into a regex and its converters.

    ``/users/{id:int}`` becomes ``^/users/(?P<id>[0-9]+)$`` with ``int``
    as the converter of ``id``.
    """
    regex = "^"
    converters = {}
    pos = 0
    for match in re.finditer(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-z]+))?}", pattern):
        regex += re.escape(pattern[pos:match.start()])
        name, kind = match.group(1), match.group(2) or "str"
        if kind not in CONVERTERS:
            raise ValueError(f"unknown converter {kind!r} in {pattern!r}")
        part, convert = CONVERTERS[kind]
        regex += f"(?P<{name}>{part})"
        converters[name] = convert
        pos = match.end()
    regex += re.escape(pattern[pos:]) + "$"
    return re.compile(regex), converters


class Route:
    """One path pattern bound to a handler for some HTTP methods."""

    def __init__(self, pattern: str, handler, methods=("GET",), name: str = None):
        self.pattern = pattern
        self.handler = handler
        self.methods = {m.upper() for m in methods}
        if "GET" in self.methods:
            self.methods.add("HEAD")
        self.name = name or handler.__name__
        self.regex, self.converters = compile_pattern(pattern)

    def match(self, path: str):
        """Return the converted path parameters if `path` matches, else None."""
        found = self.regex.match(path)
        if not found:
            return None
        return {k: self.converters[k](v) for k, v in found.groupdict().items()}

    def url_for(self, **params) -> str:
        """Build a path for this route from parameter values."""
        def substitute(match):
            return str(params[match.group(1)])

        return re.sub(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-z]+)?}", substitute, self.pattern)

    def __repr__(self) -> str:
        return f"<Route {sorted(self.methods)} {self.pattern}>"


class Router:
    """An ordered collection of routes; the first match wins.

    Routers can be nested with `include`, which prefixes every route of
    the child router.
    """

    def __init__(self, prefix: str = ""):
        self.prefix = prefix.rstrip("/")
        self.routes = []

    def add_route(self, pattern: str, handler, methods=("GET",), name: str = None) -> Route:
        """Register `handler` for `pattern` and return the new route."""
        route = Route(self.prefix + pattern, handler, methods=methods, name=name)
        self.routes.append(route)
        return route

    def route(self, pattern: str, methods=("GET",), name: str = None):
        """Decorator form of `add_route`."""
        def decorator(handler):
            self.add_route(pattern, handler, methods=methods, name=name)
            return handler

        return decorator

    def get(self, pattern: str, name: str = None):
        """Register a GET handler."""
        return self.route(pattern, methods=("GET",), name=name)

    def post(self, pattern: str, name: str = None):
        """Register a POST handler."""
        return self.route(pattern, methods=("POST",), name=name)

    def delete(self, pattern: str, name: str = None):
        """Register a DELETE handler."""
        return self.route(pattern, methods=("DELETE",), name=name)

    def include(self, other: "Router", prefix: str = "") -> None:
        """Copy the routes of `other` under `prefix`."""
        for route in other.routes:
            self.add_route(prefix + route.pattern, route.handler, methods=route.methods, name=route.name)

    def resolve(self, method: str, path: str):
        """Find the route for `method` and `path`.

        Returns ``(route, params)``. Raises `NotFound` when no pattern
        matches and `MethodNotAllowed` when patterns match but none accepts
        the method.
        """
        allowed = set()
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            if method.upper() in route.methods:
                return route, params
            allowed |= route.methods
        if allowed:
            raise MethodNotAllowed(allowed)
        raise NotFound(f"no route for {path}")

    def url_for(self, name: str, **params) -> str:
        """Build the path of the route called `name`."""
        for route in self.routes:
            if route.name == name:
                return route.url_for(**params)
        raise KeyError(f"no route named {name!r}")
