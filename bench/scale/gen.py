#!/usr/bin/env python3
"""Seed-002-shaped records, deterministic: instruction, response, source,
quality_score, category; about 1.5 KB each, with planted near-duplicates.

  gen.py --n 100000 --seed 1 --out data.jsonl            # records 0..n-1
  gen.py --n 1000 --start 100000 --seed 1 --append data.jsonl

Record i depends only on (seed, i), so the first n of a bigger corpus are the
corpus of n, and an append is just the next indices.
"""

import argparse
import json
import random

CATEGORIES = ["CRUD", "Query Optimization", "JWT Authentication", "Background Tasks",
              "WebSockets", "Pagination", "Error Handling", "Async SQLAlchemy"]
SOURCES = ["teacher-a", "teacher-b", "teacher-c"]
WORDS = ("session query commit add model schema endpoint router token refresh async await "
         "select join index cursor page limit offset retry error handler socket message queue "
         "worker task celery redis cache response request validate field pydantic depends "
         "fastapi sqlalchemy engine transaction rollback migrate alembic column table").split()


def record(seed, i):
    rng = random.Random(seed * 1_000_003 + i)
    # Every 20th record copies an earlier one with a few words changed.
    base = i - rng.randrange(1, 50) if i % 20 == 7 and i >= 50 else i
    brng = random.Random(seed * 1_000_003 + base)
    words = [brng.choice(WORDS) for _ in range(220)]
    if base != i:
        for _ in range(3):
            words[rng.randrange(len(words))] = rng.choice(WORDS)
    cat = CATEGORIES[brng.randrange(len(CATEGORIES))]
    return {
        "instruction": f"Write a {cat} example for case {base}: " + " ".join(words[:25]),
        "response": " ".join(words[25:]) + (" db.add(x) db.commit() Session" if brng.random() < 0.8 else ""),
        "source": SOURCES[brng.randrange(len(SOURCES))],
        "quality_score": round(rng.random(), 3),
        "category": cat,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out")
    ap.add_argument("--append")
    a = ap.parse_args()
    path, mode = (a.out, "w") if a.out else (a.append, "a")
    with open(path, mode) as f:
        for i in range(a.start, a.start + a.n):
            f.write(json.dumps(record(a.seed, i), separators=(",", ":"), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
