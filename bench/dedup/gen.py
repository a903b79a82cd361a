#!/usr/bin/env python3
"""Generate a JSONL corpus with planted duplicates and its ground truth.

Random documents are drawn from a Zipf-like vocabulary, so unrelated
documents share almost no word 5-grams. A fraction of them get planted
copies, each tagged with the exact Jaccard of its word 5-gram set to the
original (same normalisation and shingling as dvx's defaults):

- exact:  same text with case and whitespace changed (Jaccard 1 after
          normalisation)
- near:   word edits until the Jaccard lies in [0.80, 1.00)
- far:    word edits until the Jaccard lies in [0.50, 0.80): look-alikes
          that must NOT be removed at threshold 0.8

Truth: within each planted group every pair's Jaccard is computed; pairs at
>= 0.8 are linked, and in each connected component every record but the
first in input order should be dropped. truth.json lists those indices.
"""

import argparse
import json
import random


def norm_words(text):
    return text.lower().split()


def shingles(text, size=5):
    w = norm_words(text)
    if len(w) < size:
        return {" ".join(w)}
    return {" ".join(w[i:i + size]) for i in range(len(w) - size + 1)}


def jaccard(a, b):
    return len(a & b) / len(a | b)


def edit(rng, words, vocab, cum, k):
    w = list(words)
    for _ in range(k):
        op = rng.random()
        at = rng.randrange(len(w))
        if op < 0.6 or len(w) < 6:
            w[at] = rng.choices(vocab, cum_weights=cum)[0]
        elif op < 0.8:
            w.insert(at, rng.choices(vocab, cum_weights=cum)[0])
        else:
            del w[at]
    return w


def variant(rng, base, vocab, cum, lo, hi):
    """Edit `base` until its Jaccard to it is in [lo, hi); None if no luck."""
    bs = shingles(base)
    words = base.split()
    for _ in range(40):
        # Edits needed scale with length: each edit breaks up to 5 shingles.
        k = max(1, int(rng.uniform(0.2, 1.6) * len(words) * (1 - lo) / 5))
        text = " ".join(edit(rng, words, vocab, cum, k))
        j = jaccard(bs, shingles(text))
        if lo <= j < hi:
            return text, j
    return None


def messy(rng, text):
    """Same words, other case and spacing."""
    out = []
    for w in text.split():
        out.append(w.upper() if rng.random() < 0.2 else w.capitalize() if rng.random() < 0.2 else w)
        out.append(rng.choice([" ", " ", "  ", "\t", "\n"]))
    return " " + "".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--short", action="store_true", help="15-40 words instead of 40-200")
    ap.add_argument("--planted", type=float, default=0.25, help="fraction of records that are planted copies")
    ap.add_argument("--out", required=True)
    ap.add_argument("--truth", required=True)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    vocab = [f"w{i}" for i in range(30_000)]
    cum, acc = [], 0.0
    for i in range(len(vocab)):
        acc += 1.0 / (i + 10)
        cum.append(acc)
    lo_len, hi_len = (15, 40) if a.short else (40, 200)

    n_copies = int(a.n * a.planted)
    n_base = a.n - n_copies
    docs = [" ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(lo_len, hi_len))) for _ in range(n_base)]
    group = list(range(n_base))  # group id per doc: its base
    kinds = ["base"] * n_base
    sims = [1.0] * n_base
    made = 0
    while made < n_copies:
        b = rng.randrange(n_base)
        r = rng.random()
        if r < 0.2:
            text, j, kind = messy(rng, docs[b]), 1.0, "exact"
        else:
            lo, hi, kind = (0.8, 1.0, "near") if r < 0.85 else (0.5, 0.8, "far")
            got = variant(rng, docs[b], vocab, cum, lo, hi)
            if got is None:
                continue
            (text, j) = got
        docs.append(text)
        group.append(b)
        kinds.append(kind)
        sims.append(j)
        made += 1

    order = list(range(len(docs)))
    rng.shuffle(order)
    pos = {old: new for new, old in enumerate(order)}

    # Truth: components over pairs >= 0.8 within each planted group.
    members = {}
    for old, g in enumerate(group):
        members.setdefault(g, []).append(old)
    parent = list(range(len(docs)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for ms in members.values():
        if len(ms) < 2:
            continue
        sh = {m: shingles(docs[m]) for m in ms}
        for i, x in enumerate(ms):
            for y in ms[i + 1:]:
                if jaccard(sh[x], sh[y]) >= 0.8:
                    parent[find(x)] = find(y)
    comps = {}
    for old in range(len(docs)):
        comps.setdefault(find(old), []).append(pos[old])
    drop = sorted(i for c in comps.values() for i in sorted(c)[1:])

    with open(a.out, "w") as f:
        for old in order:
            f.write(json.dumps({"id": pos[old], "text": docs[old]}) + "\n")
    stats = {k: kinds.count(k) for k in ("base", "exact", "near", "far")}
    near_j = sorted(s for s, k in zip(sims, kinds) if k == "near")
    with open(a.truth, "w") as f:
        json.dump({"n": len(docs), "planted": stats, "drop": drop,
                   "near_jaccard_quartiles": [near_j[len(near_j) * q // 4] for q in range(4)] if near_j else []}, f)
    print(f"gen: {len(docs)} docs, planted {stats}, truth drops {len(drop)}")


if __name__ == "__main__":
    main()
