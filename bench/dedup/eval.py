#!/usr/bin/env python3
"""Print the benchmark table: throughput, precision and recall of each run's
dropped records against the planted truth.

usage: eval.py TRUTH.json NAME=PREFIX ...
PREFIX.json is the tool's result (datasketch: with "dropped"; dvx: its
lineage is PREFIX/lineage.jsonl), PREFIX.time is `/usr/bin/time -f
"%e %U %S %M"` output (wall s, user s, sys s, max RSS KiB) for the whole
process, interpreter start and file reading included."""

import json
import os
import sys


def dropped_of(prefix, result):
    lineage = os.path.join(prefix, "lineage.jsonl")
    if os.path.exists(lineage):
        with open(lineage) as f:
            return {json.loads(line)["index"] for line in f}
    return set(result["dropped"])


def main():
    truth = json.load(open(sys.argv[1]))
    want = set(truth["drop"])
    n = truth["n"]
    print(f"corpus: {n} docs, planted {truth['planted']}, "
          f"near-copy Jaccard quartiles {[round(x, 3) for x in truth['near_jaccard_quartiles']]}, "
          f"{len(want)} records to drop")
    print(f"| {'run':<24} | {'docs/s (wall)':>13} | {'docs/CPU-s':>10} | {'wall s':>7} | {'CPU s':>7} "
          f"| {'max RSS':>8} | {'dropped':>7} | {'precision':>9} | {'recall':>6} |")
    print(f"|{'-' * 26}|{'-' * 14}:|{'-' * 11}:|{'-' * 8}:|{'-' * 8}:|{'-' * 9}:|{'-' * 8}:|{'-' * 10}:|{'-' * 7}:|")
    for arg in sys.argv[2:]:
        name, prefix = arg.split("=", 1)
        result = json.load(open(prefix + ".json"))
        wall, user, sys_s, rss = open(prefix + ".time").read().split()[-4:]
        wall, cpu, rss = float(wall), float(user) + float(sys_s), int(rss) / 1024
        got = dropped_of(prefix, result)
        hit = len(got & want)
        precision = hit / len(got) if got else 1.0
        recall = hit / len(want) if want else 1.0
        print(f"| {name:<24} | {n / wall:>13,.0f} | {n / cpu:>10,.0f} | {wall:>7.2f} | {cpu:>7.2f} "
              f"| {rss:>6.0f} M | {len(got):>7} | {precision:>9.4f} | {recall:>6.4f} |")


if __name__ == "__main__":
    main()
