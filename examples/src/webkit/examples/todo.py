"""A small to-do API built with webkit, used by the tests."""

from webkit import App, JSONResponse, NotFound
from webkit.decorators import cache_control, json_body
from webkit.middleware import TimingMiddleware, logging_middleware

app = App()
app.add_middleware(logging_middleware)
app.add_middleware(TimingMiddleware())

TODOS = {}


@app.get("/todos", name="list_todos")
@cache_control(max_age=10)
def list_todos(request):
    """List every to-do item, optionally only the open ones."""
    items = list(TODOS.values())
    if request.query.get("open") == "1":
        items = [t for t in items if not t["done"]]
    return items


@app.post("/todos")
@json_body("title")
def create_todo(request, body):
    """Create an item from a JSON body with a ``title``."""
    todo_id = len(TODOS) + 1
    TODOS[todo_id] = {"id": todo_id, "title": body["title"], "done": False}
    return JSONResponse(TODOS[todo_id], status_code=201)


@app.get("/todos/{todo_id:int}", name="get_todo")
def get_todo(request, todo_id):
    """Return one item or 404."""
    if todo_id not in TODOS:
        raise NotFound(f"no to-do {todo_id}")
    return TODOS[todo_id]


@app.post("/todos/{todo_id:int}/done")
def complete_todo(request, todo_id):
    """Mark an item as done."""
    todo = get_todo(request, todo_id)
    todo["done"] = True
    return todo
