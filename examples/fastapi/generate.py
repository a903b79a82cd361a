#!/usr/bin/env python3
"""Generate examples/fastapi/v5_7.jsonl: a small V5.7-like FastAPI dataset.

Eight categories of Alpaca records ({instruction, output, category}).
Each category mixes sound examples with "template artifacts" that V5.2's
filters reject (in-memory CRUD, page/size pagination, no jwt import, ...),
in roughly the proportions of seed 000, and the file carries a few exact
and near duplicates for the dedup stage. Deterministic: the same script
writes the same bytes. Standard library only.

    python3 examples/fastapi/generate.py            # writes v5_7.jsonl beside this file
    python3 examples/fastapi/generate.py -o out.jsonl --per-category 50

Templates are plain strings: `<key>` is replaced from the record's subject,
and lines starting with `@doc`, `@log` or `@cm` become, at random, a
docstring, a logging call or a comment (or vanish), so that records made
from one template still differ.
"""

import argparse
import json
import os
import random
import re
import textwrap

SEED = 57

# (Model, singular, plural)
ENTITIES = [
    ("Item", "item", "items"), ("User", "user", "users"), ("Product", "product", "products"),
    ("Order", "order", "orders"), ("Book", "book", "books"), ("Post", "post", "posts"),
    ("Customer", "customer", "customers"), ("Invoice", "invoice", "invoices"), ("Task", "task", "tasks"),
    ("Note", "note", "notes"), ("Ticket", "ticket", "tickets"), ("Comment", "comment", "comments"),
    ("Project", "project", "projects"), ("Event", "event", "events"), ("Booking", "booking", "bookings"),
    ("Patient", "patient", "patients"), ("Vehicle", "vehicle", "vehicles"), ("Recipe", "recipe", "recipes"),
]

# (Parent, parents, relationship attribute, Child)
RELATIONS = [
    ("User", "users", "posts", "Post"), ("Author", "authors", "books", "Book"),
    ("Order", "orders", "items", "OrderItem"), ("Customer", "customers", "invoices", "Invoice"),
    ("Project", "projects", "tasks", "Task"), ("Post", "posts", "comments", "Comment"),
    ("Team", "teams", "members", "User"), ("Category", "categories", "products", "Product"),
    ("Playlist", "playlists", "tracks", "Track"), ("Course", "courses", "lessons", "Lesson"),
    ("Clinic", "clinics", "doctors", "Doctor"), ("Warehouse", "warehouses", "shelves", "Shelf"),
]

DOMAINS = [
    "inventory", "blog", "billing", "booking", "school", "clinic", "library", "crm", "shop",
    "helpdesk", "fleet", "recipes", "events", "payroll", "hr", "travel", "media", "forum",
]

CLAUSES = [
    " It's for a <d> app.", " This is for my <d> service.", " (<d> backend)", " We use PostgreSQL.",
    " Keep it short.", " I'm on FastAPI 0.110.", " Please include type hints.", "", "", "", "",
]

OPENERS = ["", "", "", "Sure. ", "Here's a clean way to do it. ", "Good question. ", "A common pattern: "]

COMMENTS = [
    "keep the handler thin", "validated by the schema", "see the <d> settings module",
    "runs inside the request scope", "tested in tests/test_<p>.py", "matches the OpenAPI docs",
]


def pick(rng, options):
    return options[rng.randrange(len(options))]


def subject(rng):
    m, s, p = pick(rng, ENTITIES)
    parent, parents, attr, child = pick(rng, RELATIONS)
    return {
        "M": m, "s": s, "p": p, "a_s": ("an " if s[0] in "aeiou" else "a ") + s,
        "d": pick(rng, DOMAINS), "P": parent, "pp": parents, "lp": parent.lower(), "attr": attr, "C": child,
        "limit": str(pick(rng, [10, 20, 25, 50, 100])), "minutes": str(pick(rng, [15, 30, 60, 120])),
        "alg": pick(rng, ["HS256", "HS384", "HS512"]), "db": "db",
        "status404": pick(rng, ["404", "status.HTTP_404_NOT_FOUND"]),
        "prefix": pick(rng, ["", "/api", "/v1", "/api/v1", "/<d>"]),
    }


