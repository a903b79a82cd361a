"""Exceptions that turn into HTTP error responses."""

from webkit import status


class HTTPError(Exception):
    """An error with an HTTP status code.

    Raise it from a handler to stop processing and answer the client with
    `code` and `detail`; the application's error handler renders it.
    """

    code = status.SERVER_ERROR

    def __init__(self, detail: str = "", code: int = None):
        super().__init__(detail)
        self.detail = detail or status.reason_phrase(code or self.code)
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        """Describe the error as a JSON-friendly dictionary."""
        return {"error": status.reason_phrase(self.code), "detail": self.detail}


class BadRequest(HTTPError):
    """The request could not be understood (400)."""

    code = status.BAD_REQUEST


class Unauthorized(HTTPError):
    """The request lacks valid credentials (401)."""

    code = status.UNAUTHORIZED


class Forbidden(HTTPError):
    """The credentials are valid but not allowed here (403)."""

    code = status.FORBIDDEN


class NotFound(HTTPError):
    """No route or resource matches the request (404)."""

    code = status.NOT_FOUND


class MethodNotAllowed(HTTPError):
    """A route matches the path but not the method (405).

    The allowed methods are kept so the response can list them in the
    ``Allow`` header.
    """

    code = status.METHOD_NOT_ALLOWED

    def __init__(self, allowed, detail: str = ""):
        super().__init__(detail)
        self.allowed = sorted(allowed)

    def to_dict(self) -> dict:
        """Add the allowed methods to the error description."""
        data = super().to_dict()
        data["allowed"] = self.allowed
        return data


class TooManyRequests(HTTPError):
    """The client exceeded a rate limit (429)."""

    code = status.TOO_MANY_REQUESTS

    def __init__(self, retry_after: int, detail: str = ""):
        super().__init__(detail)
        self.retry_after = retry_after
