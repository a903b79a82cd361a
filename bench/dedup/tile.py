#!/usr/bin/env python3
"""Copy k of a bench/scale/gen.py corpus (JSONL on stdin): the letters of
every instruction and response go through a permutation of a-z drawn from
k. A letter permutation maps equal words to equal words and different
words to different ones, so within the copy the texts, their shingle sets
and the planted near-duplicates keep their exact Jaccard similarities,
while across copies texts share no more shingles than unrelated records
do. Used by scale.sh (TILE=1) to make a 10M corpus from a 1M one in
minutes: gen.py takes over an hour for 10M records on a 2-core machine.

  zstdcat part.jsonl.zst | tile.py --copy 3 | zstd -q -c > copy3.jsonl.zst
"""

import argparse
import random
import string
import sys

HEAD = '{"instruction":"'
MID = '","response":"'
TAIL = '","source":'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--copy", type=int, required=True)
    a = ap.parse_args()
    letters = list(string.ascii_lowercase)
    random.Random(1_000_000_007 + a.copy).shuffle(letters)
    table = str.maketrans(string.ascii_lowercase, "".join(letters))
    out = sys.stdout
    for line in sys.stdin:
        assert line.startswith(HEAD) and "\\" not in line, line[:80]
        ins, rest = line[len(HEAD):].split(MID, 1)
        resp, tail = rest.split(TAIL, 1)
        out.write(HEAD + ins.translate(table) + MID + resp.translate(table) + TAIL + tail)


if __name__ == "__main__":
    main()
