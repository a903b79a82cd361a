"""Decorators for handlers: caching headers, JSON bodies, required roles."""

import functools

from webkit.errors import BadRequest, Forbidden
from webkit.response import JSONResponse, Response


def cache_control(max_age: int, public: bool = True):
    """Add a ``Cache-Control`` header to the handler's response."""
    def decorator(handler):
        @functools.wraps(handler)
        def wrapper(request, *args, **kwargs):
            response = ensure_response(handler(request, *args, **kwargs))
            scope = "public" if public else "private"
            response.headers.set("cache-control", f"{scope}, max-age={max_age}")
            return response

        return wrapper

    return decorator


def json_body(*required: str):
    """Parse the JSON body and check that `required` keys are present.

    The decoded object is passed to the handler as the ``body`` keyword.
    """
    def decorator(handler):
        @functools.wraps(handler)
        def wrapper(request, *args, **kwargs):
            body = request.json()
            if not isinstance(body, dict):
                raise BadRequest("expected a JSON object")
            missing = [key for key in required if key not in body]
            if missing:
                raise BadRequest(f"missing fields: {', '.join(missing)}")
            return handler(request, *args, body=body, **kwargs)

        return wrapper

    return decorator


def requires_role(role: str):
    """Refuse the request unless the authenticated user has `role`."""
    def decorator(handler):
        @functools.wraps(handler)
        def wrapper(request, *args, **kwargs):
            user = request.state.get("user") or {}
            if role not in user.get("roles", ()):
                raise Forbidden(f"role {role!r} required")
            return handler(request, *args, **kwargs)

        return wrapper

    return decorator


def ensure_response(value) -> Response:
    """Turn a handler's return value into a `Response`.

    Dictionaries and lists become JSON, strings plain text, ``None`` an
    empty 204; responses pass through unchanged.
    """
    if isinstance(value, Response):
        return value
    if isinstance(value, (dict, list)):
        return JSONResponse(value)
    if value is None:
        return Response(b"", status_code=204)
    return Response(value)
