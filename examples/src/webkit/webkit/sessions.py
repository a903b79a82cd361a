"""Signed cookie sessions."""

import base64
import hashlib
import hmac
import json

from webkit.middleware import Middleware

COOKIE_NAME = "session"


def sign(data: bytes, secret: bytes) -> str:
    """Return ``payload.signature`` for `data`, both URL-safe base64."""
    payload = base64.urlsafe_b64encode(data).decode("ascii")
    mac = hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest()
    return payload + "." + base64.urlsafe_b64encode(mac).decode("ascii")


def unsign(value: str, secret: bytes):
    """Verify a value made by `sign` and return its data, or None if forged."""
    payload, _, signature = value.rpartition(".")
    expected = hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest()
    try:
        given = base64.urlsafe_b64decode(signature.encode("ascii"))
    except ValueError:
        return None
    if not hmac.compare_digest(expected, given):
        return None
    return base64.urlsafe_b64decode(payload.encode("ascii"))


class SessionMiddleware(Middleware):
    """Load ``request.state["session"]`` from a signed cookie and save it back."""

    def __init__(self, secret: str, max_age: int = 14 * 24 * 3600):
        self.secret = secret.encode("utf-8")
        self.max_age = max_age

    def before(self, request):
        """Decode the session cookie; a bad signature gives an empty session."""
        raw = request.cookies().get(COOKIE_NAME)
        data = unsign(raw, self.secret) if raw else None
        request.state["session"] = json.loads(data) if data else {}
        request.state["session_original"] = dict(request.state["session"])
        return None

    def after(self, request, response):
        """Write the cookie again only when the session changed."""
        session = request.state.get("session", {})
        if session != request.state.get("session_original"):
            value = sign(json.dumps(session, sort_keys=True).encode("utf-8"), self.secret)
            response.set_cookie(COOKIE_NAME, value, max_age=self.max_age)
        return response