def sub(text, x):
    """Replace `<key>` from the subject (twice, so values may name keys)."""
    for _ in range(2):
        text = re.sub(r"<(\w+)>", lambda m: x.get(m.group(1), m.group(0)), text)
    return text


def code(rng, x, template):
    """A fenced block from a template, with the marker lines resolved."""
    lines = []
    for line in textwrap.dedent(template).strip("\n").split("\n"):
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith("@doc "):
            if rng.random() < 0.5:
                lines.append(f'{indent}"""{stripped[5:]}"""')
        elif stripped.startswith("@log "):
            if rng.random() < 0.3:
                lines.append(f'{indent}logger.info("{stripped[5:]}")')
        elif stripped.startswith("@cm"):
            if rng.random() < 0.3:
                lines.append(f"{indent}# {pick(rng, COMMENTS)}")
        else:
            lines.append(line)
    return "```python\n" + sub("\n".join(lines), x) + "\n```"


def answer(rng, x, intro, template, notes):
    parts = [pick(rng, OPENERS) + sub(intro, x), code(rng, x, template)]
    if notes and rng.random() < 0.4:
        parts.append(sub(pick(rng, notes), x))
    return "\n\n".join(parts)


# Each category: instructions, passing templates, failing templates, notes.
# A template is (intro, code).

CRUD = {
    "ask": [
        "Write a FastAPI endpoint that creates <a_s> with SQLAlchemy.",
        "How do I implement CRUD operations for <p> in FastAPI?",
        "Show me how to update <a_s> in FastAPI using a database session.",
        "Create a FastAPI route to delete <a_s> from the database.",
        "Implement a repository class for <p> with SQLAlchemy in a FastAPI app.",
        "Give me a minimal FastAPI create endpoint for the <M> model.",
        "How should I persist new <p> in FastAPI?",
    ],
    "pass": [
        ("Add the new row with `db.add`, then `db.commit()` and refresh it so the generated id is loaded.", """
            @router.post("<prefix>/<p>", response_model=<M>Out, status_code=201)
            def create_<s>(payload: <M>Create, db: Session = Depends(get_db)):
                @doc Create <a_s> in the <d> database.
                <s> = <M>(**payload.model_dump())
                db.add(<s>)
                db.commit()
                db.refresh(<s>)
                @log created <s>
                return <s>
        """),
        ("Load the <s>, apply only the fields that were sent, and commit.", """
            @router.patch("<prefix>/<p>/{<s>_id}", response_model=<M>Out)
            def update_<s>(<s>_id: int, payload: <M>Update, db: Session = Depends(get_db)):
                @doc Partially update <a_s>.
                <s> = db.get(<M>, <s>_id)
                if <s> is None:
                    raise HTTPException(status_code=<status404>, detail="<M> not found")
                for key, value in payload.model_dump(exclude_unset=True).items():
                    setattr(<s>, key, value)
                @cm
                db.commit()
                db.refresh(<s>)
                return <s>
        """),
        ("Return 404 when the <s> does not exist; otherwise delete it and commit.", """
            @router.delete("<prefix>/<p>/{<s>_id}", status_code=204)
            def delete_<s>(<s>_id: int, db: Session = Depends(get_db)):
                @doc Delete <a_s> from the <d> database.
                <s> = db.get(<M>, <s>_id)
                if not <s>:
                    raise HTTPException(status_code=<status404>, detail="<M> not found")
                db.delete(<s>)
                db.commit()
                @log deleted <s>
        """),
        ("A small repository keeps session handling for <p> in one place.", """
            class <M>Repository:
                def __init__(self, db: Session):
                    self.db = db

                def add(self, data: <M>Create) -> <M>:
                    @doc Insert <a_s> and return it with its id.
                    obj = <M>(**data.model_dump())
                    self.db.add(obj)
                    self.db.commit()
                    self.db.refresh(obj)
                    return obj

                def get(self, obj_id: int) -> <M> | None:
                    return self.db.get(<M>, obj_id)
        """),
    ],
    "fail": [
        ("Here is a simple version that stores data in a dictionary:", """
            <p>_db: dict[int, dict] = {}

            @app.post("<prefix>/<p>")
            def create_<s>(<s>: <M>Create):
                new_id = len(<p>_db) + 1
                <p>_db[new_id] = <s>.model_dump()
                return {"id": new_id, **<p>_db[new_id]}
        """),
        ("You can keep the records in a list while prototyping:", """
            fake_<p> = []  # in-memory storage

            @app.post("<prefix>/<p>")
            async def add_<s>(<s>: <M>Create):
                fake_<p>.append(<s>)
                return <s>
        """),
        ("Create the <s> object and add it:", """
            @app.post("<prefix>/<p>")
            def create_<s>(<s>: <M>Create):
                obj = <M>(**<s>.model_dump())
                db.add(obj)
                # TODO: persist the change
                return obj
        """),
        ("Commit the row and remember it in a cache:", """
            _cache: dict[int, <M>] = {}  # in-memory cache in front of the database

            @app.post("<prefix>/<p>")
            def create_<s>(payload: <M>Create, db: Session = Depends(get_db)):
                obj = <M>(**payload.model_dump())
                db.add(obj)
                db.commit()
                _cache[obj.id] = obj
                return obj
        """),
    ],
    "notes": [
        "Use `response_model` so internal columns never leak into the API.",
        "`model_dump()` is the Pydantic v2 spelling of `dict()`.",
        "Keep the session per request via the `get_db` dependency.",
        "Wrap multi-step writes in one transaction so a failure rolls everything back.",
    ],
    "fail_share": 0.37,
}

