#!/usr/bin/env python3
"""Write examples/phase5/base.jsonl: the phase-5 base dataset of tool-choice
examples (seed 004) about a fictional `orders-service` code base.

Each record is {"messages": [user, assistant], "pattern": grep|read|direct,
"source": "phase5/<pattern>/<n>"}. Deterministic: no randomness, fixed order.
Run from anywhere: python3 examples/phase5/make_base.py
"""

import json
import os

SYMBOLS = [
    ("class", "OrderRepository", "app/"), ("class", "PaymentGateway", "app/"), ("class", "InvoiceService", "app/"),
    ("class", "Settings", "app/"), ("class", "CustomerSchema", "app/"), ("class", "RetryPolicy", "app/"),
    ("function", "get_db_session", "app/"), ("function", "create_order", "app/"), ("function", "cancel_order", "app/"),
    ("function", "send_receipt_email", "app/"), ("function", "verify_webhook_signature", "app/"), ("function", "paginate", "app/"),
    ("decorator", "@router.post", "app/"), ("decorator", "@router.get", "app/"), ("decorator", "@lru_cache", "app/"),
    ("decorator", "@pytest.fixture", "tests/"), ("import", "from sqlalchemy.orm import", "app/"), ("import", "from pydantic import", "app/"),
    ("text", "TODO", "."), ("text", "DATABASE_URL", "."), ("text", "status_code=409", "app/"),
    ("text", "logger.exception", "app/"), ("text", "Depends(get_current_user)", "app/"), ("text", "raise HTTPException", "app/"),
]

GREP_QUESTIONS = {
    "class": ["Where is the `{s}` class defined?", "Find the definition of `{s}`.", "Which file declares class `{s}`?", "I need to see where `{s}` lives in the code base."],
    "function": ["Where is `{s}()` defined?", "Find the function `{s}`.", "Which module implements `{s}`?", "Where do we call `{s}`?"],
    "decorator": ["Find every handler that uses `{s}`.", "Which functions are decorated with `{s}`?", "List the uses of `{s}`.", "Where is `{s}` applied?"],
    "import": ["Which modules use `{m}`?", "Find the files that import from `{m}`.", "Where do we depend on `{m}`?", "Search for imports of `{m}`."],
    "text": ["Find all occurrences of `{s}`.", "Where does `{s}` appear?", "Search the project for `{s}`.", "Which lines mention `{s}`?"],
}

FILES = [
    ("app/main.py", 1, 45, "the application factory and router registration"),
    ("app/config.py", 1, 60, "the settings loaded from the environment"),
    ("app/db/session.py", 1, 40, "the database engine and session dependency"),
    ("app/models/order.py", 1, 80, "the Order and OrderLine ORM models"),
    ("app/schemas/order.py", 1, 70, "the request and response schemas for orders"),
    ("app/routers/orders.py", 1, 120, "the order endpoints"),
    ("app/routers/webhooks.py", 1, 90, "the payment webhook endpoint"),
    ("app/services/payments.py", 1, 110, "the payment gateway client"),
    ("app/services/invoices.py", 1, 95, "invoice generation"),
    ("app/auth/dependencies.py", 1, 50, "the authentication dependencies"),
    ("app/tasks/email.py", 1, 60, "the background e-mail tasks"),
    ("app/middleware/logging.py", 1, 40, "request logging middleware"),
    ("tests/conftest.py", 1, 70, "the shared test fixtures"),
    ("tests/test_orders.py", 1, 150, "the order endpoint tests"),
    ("alembic/env.py", 1, 80, "the migration environment"),
    ("Dockerfile", 1, 35, "the container build"),
]

READ_QUESTIONS = [
    "Show me {what} in `{f}`.",
    "Open `{f}`; I want to read {what}.",
    "What does `{f}` contain?",
    "Let me see the top of `{f}`.",
]

