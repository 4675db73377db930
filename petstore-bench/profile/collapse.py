#!/usr/bin/env python3
"""Folds `perf script` output into flame-graph stacks and prints where the time goes.

    perf record -F 499 -e cpu-clock:u --call-graph dwarf -o perf.data -- \
        petstore-bench --scenario rest-post --rounds 1 --round-secs 4
    perf script -i perf.data --no-inline | petstore-bench/profile/collapse.py folded.txt

Writes `folded.txt` (one `frame;frame;... count` line per stack, the input of any
flame-graph renderer, e.g. inferno-flamegraph or speedscope) and prints the functions
with the largest inclusive and self shares of the samples.
"""
import collections
import re
import sys

def short(sym):
    sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
    sym = re.sub(r"::h[0-9a-f]{16}$", "", sym)
    sym = re.sub(r"<([^<>]*) as ([^<>]*)>", r"<\1 as \2>", sym)
    return sym[:160]

def stacks(lines):
    frames, head = [], None
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if head is not None and frames:
                yield head, frames
            frames, head = [], None
            continue
        if not line.startswith((" ", "\t")):
            head = line.split()[0]
            continue
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            frames.append(short(parts[1].rsplit(" (", 1)[0]))
    if head is not None and frames:
        yield head, frames

def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "folded.txt"
    folded = collections.Counter()
    incl = collections.Counter()
    self_ = collections.Counter()
    total = 0
    for thread, frames in stacks(sys.stdin):
        total += 1
        chain = [thread] + list(reversed(frames))
        folded[";".join(f.replace(";", ",") for f in chain)] += 1
        self_[frames[0]] += 1
        for f in set(frames):
            incl[f] += 1
    with open(out, "w") as fh:
        for stack, n in folded.most_common():
            fh.write(f"{stack} {n}\n")
    print(f"{total} samples")
    print("\ninclusive (top 40):")
    for f, n in incl.most_common(40):
        print(f"{100.0 * n / total:6.1f}%  {f}")
    print("\nself (top 30):")
    for f, n in self_.most_common(30):
        print(f"{100.0 * n / total:6.1f}%  {f}")

if __name__ == "__main__":
    main()