ASYNC = {
    "ask": [
        "How do I use async SQLAlchemy with FastAPI to fetch <a_s> by id?",
        "Write an async FastAPI endpoint that lists <p> with SQLAlchemy 2.0.",
        "Set up an AsyncSession dependency for FastAPI and use it to create <a_s>.",
        "Convert this <s> lookup to async SQLAlchemy in FastAPI.",
        "Show an async repository function that saves <a_s>.",
    ],
    "pass": [
        ("Use `select()` with `await db.execute(...)` on an `AsyncSession`:", """
            async def get_<s>(db: AsyncSession, <s>_id: int) -> <M> | None:
                result = await db.execute(select(<M>).where(<M>.id == <s>_id))
                return result.scalar_one_or_none()

            @router.get("<prefix>/<p>/{<s>_id}", response_model=<M>Out)
            async def read_<s>(<s>_id: int, db: AsyncSession = Depends(get_session)):
                @doc Fetch one <s> for the <d> API.
                <s> = await get_<s>(db, <s>_id)
                if <s> is None:
                    raise HTTPException(status_code=<status404>, detail="<M> not found")
                return <s>
        """),
        ("Create one async engine, a session factory, and a dependency that yields sessions:", """
            engine = create_async_engine("postgresql+asyncpg://app:secret@localhost/<d>")
            SessionLocal = async_sessionmaker(engine, expire_on_commit=False)

            async def get_session() -> AsyncIterator[AsyncSession]:
                async with SessionLocal() as session:
                    yield session

            @router.post("<prefix>/<p>", status_code=201)
            async def create_<s>(payload: <M>Create, session: AsyncSession = Depends(get_session)):
                <s> = <M>(**payload.model_dump())
                session.add(<s>)
                await session.commit()
                await session.refresh(<s>)
                @log created <s>
                return <s>
        """),
        ("`AsyncSession.scalars` returns the model objects directly:", """
            @router.get("<prefix>/<p>", response_model=list[<M>Out])
            async def list_<p>(db: AsyncSession = Depends(get_session)):
                @doc List <p>, oldest first.
                rows = await db.scalars(select(<M>).order_by(<M>.id))
                return rows.all()
        """),
    ],
    "fail": [
        ("Make the endpoint async:", """
            @router.get("<prefix>/<p>")
            async def list_<p>(db: Session = Depends(get_db)):
                return db.query(<M>).all()
        """),
    ],
    "notes": [
        "Set `expire_on_commit=False` so objects stay usable after the commit.",
        "Never share one AsyncSession between concurrent tasks.",
        "The asyncpg driver is the usual choice for PostgreSQL.",
    ],
    "fail_share": 0.05,
}

