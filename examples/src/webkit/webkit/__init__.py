"""webkit: a small, dependency-free web framework used as example data.

The public surface is re-exported here so applications can write
``from webkit import App, Request, Response``.
"""

from webkit.app import App
from webkit.errors import HTTPError, NotFound, MethodNotAllowed
from webkit.request import Request
from webkit.response import Response, JSONResponse, RedirectResponse
from webkit.routing import Route, Router

__all__ = [
    "App",
    "HTTPError",
    "JSONResponse",
    "MethodNotAllowed",
    "NotFound",
    "RedirectResponse",
    "Request",
    "Response",
    "Route",
    "Router",
]
