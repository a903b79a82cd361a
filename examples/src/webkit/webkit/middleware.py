"""Middleware: code that wraps every request on its way to the handler.

A middleware is a callable ``(request, call_next) -> response``; the
application builds a chain of them around the router.
"""

import logging
import time

from webkit.errors import TooManyRequests, Unauthorized
from webkit.response import Response

log = logging.getLogger("webkit")


def build_chain(middlewares, endpoint):
    """Wrap `endpoint` in `middlewares`, the first one outermost."""
    handler = endpoint
    for middleware in reversed(middlewares):
        handler = _bind(middleware, handler)
    return handler


def _bind(middleware, call_next):
    def call(request):
        return middleware(request, call_next)

    return call


class Middleware:
    """Base class for middleware with optional before/after hooks."""

    def __call__(self, request, call_next):
        early = self.before(request)
        if early is not None:
            return early
        response = call_next(request)
        return self.after(request, response)

    def before(self, request):
        """Inspect the request; return a response to stop the chain early."""
        return None

    def after(self, request, response):
        """Inspect or replace the response on its way out."""
        return response


class TimingMiddleware(Middleware):
    """Measure handler time and report it in ``Server-Timing``."""

    def before(self, request):
        """Remember when the request started."""
        request.state["started"] = time.perf_counter()

    def after(self, request, response):
        """Add the elapsed milliseconds to the response headers."""
        elapsed = (time.perf_counter() - request.state["started"]) * 1000
        response.headers.set("server-timing", f"app;dur={elapsed:.1f}")
        return response


class CORSMiddleware(Middleware):
    """Answer preflight requests and add CORS headers for allowed origins."""

    def __init__(self, origins=("*",), methods=("GET", "POST")):
        self.origins = set(origins)
        self.methods = ", ".join(methods)

    def allows(self, origin: str) -> bool:
        """Tell whether `origin` may call this application."""
        return "*" in self.origins or origin in self.origins

    def before(self, request):
        """Short-circuit ``OPTIONS`` preflight requests."""
        if request.method == "OPTIONS" and self.allows(request.headers.get("origin", "")):
            response = Response(b"", status_code=204)
            response.headers.set("access-control-allow-methods", self.methods)
            return self.after(request, response)
        return None

    def after(self, request, response):
        """Echo an allowed origin back in ``Access-Control-Allow-Origin``."""
        origin = request.headers.get("origin")
        if origin and self.allows(origin):
            response.headers.set("access-control-allow-origin", origin)
        return response


class BearerAuthMiddleware(Middleware):
    """Require an ``Authorization: Bearer`` token for paths under a prefix."""

    def __init__(self, tokens: dict, prefix: str = "/api"):
        self.tokens = tokens
        self.prefix = prefix

    def before(self, request):
        """Reject requests without a known token; store the user otherwise."""
        if not request.path.startswith(self.prefix):
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.tokens:
            raise Unauthorized("a valid bearer token is required")
        request.state["user"] = self.tokens[token]
        return None


class RateLimitMiddleware(Middleware):
    """Allow at most `limit` requests per client in each `window` seconds."""

    def __init__(self, limit: int = 60, window: float = 60.0, clock=time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self.hits = {}

    def client_key(self, request) -> str:
        """Identify the client; by default its forwarded address."""
        return request.headers.get("x-forwarded-for", "local")

    def before(self, request):
        """Count the request and refuse it once the window is full."""
        now = self.clock()
        key = self.client_key(request)
        recent = [t for t in self.hits.get(key, []) if now - t < self.window]
        if len(recent) >= self.limit:
            raise TooManyRequests(retry_after=int(self.window - (now - recent[0])) + 1)
        recent.append(now)
        self.hits[key] = recent
        return None


def logging_middleware(request, call_next):
    """Log one line per request with its status and duration."""
    started = time.perf_counter()
    response = call_next(request)
    log.info("%s %s -> %s (%.1f ms)", request.method, request.path, response.status_code, (time.perf_counter() - started) * 1000)
    return response