JWT = {
    "ask": [
        "Implement JWT authentication in my FastAPI <d> API.",
        "How do I create access tokens for <p> in FastAPI?",
        "Write a get_current_user dependency that validates a JWT.",
        "Add token-based login to my FastAPI app.",
        "Show how to issue and verify JSON Web Tokens in FastAPI.",
    ],
    "pass": [
        ("With PyJWT, sign the subject and an expiry:", """
            import jwt
            from datetime import datetime, timedelta, timezone

            SECRET_KEY = settings.<d>_secret_key
            ALGORITHM = "<alg>"

            def create_access_token(subject: str, minutes: int = <minutes>) -> str:
                @doc Token for one <s>, valid for <minutes> minutes by default.
                expire = datetime.now(timezone.utc) + timedelta(minutes=minutes)
                return jwt.encode({"sub": subject, "exp": expire}, SECRET_KEY, algorithm=ALGORITHM)
        """),
        ("Decode the bearer token and load the <s> it names:", """
            from jose import JWTError, jwt

            oauth2_scheme = OAuth2PasswordBearer(tokenUrl="<prefix>/token")

            async def get_current_<s>(token: str = Depends(oauth2_scheme), db: Session = Depends(get_db)):
                unauthorized = HTTPException(status_code=401, detail="Could not validate credentials")
                try:
                    payload = jwt.decode(token, SECRET_KEY, algorithms=["<alg>"])
                except JWTError:
                    raise unauthorized
                <s> = db.get(<M>, int(payload.get("sub", 0)))
                if <s> is None:
                    raise unauthorized
                return <s>
        """),
        ("Issue the token at login and verify it on each request:", """
            import jwt

            @router.post("<prefix>/token")
            def login(form: OAuth2PasswordRequestForm = Depends(), db: Session = Depends(get_db)):
                <s> = authenticate(db, form.username, form.password)
                if not <s>:
                    raise HTTPException(status_code=401, detail="Incorrect username or password")
                token = jwt.encode({"sub": str(<s>.id)}, SECRET_KEY, algorithm="<alg>")
                @log issued token
                return {"access_token": token, "token_type": "bearer"}

            def verify(token: str) -> dict:
                return jwt.decode(token, SECRET_KEY, algorithms=["<alg>"])
        """),
    ],
    "fail": [
        ("Assuming you already have a token helper:", """
            @router.post("<prefix>/token")
            def login(form: OAuth2PasswordRequestForm = Depends()):
                <s> = authenticate(form.username, form.password)
                token = create_access_token(<s>.id)  # helper from your auth module
                return {"access_token": token, "token_type": "bearer"}
        """),
        ("Generate a simple token for the <s>:", """
            import base64

            def create_token(<s>_id: int) -> str:
                return base64.b64encode(f"<s>:{<s>_id}".encode()).decode()
        """),
        ("Check the bearer token in a dependency:", """
            oauth2_scheme = OAuth2PasswordBearer(tokenUrl="<prefix>/token")

            def get_current_<s>(token: str = Depends(oauth2_scheme)):
                if token != settings.<d>_api_token:
                    raise HTTPException(status_code=401)
                return {"<s>": "admin"}
        """),
    ],
    "notes": [
        "Keep the secret key out of the code: read it from the environment.",
        "Short-lived access tokens plus refresh tokens limit the damage of a leak.",
        "Always pass `algorithms=[...]` when decoding.",
        "Use `<alg>` consistently for signing and verifying.",
    ],
    "fail_share": 0.32,
}

