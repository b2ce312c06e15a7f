"""Copy the latest full run's targets table from bench/results/LATEST.md into the README.

``python -m oddsflow.bench.readme`` replaces what lies between the README's
``<!-- bench:begin`` and ``<!-- bench:end -->`` markers; nothing in that block is typed by
hand. A quick run is refused: the README carries full runs only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from oddsflow.settings import REPO_ROOT

LATEST = Path(__file__).resolve().parent / "results" / "LATEST.md"
BEGIN = "<!-- bench:begin (copied from bench/results/LATEST.md by `python -m oddsflow.bench.readme`) -->"
END = "<!-- bench:end -->"


def section(latest: str) -> str:
    run = next((line for line in latest.splitlines() if line.startswith("Run ")), None)
    if run is None or "(full;" not in run:
        raise ValueError("LATEST.md is not a full run; run `oddsflow bench` without --quick")
    m = re.search(r"^## Targets.*?\n\n(\|.*?)(?:\n\n|\Z)", latest, flags=re.S | re.M)
    if m is None:
        raise ValueError("LATEST.md has no targets table")
    return f"Latest full run: {run}\n\n{m.group(1).strip()}\n"


def update(readme: str, latest: str) -> str:
    start = readme.find("<!-- bench:begin")
    stop = readme.find(END)
    if start < 0 or stop < start:
        raise ValueError("README has no bench:begin / bench:end markers")
    return f"{readme[:start]}{BEGIN}\n{section(latest)}{readme[stop:]}"


def main() -> int:
    path = REPO_ROOT / "README.md"
    try:
        path.write_text(update(path.read_text(), LATEST.read_text()))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"updated {path} from {LATEST}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
