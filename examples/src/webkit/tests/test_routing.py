"""Tests of route matching and dispatch."""

from webkit.routing import Router, compile_pattern
from webkit.testing import TestClient, response_json

from examples.todo import app


def test_compile_pattern_converts_ints():
    """Typed segments become converters."""
    regex, converters = compile_pattern("/users/{id:int}")
    assert regex.match("/users/42")
    assert converters["id"] is int


def test_router_prefers_first_match():
    """The first registered route wins."""
    router = Router()
    router.add_route("/a", lambda r: "first")
    router.add_route("/a", lambda r: "second")
    route, params = router.resolve("GET", "/a")
    assert route.handler(None) == "first"
    assert params == {}


def test_todo_round_trip():
    """Create, fetch and complete an item through the client."""
    client = TestClient(app)
    created = client.post("/todos", json={"title": "write docs"})
    assert created.status_code == 201
    todo_id = response_json(created)["id"]
    assert response_json(client.get(f"/todos/{todo_id}"))["title"] == "write docs"
    assert response_json(client.post(f"/todos/{todo_id}/done"))["done"] is True


def test_unknown_method_is_405():
    """A matching path with the wrong method lists the allowed ones."""
    client = TestClient(app)
    response = client.delete("/todos")
    assert response.status_code == 405
    assert "GET" in response.headers.get("allow")
