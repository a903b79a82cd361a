"""A test client that calls the application without a server."""

import json as jsonlib
from urllib.parse import urlencode

from webkit.request import Request


class TestClient:
    """Send requests straight to `app.handle` and return its responses."""

    __test__ = False

    def __init__(self, app, headers=None):
        self.app = app
        self.default_headers = list((headers or {}).items())

    def request(self, method: str, path: str, params=None, json=None, data=None, headers=None):
        """Build a `Request` and hand it to the application."""
        query = urlencode(params or {})
        all_headers = self.default_headers + list((headers or {}).items())
        body = b""
        if json is not None:
            body = jsonlib.dumps(json).encode("utf-8")
            all_headers.append(("content-type", "application/json"))
        elif data is not None:
            body = urlencode(data).encode("utf-8")
            all_headers.append(("content-type", "application/x-www-form-urlencoded"))
        return self.app.handle(Request(method, path, query, all_headers, body))

    def get(self, path: str, **kwargs):
        """Send a GET request."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        """Send a POST request."""
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs):
        """Send a DELETE request."""
        return self.request("DELETE", path, **kwargs)


def response_json(response):
    """Decode a response body as JSON."""
    return jsonlib.loads(response.body.decode("utf-8"))
