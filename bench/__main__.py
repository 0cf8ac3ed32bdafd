"""Run every benchmark and print one table: our figure, the anchor's (same run), the ratio, the goal.

    python -m bench [--quick] [--only ledger,fairness,...] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["bench_ledger", "bench_capture", "bench_lineage", "bench_fairness", "bench_fairness_service",
           "bench_sealed", "bench_bundles", "bench_pages", "bench_load", "bench_mlflow", "bench_drift"]


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if value < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", default="", help="comma-separated module names (e.g. ledger,fairness)")
    parser.add_argument("--json", default="", help="also write the rows to this file")
    args = parser.parse_args()
    wanted = [f"bench_{name}" if not name.startswith("bench_") else name for name in args.only.split(",") if name]
    rows: list[dict] = []
    failures = 0
    for name in wanted or MODULES:
        if importlib.util.find_spec(f"bench.{name}") is None:
            continue
        started = time.perf_counter()
        # Each bench runs in its own process: they configure Django and databases differently.
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            code = (f"import json; from bench.{name} import run; "
                    f"json.dump(run(quick={args.quick}), open({out.name!r}, 'w'), default=str)")
            completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT)
            if completed.returncode != 0:
                failures += 1
                print(f"[{name} FAILED with exit status {completed.returncode}]", file=sys.stderr)
                continue
            for row in json.load(open(out.name)):
                rows.append({"bench": name.removeprefix("bench_"), **row})
        print(f"[{name} done in {time.perf_counter() - started:.1f} s]", file=sys.stderr)
    header = f"{'bench':9} {'what':58} {'ours':>12} {'anchor':>12} {'anchor name':28} {'ratio':>8} {'unit':12} goal"
    machine = f"{platform.machine()} with {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\n{datetime.now(UTC):%Y-%m-%d} on {machine}")
    print(header)
    print("-" * len(header))
    for row in rows:
        ours, anchor = row.get("ours"), row.get("anchor")
        ratio = row.get("ratio")
        if ratio is None and isinstance(ours, (int, float)) and isinstance(anchor, (int, float)) and anchor:
            ratio = ours / anchor
        print(f"{row['bench']:9} {row['what'][:58]:58} {_format(ours):>12} {_format(anchor):>12} "
              f"{(row.get('anchor_name') or '')[:28]:28} {_format(ratio):>8} {row.get('unit', ''):12} {row.get('goal', '')}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2, default=str)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
