"""Print the mutation score of the last ``make mutation`` run (reads ``mutmut results --all true``).

score = killed / mutants tested, where "tested" leaves out timeouts (and mutants not checked yet or
skipped): a mutant no test covers ("no tests") or that survives counts against the score.
``--list`` also prints the mutants that were not killed, area by area.

A whole run takes longer than an hour on 2 cores. ``--sample N`` prints N mutant names of models/
drawn at random (``--seed``) for ``make mutation MUTATION_SAMPLE=N``, and ``--names FILE`` scores
only the mutants named in FILE, with a 95% Wilson interval for the share killed in models/ as a
whole: an unbiased estimate, where a stopped full run is not (it checks mutants with fast tests
first).
"""

from __future__ import annotations

import argparse
import math
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

AREAS = {"models/": "bga_mner.models.", "data/spans.py": "bga_mner.data.spans.", "metrics.py": "bga_mner.metrics."}
KILLED = {"killed", "caught by type check"}
LEFT_OUT = {"timeout", "not checked", "skipped", "check was interrupted by user"}
LINE = re.compile(r"^\s+(\S+): (.+?)\s*$")


def results() -> list[tuple[str, str]]:
    mutmut = Path(sys.executable).with_name("mutmut")
    out = subprocess.run([str(mutmut), "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    return [(m.group(1), m.group(2)) for m in map(LINE.match, out.splitlines()) if m]


def area_of(name: str) -> str:
    return next((area for area, prefix in AREAS.items() if name.startswith(prefix)), "other")


def wilson(killed: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion killed / n."""
    p = killed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the mutants that were checked and not killed")
    parser.add_argument("--sample", type=int, metavar="N", help="print N random mutant names of models/ and stop")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample")
    parser.add_argument("--names", type=Path, metavar="FILE", help="score only the mutants named in FILE")
    args = parser.parse_args()
    rows = results()
    if not rows:
        print("no mutmut results (run `make mutation` once first: it generates the mutants)")
        return 1
    if args.sample:
        names = sorted(name for name, _ in rows if area_of(name) == "models/")
        random.Random(args.seed).shuffle(names)
        print(" ".join(sorted(names[:args.sample])))
        return 0
    if args.names:
        wanted = set(args.names.read_text().split())
        rows = [(name, status) for name, status in rows if name in wanted]
    by_area: dict[str, Counter] = {}
    for name, status in rows:
        by_area.setdefault(area_of(name), Counter())[status] += 1
        by_area.setdefault("all", Counter())[status] += 1
    print("mutation score = killed / tested (tested = all mutants but timeouts, skipped and not checked)")
    for area in [*AREAS, "other", "all"]:
        if area not in by_area:
            continue
        c = by_area[area]
        killed = sum(c[s] for s in KILLED)
        tested = sum(n for s, n in c.items() if s not in LEFT_OUT)
        rest = ", ".join(f"{s} {n}" for s, n in sorted(c.items()) if s not in KILLED)
        score = f"{100 * killed / tested:5.1f}%" if tested else "   n/a"
        print(f"  {area:<14} {killed:>5} / {tested:<5} = {score}   ({rest or 'all killed'})")
    models = by_area.get("models/", Counter())
    tested = sum(n for st, n in models.items() if st not in LEFT_OUT)
    if args.names and tested:
        killed = sum(models[st] for st in KILLED)
        low, high = wilson(killed, tested)
        print(f"models/ estimate from {tested} sampled mutants: {100 * killed / tested:.1f}% killed "
              f"(95% Wilson interval {100 * low:.1f}-{100 * high:.1f}%)")
    if args.list:
        for name, status in sorted(rows):
            if status not in KILLED | {"not checked"}:
                print(f"  {status:<12} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
