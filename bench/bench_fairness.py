"""Fairness engine against Fairlearn 0.13, measured side by side in one run.

Run: ``.venv/bin/python bench/bench_fairness.py [--quick]``. Every timing of ours is
checked for identical values (1e-9) against the Fairlearn anchor it is compared with.
``run(quick)`` returns the rows for a top-level bench runner.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from governance.fairness.engine import ConfusionAccumulator, compute_report  # noqa: E402

GROUP_NAMES = np.array(["group_a", "group_b", "group_c", "group_d", "group_e"], dtype=object)
GROUP_SHARES = [0.40, 0.25, 0.15, 0.12, 0.08]
RATE_NAMES = ("selection_rate", "tpr", "fpr", "fnr", "tnr", "precision", "accuracy")
TOLERANCE = 1e-9
BOOTSTRAP_REPLICATES = 10_000
BOOTSTRAP_ANCHOR_ROWS = 10_000

TARGETS: dict[str, tuple[float, str]] = {
    "metrics, 1,000,000 rows, 5 groups": (0.3, "s"),
    "metrics, 10,000,000 rows, 5 groups": (2.0, "s"),
    "bootstrap CIs, 10,000 replicates, 5 groups": (0.1, "s"),
    "peak RSS, auditing a 10,000,000-row CSV": (500.0, "MB"),
}


def make_data(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Five imbalanced groups with different base rates and error rates."""
    rng = np.random.default_rng(seed)
    codes = rng.choice(len(GROUP_NAMES), size=rows, p=GROUP_SHARES)
    base_rate = np.array([0.55, 0.45, 0.35, 0.50, 0.30])[codes]
    y_true = (rng.random(rows) < base_rate).astype(np.int64)
    flip = rng.random(rows) < np.array([0.15, 0.20, 0.25, 0.18, 0.30])[codes]
    y_pred = np.where(flip, 1 - y_true, y_true)
    return {"y_true": y_true, "y_pred": y_pred, "group": GROUP_NAMES[codes]}


def ours(data: Mapping[str, np.ndarray], **report_kwargs: Any) -> dict[str, Any]:
    accumulator = ConfusionAccumulator(["group"])
    accumulator.add(data["y_true"], data["y_pred"], {"group": data["group"]})
    return compute_report(accumulator.counts(), **report_kwargs)


def _fairlearn_metrics() -> dict[str, Callable[..., Any]]:
    import sklearn.metrics as skm  # type: ignore[import-untyped]
    from fairlearn import metrics as flm  # type: ignore[import-untyped]

    return {
        "count": flm.count,
        "selection_rate": flm.selection_rate,
        "tpr": flm.true_positive_rate,
        "fpr": flm.false_positive_rate,
        "fnr": flm.false_negative_rate,
        "tnr": flm.true_negative_rate,
        "precision": skm.precision_score,
        "accuracy": skm.accuracy_score,
    }


def fairlearn_frame(data: Mapping[str, np.ndarray], **bootstrap: Any) -> Any:
    from fairlearn.metrics import MetricFrame  # type: ignore[import-untyped]

    return MetricFrame(
        metrics=_fairlearn_metrics(),
        y_true=data["y_true"],
        y_pred=data["y_pred"],
        sensitive_features=data["group"],
        **bootstrap,
    )


def max_difference(report: Mapping[str, Any], frame: Any) -> float:
    """Largest absolute difference over every group metric and the overall metrics."""
    worst = 0.0
    groups = {group["attributes"]["group"]: group for group in report["groups"]}
    assert set(groups) == {str(name) for name in frame.by_group.index}, "different groups"
    pairs = [(report["overall"], frame.overall)]
    pairs += [(groups[str(name)], row) for name, row in frame.by_group.iterrows()]
    for entry, row in pairs:
        for name in ("count", *RATE_NAMES):
            value = entry[name]
            assert value is not None, name
            worst = max(worst, abs(float(value) - float(row[name])))
    return worst


