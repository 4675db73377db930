#!/usr/bin/env python3
"""Share of samples whose stack has a frame matching each pattern (regex), given a
folded-stacks file: `share.py folded.txt 'petstore_rest::' 'jsonwebtoken' ...`.
With `--within PATTERN`, shares are of the samples under PATTERN only."""
import re
import sys

args = sys.argv[1:]
within = None
if args and args[0] == "--within":
    within, args = re.compile(args[1]), args[2:]
path, pats = args[0], args[1:]
rows = []
for line in open(path):
    stack, n = line.rsplit(" ", 1)
    rows.append((stack, int(n)))
if within:
    rows = [(s, n) for s, n in rows if within.search(s)]
total = sum(n for _, n in rows) or 1
print(f"{total} samples" + (f" under {within.pattern}" if within else ""))
for p in pats:
    r = re.compile(p)
    hit = sum(n for s, n in rows if r.search(s))
    print(f"{100.0 * hit / total:6.1f}%  {p}")
