"""Responses: a status, headers and a body, plus a few common shapes."""

import json

from webkit import status
from webkit.headers import Headers


class Response:
    """A plain response with a byte body.

    Strings are encoded as UTF-8 and given a ``text/plain`` content type
    unless one is set explicitly.
    """

    media_type = "text/plain; charset=utf-8"

    def __init__(self, body=b"", status_code: int = status.OK, headers=None, media_type: str = None):
        self.status_code = status_code
        self.headers = Headers(headers)
        self.body = self.render(body)
        if "content-type" not in self.headers:
            self.headers.set("content-type", media_type or self.media_type)

    def render(self, body) -> bytes:
        """Turn `body` into bytes; subclasses override this for other types."""
        if isinstance(body, bytes):
            return body
        return str(body).encode("utf-8")

    def set_cookie(self, name: str, value: str, max_age: int = None, http_only: bool = True) -> None:
        """Add a ``Set-Cookie`` header for `name`."""
        from webkit.cookies import format_cookie

        self.headers.add("set-cookie", format_cookie(name, value, max_age=max_age, http_only=http_only))

    def status_line(self) -> str:
        """The first line of the HTTP response, e.g. ``HTTP/1.1 200 OK``."""
        return f"HTTP/1.1 {self.status_code} {status.reason_phrase(self.status_code)}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.status_code}>"


class HTMLResponse(Response):
    """A response whose body is HTML text."""

    media_type = "text/html; charset=utf-8"


class JSONResponse(Response):
    """A response whose body is any JSON-serialisable value."""

    media_type = "application/json"

    def render(self, body) -> bytes:
        """Serialise `body` compactly as UTF-8 JSON."""
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class RedirectResponse(Response):
    """Send the client elsewhere with a ``Location`` header."""

    def __init__(self, location: str, status_code: int = status.SEE_OTHER):
        super().__init__(b"", status_code=status_code)
        self.headers.set("location", location)


def error_response(exc, as_json: bool = True) -> Response:
    """Render an `HTTPError` as JSON or plain text."""
    if as_json:
        response = JSONResponse(exc.to_dict(), status_code=exc.code)
    else:
        response = Response(f"{exc.code} {exc.detail}", status_code=exc.code)
    allowed = getattr(exc, "allowed", None)
    if allowed:
        response.headers.set("allow", ", ".join(allowed))
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        response.headers.set("retry-after", str(retry_after))
    return response