CONCEPTS = [
    ("What is the difference between a path parameter and a query parameter?", "A path parameter is part of the URL's path and identifies the resource (`/orders/{order_id}`); a query parameter follows `?` and refines the request (`/orders?status=paid&page=2`). Use path parameters for identity and query parameters for filtering, sorting and pagination."),
    ("When should an endpoint return 201 instead of 200?", "Return 201 Created when the request created a new resource, ideally with a `Location` header pointing at it. Use 200 OK for successful reads and updates that return a body, and 204 No Content when there is nothing to return."),
    ("Why use dependency injection for the database session?", "Declaring the session as a dependency gives every request its own session, closes it reliably after the response, and lets tests replace it with a session bound to a test database without touching the endpoint code."),
    ("What does a 409 Conflict response mean?", "409 says the request is valid but clashes with the current state of the resource, for example creating an order with an idempotency key that was already used, or cancelling an order that has shipped."),
    ("How should webhook signatures be verified?", "Compute an HMAC of the raw request body with the shared secret and compare it with the signature header using a constant-time comparison. Verify before parsing the JSON, and reject old timestamps to stop replays."),
    ("What is an idempotency key?", "A client-chosen unique value sent with a request that creates something. The server stores the key with the result, so a retried request with the same key returns the first result instead of creating a duplicate order or charge."),
    ("Why keep settings in environment variables?", "Environment variables keep secrets and per-deployment values out of the code, so the same image runs in development, staging and production. A settings class validates them once at start-up and fails fast when one is missing."),
    ("What is the N+1 query problem?", "Loading a list of rows and then issuing one more query per row to fetch a relationship: 1 query for the orders plus N for their customers. Eager loading (a join or a second `IN` query) fetches the related rows in one go."),
    ("When should work go to a background task?", "When the client does not need the result to continue: sending e-mail, generating PDFs, calling slow third-party APIs. Respond first, do the work after, and make the task safe to retry."),
    ("What is the purpose of a database migration tool?", "It records every schema change as a versioned script, so each environment can be brought to the same schema in order and changes can be reviewed, tested and, when needed, rolled back."),
    ("How do pytest fixtures help?", "Fixtures build the objects a test needs (a client, a database session, a user) and tear them down afterwards. Tests name the fixtures they want as parameters, and scope controls how often a fixture is rebuilt."),
    ("Why validate request bodies with schemas?", "A schema states the expected shape once, rejects bad input with a precise 422 error before any business logic runs, and documents the API automatically."),
    ("What's the difference between authentication and authorisation?", "Authentication establishes who the caller is (a valid token for user 42); authorisation decides what that caller may do (user 42 may read their own orders but not cancel other people's)."),
    ("Why paginate list endpoints?", "Unbounded lists get slower and larger as data grows. Pagination caps each response, keeps latency predictable, and with cursor-based pagination stays stable while rows are inserted."),
    ("What is middleware in a web framework?", "Code that wraps every request and response: logging, timing, CORS headers, authentication. It runs before the endpoint and can modify or short-circuit the request, and after it to adjust the response."),
    ("Why should money be stored as integers or decimals rather than floats?", "Binary floats cannot represent most decimal fractions exactly, so sums drift by fractions of a cent. Store amounts in minor units as integers, or use a decimal type with fixed precision."),
    ("What does `async def` buy in an endpoint?", "An async endpoint can await I/O (database, HTTP calls) without blocking the worker, so one process serves many concurrent requests. It only helps when the libraries it calls are async too; blocking calls inside still block."),
    ("What is a health check endpoint for?", "Load balancers and orchestrators call it to decide whether an instance should receive traffic. A liveness check says the process runs; a readiness check also confirms dependencies such as the database respond."),
    ("How should errors be logged in a service?", "Log once, where the error is handled, with the stack trace and request context (request id, user id), at error level for failures and warning for expected problems. Never log secrets or full payment details."),
    ("Why pin dependency versions?", "Pinned versions make builds reproducible: the image built today and next month contain the same code. Update them deliberately, with the tests as a safety net, instead of picking up changes by accident."),
]

DIRECT_PREFIXES = ["", "Quick question: ", "Without looking at the code, ", "In general terms, "]


def chat(question, answer):
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def grep_records():
    out = []
    for kind, symbol, where in SYMBOLS:
        for question in GREP_QUESTIONS[kind]:
            if kind == "class":
                pattern, q = f"class {symbol}", question.format(s=symbol)
            elif kind == "function":
                pattern = f"{symbol}(" if question.startswith("Where do we call") else f"def {symbol}("
                q = question.format(s=symbol)
            elif kind == "import":
                module = symbol.split()[1]
                pattern, q = symbol, question.format(m=module)
            else:
                pattern, q = symbol, question.format(s=symbol)
            quoted = pattern.replace(".", r"\.")
            answer = (
                "This needs a search of the code base:\n\n"
                f"```bash\ngrep -rn --include='*.py' '{quoted}' {where}\n```\n\n"
                "The matching lines show the file and line number of each occurrence."
            )
            out.append(("grep", q, answer))
    return out


def read_records():
    out = []
    for path, first, last, what in FILES:
        for question in READ_QUESTIONS:
            q = question.format(f=path, what=what)
            answer = (
                f"`{path}` holds {what}. I'll read it:\n\n"
                f"```bash\nsed -n '{first},{last}p' {path}\n```"
            )
            out.append(("read", q, answer))
    return out


def direct_records():
    out = []
    for question, answer in CONCEPTS:
        for prefix in DIRECT_PREFIXES:
            q = prefix + (question[0].lower() + question[1:] if prefix else question)
            out.append(("direct", q, answer))
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    records = grep_records() + read_records() + direct_records()
    with open(os.path.join(here, "base.jsonl"), "w", encoding="utf-8") as fh:
        counters = {}
        for pattern, question, answer in records:
            counters[pattern] = counters.get(pattern, 0) + 1
            record = {"messages": chat(question, answer), "pattern": pattern, "source": f"phase5/{pattern}/{counters[pattern]}"}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"{len(records)} records: {counters}")


if __name__ == "__main__":
    main()
