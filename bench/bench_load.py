"""Load benchmark for the one bench command: the production stack (gunicorn, Celery worker and beat,
PostgreSQL, Redis) under a mixed pipeline load; see bench/load/run_load.py (quick = 30 s)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load.run_load import exactly_once  # noqa: E402
from bench.load.run_load import run as run_load  # noqa: E402


def run(quick: bool) -> list[dict]:  # type: ignore[type-arg]
    result = run_load(duration_s=30 if quick else 180, users=16, web_workers=3)
    rows = [{"what": "mixed pipeline load, all endpoints", "ours": round(result["rps"], 1), "anchor": None,
             "anchor_name": "", "unit": "req/s", "goal": "no 5xx, error rate < 1 %"},
            {"what": "error rate", "ours": round(100 * result["error_rate"], 2), "anchor": None, "anchor_name": "",
             "unit": "%", "goal": "< 1 %"}]
    for name, row in result["endpoints"].items():
        rows.append({"what": f"{name} p50 / p95 / p99", "ours": round(row["p95_ms"], 1), "anchor": None, "anchor_name": "",
                     "unit": f"ms p95 (p50 {row['p50_ms']:.0f}, p99 {row['p99_ms']:.0f})", "goal": ""})
    rows.append({"what": "verify_ledger after the load, accepted writes in the ledger exactly once",
                 "ours": "yes" if result["verify_ok"] and exactly_once(result["counts"]) else "NO", "anchor": None,
                 "anchor_name": "", "unit": f"{result['verify_entries']} entries", "goal": "yes"})
    return rows


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    rows = run(quick)
    print(json.dumps(rows, indent=2))
