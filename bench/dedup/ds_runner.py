#!/usr/bin/env python3
"""datasketch baseline: MinHashLSH (threshold 0.8, 128 permutations) over
the same word 5-gram shingles as dvx, the usual way: MinHash per record,
insert all, query each, union-find over the candidates, keep the first of
each cluster. No exact Jaccard confirmation (that is datasketch's model).
usage: ds_runner.py INPUT OUT [BANDS ROWS]  (default: datasketch's own choice)
Writes {"seconds", "docs", "docs_per_s", "dropped": [...]} to OUT."""

import json
import sys
import time

from datasketch import MinHash, MinHashLSH


def shingles(text, size=5):
    w = text.lower().split()
    if len(w) < size:
        return {" ".join(w)}
    return {" ".join(w[i:i + size]) for i in range(len(w) - size + 1)}


def main():
    path, out = sys.argv[1], sys.argv[2]
    t0 = time.perf_counter()
    with open(path) as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    params = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else None
    lsh = MinHashLSH(threshold=0.8, num_perm=128, params=params)
    sigs = []
    for i, t in enumerate(texts):
        m = MinHash(num_perm=128)
        m.update_batch([s.encode("utf8") for s in shingles(t)])
        lsh.insert(i, m)
        sigs.append(m)
    parent = list(range(len(texts)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, m in enumerate(sigs):
        for j in lsh.query(m):
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    dropped = [i for i in range(len(texts)) if find(i) != i]
    secs = time.perf_counter() - t0
    print(f"datasketch: b={lsh.b} r={lsh.r}, {len(texts)} docs in {secs:.1f}s", file=sys.stderr)
    with open(out, "w") as f:
        json.dump({"seconds": secs, "docs": len(texts), "docs_per_s": len(texts) / secs,
                   "bands": lsh.b, "rows": lsh.r, "dropped": dropped}, f)


if __name__ == "__main__":
    main()
