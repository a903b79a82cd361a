"""The application object: routes, middleware, error handling, dispatch."""

import logging

from webkit.decorators import ensure_response
from webkit.errors import HTTPError
from webkit.middleware import build_chain
from webkit.request import Request
from webkit.response import Response, error_response
from webkit.routing import Router

log = logging.getLogger("webkit")


class App:
    """A web application.

    Register handlers with the `route` decorators, add middleware with
    `add_middleware`, then call `handle` with a `Request` (or use the app as
    a WSGI callable).
    """

    def __init__(self, debug: bool = False):
        self.debug = debug
        self.router = Router()
        self.middleware = []
        self.error_handlers = {}
        self.startup_hooks = []
        self._chain = None

    def route(self, pattern: str, methods=("GET",), name: str = None):
        """Register the decorated function as the handler for `pattern`."""
        self._chain = None
        return self.router.route(pattern, methods=methods, name=name)

    def get(self, pattern: str, name: str = None):
        """Shortcut for ``route(pattern, methods=("GET",))``."""
        return self.route(pattern, methods=("GET",), name=name)

    def post(self, pattern: str, name: str = None):
        """Shortcut for ``route(pattern, methods=("POST",))``."""
        return self.route(pattern, methods=("POST",), name=name)

    def include_router(self, router: Router, prefix: str = "") -> None:
        """Mount every route of `router` under `prefix`."""
        self._chain = None
        self.router.include(router, prefix=prefix)

    def add_middleware(self, middleware) -> None:
        """Append `middleware`; the first added runs outermost."""
        self._chain = None
        self.middleware.append(middleware)

    def error_handler(self, exc_type):
        """Register the decorated function to render exceptions of `exc_type`."""
        def decorator(fn):
            self.error_handlers[exc_type] = fn
            return fn

        return decorator

    def on_startup(self, fn):
        """Run `fn` once before the first request is handled."""
        self.startup_hooks.append(fn)
        return fn

    def url_for(self, name: str, **params) -> str:
        """Build the path of a named route."""
        return self.router.url_for(name, **params)

    def dispatch(self, request: Request) -> Response:
        """Find the route for `request` and call its handler."""
        route, params = self.router.resolve(request.method, request.path)
        request.path_params = params
        return ensure_response(route.handler(request, **params))

    def handle(self, request: Request) -> Response:
        """Run `request` through middleware and the router, rendering errors."""
        if self._chain is None:
            for hook in self.startup_hooks:
                hook()
            self.startup_hooks = []
            self._chain = build_chain(self.middleware, self.dispatch)
        try:
            response = self._chain(request)
        except Exception as exc:
            response = self.render_error(request, exc)
        if request.method == "HEAD":
            response.body = b""
        return response

    def render_error(self, request: Request, exc: Exception) -> Response:
        """Turn an exception into a response, using a registered handler first."""
        for exc_type in type(exc).__mro__:
            if exc_type in self.error_handlers:
                return ensure_response(self.error_handlers[exc_type](request, exc))
        if isinstance(exc, HTTPError):
            return error_response(exc, as_json=request.wants_json())
        log.exception("unhandled error for %r", request)
        detail = repr(exc) if self.debug else "Internal Server Error"
        return Response(detail, status_code=500)

    def __call__(self, environ, start_response):
        """WSGI entry point."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        headers = [(k[5:].replace("_", "-").lower(), v) for k, v in environ.items() if k.startswith("HTTP_")]
        if environ.get("CONTENT_TYPE"):
            headers.append(("content-type", environ["CONTENT_TYPE"]))
        request = Request(
            environ["REQUEST_METHOD"],
            environ.get("PATH_INFO", "/"),
            environ.get("QUERY_STRING", ""),
            headers,
            environ["wsgi.input"].read(length) if length else b"",
        )
        response = self.handle(request)
        start_response(response.status_line()[9:], list(response.headers.items()))
        return [response.body]
