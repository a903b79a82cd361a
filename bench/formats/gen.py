"""Seed-002-shaped records (instruction, response, source, quality_score,
category) as JSONL, deterministic for a seed."""
import json
import random
import sys

n, out, seed = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1
rng = random.Random(seed)
words = "the a data model train record split filter token answer question step value list file read write".split()
sources = ["alpaca", "wizardlm", "oasst", "anthropic_hh"]
cats = ["coding", "math", "writing", "reasoning", "qa"]
with open(out, "w", encoding="utf-8") as f:
    for i in range(n):
        ins = " ".join(rng.choice(words) for _ in range(rng.randint(6, 30)))
        res = " ".join(rng.choice(words) for _ in range(rng.randint(20, 120)))
        rec = {"instruction": f"{ins} #{i}?", "response": res + " ✓", "source": rng.choice(sources),
               "quality_score": round(rng.random(), 4), "category": rng.choice(cats)}
        f.write(json.dumps(rec, ensure_ascii=False) + "\n")