QUERY = {
    "ask": [
        "How do I avoid the N+1 query problem when loading <attr> for each <lp> in FastAPI?",
        "Optimize this SQLAlchemy query that loads <P> objects with their <attr>.",
        "Eager-load the <attr> relationship of <P> in a FastAPI endpoint.",
        "My endpoint returning <pp> with their <attr> is slow. How can I speed it up?",
    ],
    "pass": [
        ("`selectinload` fetches all <attr> in one extra query instead of one per <lp>:", """
            @router.get("<prefix>/<pp>", response_model=list[<P>Out])
            def list_<pp>(db: Session = Depends(get_db)):
                @doc <P> list with <attr>, two queries in all.
                stmt = select(<P>).options(selectinload(<P>.<attr>))
                return db.scalars(stmt).all()
        """),
        ("For a single <lp>, `joinedload` brings the <attr> in the same query:", """
            def get_<lp>(db: Session, <lp>_id: int) -> <P> | None:
                stmt = (
                    select(<P>)
                    .options(joinedload(<P>.<attr>))
                    .where(<P>.id == <lp>_id)
                )
                return db.execute(stmt).unique().scalar_one_or_none()
        """),
        ("Chain loader options to eager-load nested relationships:", """
            stmt = (
                select(<P>)
                .options(selectinload(<P>.<attr>).joinedload(<C>.owner))
                .limit(<limit>)
            )
            <pp> = (await db.scalars(stmt)).all()
        """),
    ],
    "fail": [
        ("Load the <attr> for each <lp>:", """
            <pp> = db.query(<P>).all()
            for <lp> in <pp>:
                <lp>.<attr> = db.query(<C>).filter(<C>.<lp>_id == <lp>.id).all()
        """),
        ("Only load the columns you need:", """
            stmt = select(<P>).options(load_only(<P>.id, <P>.name))
            <pp> = db.scalars(stmt).limit(<limit>).all()
        """),
        ("Make the relationship lazy so it is only loaded on access:", """
            class <P>(Base):
                __tablename__ = "<pp>"
                id = Column(Integer, primary_key=True)
                <attr> = relationship("<C>", lazy="dynamic")
        """),
    ],
    "notes": [
        "Turn on `echo=True` on the engine to see how many queries run.",
        "A joined eager load of a collection needs `.unique()` on the result.",
        "Load collections with a second SELECT and many-to-one links with a JOIN.",
    ],
    "fail_share": 0.36,
}

PAGE = {
    "ask": [
        "Add pagination to a FastAPI endpoint that lists <p>.",
        "How do I paginate <p> results in FastAPI with SQLAlchemy?",
        "Write a paginated GET <prefix>/<p> route.",
        "Return <p> page by page from a FastAPI API.",
    ],
    "pass": [
        ("Use `skip` and `limit` query parameters with `offset`/`limit`:", """
            @router.get("<prefix>/<p>", response_model=list[<M>Out])
            def list_<p>(skip: int = 0, limit: int = <limit>, db: Session = Depends(get_db)):
                @doc One page of <p>.
                return db.query(<M>).offset(skip).limit(limit).all()
        """),
        ("Validate the parameters with `Query` and return the total alongside the page:", """
            @router.get("<prefix>/<p>")
            def list_<p>(
                skip: int = Query(0, ge=0),
                limit: int = Query(<limit>, ge=1, le=100),
                db: Session = Depends(get_db),
            ):
                total = db.scalar(select(func.count()).select_from(<M>))
                rows = db.scalars(select(<M>).order_by(<M>.id).offset(skip).limit(limit)).all()
                return {"total": total, "skip": skip, "limit": limit, "items": rows}
        """),
        ("A reusable helper keeps pagination consistent across routes:", """
            def paginate(db: Session, model, skip: int = 0, limit: int = <limit>):
                @doc Offset pagination shared by the <d> routes.
                return db.query(model).offset(skip).limit(limit).all()

            @router.get("<prefix>/<p>")
            def list_<p>(skip: int = 0, limit: int = <limit>, db: Session = Depends(get_db)):
                return paginate(db, <M>, skip=skip, limit=limit)
        """),
    ],
    "fail": [
        ("Use page numbers:", """
            @router.get("<prefix>/<p>")
            def list_<p>(page: int = 1, size: int = <limit>, db: Session = Depends(get_db)):
                return db.query(<M>).offset((page - 1) * size).limit(size).all()
        """),
        ("Cursor pagination avoids large offsets:", """
            @router.get("<prefix>/<p>")
            def list_<p>(cursor: int | None = None, db: Session = Depends(get_db)):
                stmt = select(<M>).order_by(<M>.id)
                if cursor:
                    stmt = stmt.where(<M>.id > cursor)
                return db.scalars(stmt.limit(<limit>)).all()
        """),
        ("Return the first page:", """
            @router.get("<prefix>/<p>")
            def list_<p>(db: Session = Depends(get_db)):
                return db.query(<M>).all()[:<limit>]
        """),
    ],
    "notes": [
        "Always order by a unique column, or pages can overlap.",
        "Cap `limit` so one request cannot fetch the whole table.",
        "Return the total count if the client shows page numbers.",
    ],
    "fail_share": 0.39,
}

