"""Print the mutation score of the last ``make mutation`` run (reads ``mutmut results --all true``).

score = killed / mutants tested, where "tested" leaves out timeouts (and mutants not checked yet or
skipped): a mutant no test covers ("no tests") or that survives counts against the score.
``--list`` also prints the mutants that were not killed, area by area.
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the mutants that were checked and not killed")
    args = parser.parse_args()
    rows = results()
    if not rows:
        print("no mutmut results (run `make mutation` first)")
        return 1
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
    if args.list:
        for name, status in sorted(rows):
            if status not in KILLED | {"not checked"}:
                print(f"  {status:<12} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
