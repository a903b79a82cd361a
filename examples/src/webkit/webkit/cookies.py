"""Reading the ``Cookie`` header and writing ``Set-Cookie`` values."""

from urllib.parse import quote, unquote


def parse_cookie_header(header: str) -> dict:
    """Parse ``a=1; b=2`` into ``{"a": "1", "b": "2"}``; bad pairs are skipped."""
    cookies = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            cookies[name] = unquote(value)
    return cookies


def format_cookie(name: str, value: str, max_age: int = None, path: str = "/", http_only: bool = True, same_site: str = "Lax") -> str:
    """Build a ``Set-Cookie`` value with safe defaults (HttpOnly, SameSite=Lax)."""
    parts = [f"{name}={quote(value)}", f"Path={path}", f"SameSite={same_site}"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if http_only:
        parts.append("HttpOnly")
    return "; ".join(parts)


def delete_cookie(name: str, path: str = "/") -> str:
    """A ``Set-Cookie`` value that makes the browser forget `name`."""
    return format_cookie(name, "", max_age=0, path=path)
