"""HTTP status codes and their reason phrases."""

OK = 200
CREATED = 201
NO_CONTENT = 204
MOVED_PERMANENTLY = 301
FOUND = 302
SEE_OTHER = 303
BAD_REQUEST = 400
UNAUTHORIZED = 401
FORBIDDEN = 403
NOT_FOUND = 404
METHOD_NOT_ALLOWED = 405
CONFLICT = 409
UNPROCESSABLE = 422
TOO_MANY_REQUESTS = 429
SERVER_ERROR = 500

_REASONS = {
    OK: "OK",
    CREATED: "Created",
    NO_CONTENT: "No Content",
    MOVED_PERMANENTLY: "Moved Permanently",
    FOUND: "Found",
    SEE_OTHER: "See Other",
    BAD_REQUEST: "Bad Request",
    UNAUTHORIZED: "Unauthorized",
    FORBIDDEN: "Forbidden",
    NOT_FOUND: "Not Found",
    METHOD_NOT_ALLOWED: "Method Not Allowed",
    CONFLICT: "Conflict",
    UNPROCESSABLE: "Unprocessable Entity",
    TOO_MANY_REQUESTS: "Too Many Requests",
    SERVER_ERROR: "Internal Server Error",
}


def reason_phrase(code: int) -> str:
    """Return the standard reason phrase for `code`, or ``"Unknown"``."""
    return _REASONS.get(code, "Unknown")


def is_redirect(code: int) -> bool:
    """Tell whether `code` is a 3xx redirect status."""
    return 300 <= code < 400


def is_client_error(code: int) -> bool:
    """Tell whether `code` is a 4xx status: the request was at fault."""
    return 400 <= code < 500


def is_server_error(code: int) -> bool:
    """Tell whether `code` is a 5xx status: the server was at fault."""
    return 500 <= code < 600
