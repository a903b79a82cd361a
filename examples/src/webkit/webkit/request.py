"""The incoming request: method, path, query, headers, body and cookies."""

import json
from urllib.parse import parse_qsl, unquote

from webkit.errors import BadRequest
from webkit.headers import Headers, parse_header_params


class QueryParams:
    """Query-string parameters; a name may appear more than once."""

    def __init__(self, query_string: str = ""):
        self._pairs = parse_qsl(query_string, keep_blank_values=True)

    def get(self, name: str, default=None):
        """Return the first value of `name`, or `default`."""
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def get_list(self, name: str) -> list:
        """Return every value of `name`."""
        return [v for k, v in self._pairs if k == name]

    def get_int(self, name: str, default: int = None) -> int:
        """Return `name` converted to an int.

        Raises `BadRequest` when the value is present but not a number, so
        handlers do not need their own try/except around ``int()``.
        """
        raw = self.get(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            raise BadRequest(f"query parameter {name!r} must be an integer")


class Request:
    """One HTTP request as seen by handlers and middleware.

    `path_params` is filled by the router with the values captured from
    the route pattern; `state` is a free-form dictionary middleware can use
    to pass data (a user, a timer) down to handlers.
    """

    def __init__(self, method: str, path: str, query_string: str = "", headers=None, body: bytes = b""):
        self.method = method.upper()
        self.path = unquote(path) or "/"
        self.query = QueryParams(query_string)
        self.headers = Headers(headers)
        self.body = body
        self.path_params = {}
        self.state = {}

    @property
    def content_type(self) -> str:
        """The media type of the body, without parameters."""
        main, _ = parse_header_params(self.headers.get("content-type", ""))
        return main

    def json(self):
        """Decode the body as JSON.

        Raises `BadRequest` if the content type is not JSON or the body does
        not decode.
        """
        if self.content_type != "application/json":
            raise BadRequest("expected an application/json body")
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"invalid JSON body: {exc}")

    def form(self) -> dict:
        """Decode a urlencoded form body into a dictionary of first values."""
        pairs = parse_qsl(self.body.decode("utf-8"), keep_blank_values=True)
        data = {}
        for key, value in pairs:
            data.setdefault(key, value)
        return data

    def cookies(self) -> dict:
        """Parse the ``Cookie`` header into a name-to-value dictionary."""
        from webkit.cookies import parse_cookie_header

        return parse_cookie_header(self.headers.get("cookie", ""))

    def wants_json(self) -> bool:
        """Tell whether the client prefers JSON over HTML in ``Accept``."""
        accept = self.headers.get("accept", "")
        return "application/json" in accept and "text/html" not in accept

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"