WS = {
    "ask": [
        "Create a WebSocket endpoint in my FastAPI <d> app.",
        "How do I broadcast messages to all connected WebSocket clients in FastAPI?",
        "Build a simple chat room with FastAPI WebSockets for <p>.",
        "Write a FastAPI WebSocket that streams <s> updates to the client.",
    ],
    "pass": [
        ("Accept the connection, then loop receiving and sending:", """
            @app.websocket("<prefix>/ws/<p>")
            async def <s>_echo(websocket: WebSocket):
                await websocket.accept()
                try:
                    while True:
                        message = await websocket.receive_text()
                        await websocket.send_text(f"<s>: {message}")
                except WebSocketDisconnect:
                    @log <s> client left
                    pass
        """),
        ("Keep the open connections in a manager and send to each:", """
            class <M>Feed:
                def __init__(self):
                    self.active: list[WebSocket] = []

                async def connect(self, ws: WebSocket):
                    await ws.accept()
                    self.active.append(ws)

                async def broadcast(self, message: str):
                    for ws in self.active:
                        await ws.send_text(message)

            feed = <M>Feed()

            @app.websocket("<prefix>/ws/<p>/{room}")
            async def <s>_room(ws: WebSocket, room: str):
                await feed.connect(ws)
                try:
                    while True:
                        await feed.broadcast(f"{room}: " + await ws.receive_text())
                except WebSocketDisconnect:
                    feed.active.remove(ws)
        """),
        ("Push each <s> event as JSON:", """
            @app.websocket("<prefix>/ws/<p>")
            async def <s>_updates(websocket: WebSocket):
                @doc Stream <s> changes from the <d> event bus.
                await websocket.accept()
                async for event in <s>_events():
                    await websocket.send_json(event.model_dump())
        """),
    ],
    "fail": [
        ("A minimal WebSocket route:", """
            @app.websocket("<prefix>/ws/<p>")
            def <s>_socket(websocket: WebSocket):
                websocket.accept()
                websocket.send_text("hello")
        """),
    ],
    "notes": [
        "Catch `WebSocketDisconnect` so a closed tab does not log a traceback.",
        "With several workers, broadcast through Redis pub/sub instead of a list.",
        "Authenticate with a token in the query string; browsers cannot set headers.",
    ],
    "fail_share": 0.02,
}

ERR = {
    "ask": [
        "How do I add a custom exception handler in my FastAPI <d> app?",
        "Return a consistent JSON error body for <s> errors in FastAPI.",
        "Handle validation errors globally in FastAPI.",
        "Map a <M>NotFound exception to a 404 response.",
    ],
    "pass": [
        ("Register a handler for the domain exception:", """
            class <M>NotFound(Exception):
                def __init__(self, <s>_id: int):
                    self.<s>_id = <s>_id

            @app.exception_handler(<M>NotFound)
            async def <s>_not_found(request: Request, exc: <M>NotFound):
                @log <s> not found
                return JSONResponse(status_code=404, content={"detail": f"<M> {exc.<s>_id} not found"})
        """),
        ("Override the validation handler to shape the body:", """
            @app.exception_handler(RequestValidationError)
            async def <d>_validation_error(request: Request, exc: RequestValidationError):
                @doc Uniform 422 body for the <d> API.
                return JSONResponse(
                    status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
                    content={"detail": exc.errors(), "path": request.url.path},
                )
        """),
        ("Wrap every HTTP error in the same envelope:", """
            @app.exception_handler(StarletteHTTPException)
            async def <d>_http_error(request: Request, exc: StarletteHTTPException):
                @cm
                return JSONResponse(status_code=exc.status_code, content={"error": exc.detail, "service": "<d>"})
        """),
    ],
    "fail": [
        ("Raise an HTTPException:", """
            @router.get("<prefix>/<p>/{<s>_id}")
            def read_<s>(<s>_id: int):
                raise HTTPException(status_code=404, detail="<M> not found")
        """),
    ],
    "notes": [
        "Handlers registered on the app also catch errors raised in dependencies.",
        "Log the exception before turning it into a response.",
        "Keep error bodies stable: clients parse them.",
    ],
    "fail_share": 0.015,
}