def _best_time(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_metrics(rows: int, anchor_rows: int, say: Callable[[str], None]) -> dict[str, Any]:
    data = make_data(rows, seed=rows)
    seconds, report = _best_time(lambda: ours(data), repeats=3)
    anchor_data = data if anchor_rows == rows else make_data(anchor_rows, seed=rows)
    say(f"Fairlearn MetricFrame on {anchor_rows:,} rows ...")
    start = time.perf_counter()
    frame = fairlearn_frame(anchor_data)
    anchor_seconds = time.perf_counter() - start
    anchor_report = report if anchor_rows == rows else ours(anchor_data)
    difference = max_difference(anchor_report, frame)
    assert difference <= TOLERANCE, f"values differ from Fairlearn by {difference}"
    if anchor_rows == rows:
        anchor_name = "Fairlearn 0.13 MetricFrame, same 8 metrics (identical values)"
    else:
        anchor_seconds *= rows / anchor_rows
        anchor_name = f"Fairlearn 0.13 MetricFrame on {anchor_rows:,} rows, scaled x{rows // anchor_rows} (identical values)"
    return {
        "what": f"metrics, {rows:,} rows, 5 groups",
        "ours": seconds,
        "anchor": anchor_seconds,
        "anchor_name": anchor_name,
        "unit": "s",
    }


def bench_bootstrap(anchor_replicates: int, say: Callable[[str], None]) -> list[dict[str, Any]]:
    data = make_data(BOOTSTRAP_ANCHOR_ROWS, seed=7)
    accumulator = ConfusionAccumulator(["group"])
    accumulator.add(data["y_true"], data["y_pred"], {"group": data["group"]})
    counts = accumulator.counts()
    seconds, report = _best_time(lambda: compute_report(counts, bootstrap=BOOTSTRAP_REPLICATES, seed=1), repeats=3)
    say(f"Fairlearn MetricFrame n_boot={anchor_replicates} on {BOOTSTRAP_ANCHOR_ROWS:,} rows ...")
    start = time.perf_counter()
    frame = fairlearn_frame(data, n_boot=anchor_replicates, ci_quantiles=[0.025, 0.975], random_state=1)
    anchor_seconds = time.perf_counter() - start

    # Same point values; and the two bootstraps should agree on the width of an interval.
    assert max_difference(report, frame) <= TOLERANCE
    largest = str(GROUP_NAMES[0])
    low, high = frame.by_group_ci[0].loc[largest, "selection_rate"], frame.by_group_ci[1].loc[largest, "selection_rate"]
    ours_low, ours_high = next(g for g in report["groups"] if g["attributes"]["group"] == largest)["ci"]["selection_rate"]
    return [
        {
            "what": f"bootstrap CIs, {BOOTSTRAP_REPLICATES:,} replicates, 5 groups",
            "ours": seconds,
            "anchor": anchor_seconds,
            "anchor_name": (
                f"Fairlearn MetricFrame n_boot={anchor_replicates:,} (row resampling, "
                f"{BOOTSTRAP_ANCHOR_ROWS:,} rows; {BOOTSTRAP_REPLICATES // anchor_replicates}x fewer replicates)"
            ),
            "unit": "s",
        },
        {
            "what": f"95% CI width, selection rate of {largest}",
            "ours": float(ours_high - ours_low),
            "anchor": float(high - low),
            "anchor_name": f"Fairlearn bootstrap, n_boot={anchor_replicates:,}",
            "unit": "",
        },
    ]


_AUDIT_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
from governance.fairness.reader import audit_file
start = time.perf_counter()
report = audit_file(sys.argv[1], y_true="y_true", y_pred="y_pred", sensitive=["group"])
print(json.dumps({"seconds": time.perf_counter() - start, "report": report}))
"""

_PANDAS_CHILD = """
import json, sys, time
import pandas as pd
start = time.perf_counter()
frame = pd.read_csv(sys.argv[1], usecols=["y_true", "y_pred", "group"])
print(json.dumps({"seconds": time.perf_counter() - start, "rows": len(frame)}))
"""

# Runs one child and reports that child's peak RSS: RUSAGE_CHILDREN of a process whose
# only child is the measured one, so nothing else this bench started is counted.
_RSS_WRAPPER = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
if done.returncode:
    sys.stderr.write(done.stderr)
    sys.exit(done.returncode)
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"peak_kib": peak_kib, "child": json.loads(done.stdout)}))
"""


def _measure_child(code: str, *arguments: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _RSS_WRAPPER, sys.executable, "-c", code, *arguments],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def write_csv(path: Path, rows: int, seed: int) -> dict[str, np.ndarray]:
    """Write the bench data plus an unused score and note column; return what the audit reads."""
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.csv as pa_csv  # type: ignore[import-untyped]

    data = make_data(rows, seed=seed)
    rng = np.random.default_rng(seed + 1)
    block = 1_000_000
    schema = pa.schema(
        [
            ("y_true", pa.int64()),
            ("y_pred", pa.int64()),
            ("group", pa.string()),
            ("score", pa.float64()),
            ("note", pa.string()),
        ]
    )
    with pa_csv.CSVWriter(str(path), schema) as writer:
        for start in range(0, rows, block):
            stop = min(start + block, rows)
            writer.write_table(
                pa.table(
                    {
                        "y_true": data["y_true"][start:stop],
                        "y_pred": data["y_pred"][start:stop],
                        "group": pa.array(data["group"][start:stop], type=pa.string()),
                        "score": np.round(rng.random(stop - start), 4),
                        "note": pa.array(np.full(stop - start, "free text"), type=pa.string()),
                    },
                    schema=schema,
                )
            )
    return data


def bench_csv(rows: int, say: Callable[[str], None]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-fairness-") as folder:
        path = Path(folder) / "audit.csv"
        say(f"writing a {rows:,}-row CSV ...")
        data = write_csv(path, rows, seed=11)
        size_mb = path.stat().st_size / 1e6
        say(f"auditing it ({size_mb:,.0f} MB) in a child process ...")
        audited = _measure_child(_AUDIT_CHILD, str(path), str(REPO_ROOT))
        say("pandas.read_csv of the same columns in a child process ...")
        loaded = _measure_child(_PANDAS_CHILD, str(path))

    in_memory = ours(data)
    from_file = audited["child"]["report"]
    assert from_file["rows"] == rows
    assert from_file["groups"] == in_memory["groups"], "CSV audit differs from the in-memory result"
    return [
        {
            "what": f"peak RSS, auditing a {rows:,}-row CSV",
            "ours": audited["peak_kib"] / 1024,
            "anchor": loaded["peak_kib"] / 1024,
            "anchor_name": f"pandas.read_csv of the 3 needed columns ({size_mb:,.0f} MB file)",
            "unit": "MB",
        },
        {
            "what": f"wall time, auditing a {rows:,}-row CSV",
            "ours": audited["child"]["seconds"],
            "anchor": loaded["child"]["seconds"],
            "anchor_name": "pandas.read_csv of the 3 needed columns, no metrics",
            "unit": "s",
        },
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    """All rows: {"what", "ours", "anchor", "anchor_name", "unit"}."""

    def say(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    rows = [bench_metrics(1_000_000, 100_000 if quick else 1_000_000, say)]
    if not quick:
        rows.append(bench_metrics(10_000_000, 10_000_000, say))
    rows += bench_bootstrap(20 if quick else 1_000, say)
    rows += bench_csv(1_000_000 if quick else 10_000_000, say)
    return rows


def _format(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"
    if unit == "MB":
        return f"{value:,.0f} MB"
    return f"{value:.4f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ("what", "ours", "anchor", "ours/anchor", "goal", "anchor is")
    lines = [header]
    for row in rows:
        target = TARGETS.get(row["what"])
        goal = "" if target is None else f"<= {_format(*target)} " + ("ok" if row["ours"] <= target[0] else "MISSED")
        lines.append(
            (
                row["what"],
                _format(row["ours"], row["unit"]),
                _format(row["anchor"], row["unit"]),
                f"{row['ours'] / row['anchor']:.4f}" if row["anchor"] else "-",
                goal,
                row["anchor_name"],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M rows; Fairlearn on 100k rows and 20 resamples")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    arguments = parser.parse_args()
    rows = run(arguments.quick)
    if arguments.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows)


if __name__ == "__main__":
    main()