BG = {
    "ask": [
        "How do I run a background task after returning a response in FastAPI?",
        "Send a confirmation email in the background when <a_s> is created.",
        "Use BackgroundTasks to write an audit log entry for <p>.",
        "Queue a notification for each new <s> with FastAPI background tasks.",
    ],
    "pass": [
        ("The task runs after the response is sent:", """
            def send_email(to: str, subject: str) -> None:
                with smtplib.SMTP(settings.smtp_host) as smtp:
                    smtp.sendmail(settings.sender, [to], f"Subject: {subject}\\n\\n")

            @router.post("<prefix>/<p>", status_code=201)
            def create_<s>(payload: <M>Create, background_tasks: BackgroundTasks):
                <s> = save_<s>(payload)
                background_tasks.add_task(send_email, payload.email, "<M> created")
                return <s>
        """),
        ("Pass the function and its arguments to `add_task`:", """
            def write_audit(action: str, <s>_id: int) -> None:
                @doc Append one line to the <d> audit log.
                with open("audit.log", "a") as log:
                    log.write(f"{action} <s> {<s>_id}\\n")

            @router.delete("<prefix>/<p>/{<s>_id}")
            def delete_<s>(<s>_id: int, tasks: BackgroundTasks):
                remove_<s>(<s>_id)
                tasks.add_task(write_audit, "deleted", <s>_id)
                return {"ok": True}
        """),
        ("Async functions work as background tasks too:", """
            async def notify(channel: str, text: str) -> None:
                async with httpx.AsyncClient() as client:
                    await client.post(settings.webhook_url, json={"channel": channel, "text": text})

            @router.post("<prefix>/<p>")
            async def create_<s>(payload: <M>Create, background_tasks: BackgroundTasks):
                background_tasks.add_task(notify, "<d>-<p>", f"new <s>: {payload}")
                @log queued <s> notification
                return {"status": "queued"}
        """),
    ],
    "fail": [
        ("Add `background_tasks: BackgroundTasks` to the endpoint and call:", """
            background_tasks.add_task(send_email, <s>.email)
        """),
    ],
    "notes": [
        "For heavy or retryable jobs use a queue such as Celery or arq instead.",
        "Background tasks run in the same process, after the response.",
        "Exceptions in a background task do not reach the client; log them.",
    ],
    "fail_share": 0.015,
}

CATEGORIES = [
    ("CRUD", CRUD), ("Async SQLAlchemy", ASYNC), ("JWT Authentication", JWT),
    ("Query Optimization", QUERY), ("Pagination", PAGE), ("WebSockets", WS),
    ("Error Handling", ERR), ("Background Tasks", BG),
]


def near_copy(rng, rec):
    """A near duplicate: a reworded instruction, a comment added to the code."""
    out = dict(rec)
    out["instruction"] = pick(rng, ["Please: ", "Quick question: ", "In FastAPI, "]) + rec["instruction"]
    out["output"] = rec["output"].replace("```python\n", "```python\n# example\n", 1)
    return out


def generate(per_category):
    rng = random.Random(SEED)
    records = []
    for name, spec in CATEGORIES:
        n_bad = round(per_category * spec["fail_share"])
        flags = [i < n_bad for i in range(per_category)]
        rng.shuffle(flags)
        for failing in flags:
            x = subject(rng)
            x["prefix"] = sub(x["prefix"], x)
            intro, template = pick(rng, spec["fail" if failing else "pass"])
            instruction = sub(pick(rng, spec["ask"]) + pick(rng, CLAUSES), x)
            output = answer(rng, x, intro, template, spec["notes"])
            records.append({"instruction": instruction, "output": output, "category": name})
    rng.shuffle(records)
    # A few exact and near duplicates, dropped in at random places.
    extra = []
    for _ in range(len(records) // 50):
        extra.append(dict(records[rng.randrange(len(records))]))
        extra.append(near_copy(rng, records[rng.randrange(len(records))]))
    for rec in extra:
        records.insert(rng.randrange(len(records) + 1), rec)
    return records


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=os.path.join(here, "v5_7.jsonl"))
    ap.add_argument("--per-category", type=int, default=205)
    args = ap.parse_args()
    records = generate(args.per_category)
    with open(args.output, "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {len(records)} records to {args.output}")


if __name__ == "__main__":
    main()
