"""Drift engine (governance/monitoring/drift.py) against scipy, Evidently and NannyML, in one run.

Run: ``.venv/bin/python bench/bench_drift.py [--quick] [--full]``. The issue's table:

- drift of a window, 25 columns (20 numeric, 5 categorical, 3 of them shifted), all statistics,
  with a cached reference profile and cold (profile built too); anchors: scipy ``ks_2samp`` +
  ``chi2_contingency`` (fewer statistics), Evidently 0.7 ``DataDriftPreset`` and NannyML 0.13
  ``UnivariateDriftCalculator`` with their defaults;
- the same at 10M x 10M rows (``--full`` only) against scipy;
- peak memory of one window read from disk (Parquet, and CSV one column per pass), column by
  column with each numeric column's cached profile, against loading the
  whole frame and running scipy on it; each in its own process (``VmHWM`` of /proc/self/status: the
  peak of that process's own memory; ``ru_maxrss`` would carry the forking parent's peak over exec);
- false alarms per column on undrifted data at alpha = 0.05, against Evidently's chi-square
  (a goodness-of-fit test of the current counts against the reference shares, reproduced with
  ``scipy.stats.chisquare``, which is what Evidently computes);
- exactness: KS statistic and p-value against ``scipy.stats.ks_2samp`` (exact and asymptotic
  branches), chi-square against ``chi2_contingency``, Wasserstein against scipy, and the
  performance metrics against scikit-learn.

Default sizes are reduced (100,000 x 100,000 rows) so the run fits a shared machine; ``--full``
runs the issue's sizes (1M x 1M and 10M x 10M), ``--quick`` smaller still. ``--memory-only
--memory-rows 10000000`` runs the memory row alone (``--memory-compare <checkout>`` measures an
older engine on the same files); ``--window-only --rows 10000000 --no-anchors`` the 10M timing alone. Evidently and NannyML
live only in ``bench/.venv-anchors`` (``bench/requirements-anchors.txt``), run in a subprocess
on the same Parquet files with ``NML_DISABLE_USAGE_LOGGING=1``; when that environment is
missing, their rows say so. No timing is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from governance.monitoring.drift import build_profiles, drift_report  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
ANCHOR_PYTHON = BENCH_DIR / ".venv-anchors" / "bin" / "python"
NUMERIC, CATEGORICAL = 20, 5
SHIFTED = {"num_00": 0.1, "num_07": 0.25}  # mean shift in standard deviations
SHIFTED_CATEGORICAL = "cat_2"
CARDINALITIES = (3, 5, 8, 12, 20)


# --- data -------------------------------------------------------------------------------------

def make_frame(rows: int, seed: int, *, shifted: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for index in range(NUMERIC):
        name = f"num_{index:02d}"
        shift = SHIFTED.get(name, 0.0) if shifted else 0.0
        if index % 4 == 3:
            values = rng.lognormal(0.0, 0.6, rows) + shift * 0.7
        elif index % 4 == 2:
            values = np.round(rng.normal(50 + 10 * shift, 10, rows))  # ties
        else:
            values = rng.normal(shift, 1.0 + index / 10, rows) * (1.0 + index / 10)
        if index % 5 == 4:
            values[rng.random(rows) < 0.02] = np.nan
        data[name] = values
    for index, size in enumerate(CARDINALITIES):
        name = f"cat_{index}"
        shares = np.linspace(1.0, 2.0, size)
        if shifted and name == SHIFTED_CATEGORICAL:
            shares[0] *= 1.5
        shares /= shares.sum()
        data[name] = np.array([f"c{k}" for k in range(size)], dtype=object)[rng.choice(size, rows, p=shares)]
    return data


def write_parquet(data: dict[str, np.ndarray], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({name: pa.array(values) for name, values in data.items()}), path)


CATEGORICAL_NAMES = [f"cat_{index}" for index in range(CATEGORICAL)]


# --- ours and scipy ---------------------------------------------------------------------------

def ours_cold(reference: dict[str, np.ndarray], current: dict[str, np.ndarray]) -> tuple[float, float, dict[str, Any]]:
    start = time.perf_counter()
    profiles = build_profiles(reference, categorical=CATEGORICAL_NAMES)
    built = time.perf_counter()
    report = drift_report(profiles, current)
    end = time.perf_counter()
    return end - start, end - built, report


def scipy_ks_chi2(reference: dict[str, np.ndarray], current: dict[str, np.ndarray]) -> tuple[float, dict[str, Any]]:
    from scipy import stats

    start = time.perf_counter()
    result: dict[str, Any] = {}
    for name in reference:
        if name in CATEGORICAL_NAMES:
            categories, codes = np.unique(np.concatenate([reference[name], current[name]]).astype(str), return_inverse=True)
            size = reference[name].size
            table = np.vstack([np.bincount(codes[:size], minlength=categories.size),
                               np.bincount(codes[size:], minlength=categories.size)])
            chi2 = stats.chi2_contingency(table)
            result[name] = (chi2.statistic, chi2.pvalue)
        else:
            ref, cur = reference[name], current[name]
            ks = stats.ks_2samp(ref[~np.isnan(ref)], cur[~np.isnan(cur)])
            result[name] = (ks.statistic, ks.pvalue)
    return time.perf_counter() - start, result


def bench_window(rows: int, say: Any, *, anchors: bool, folder: Path) -> list[dict[str, Any]]:
    say(f"data: {rows:,} x {rows:,} rows, {NUMERIC + CATEGORICAL} columns ...")
    reference = make_frame(rows, 1, shifted=False)
    current = make_frame(rows, 2, shifted=True)
    cold, cached, report = ours_cold(reference, current)
    profiles = build_profiles(reference, categorical=CATEGORICAL_NAMES)
    start = time.perf_counter()
    report = drift_report(profiles, current)
    cached = min(cached, time.perf_counter() - start)
    scipy_seconds, scipy_result = scipy_ks_chi2(reference, current)
    # Same statistic as scipy, column by column (the KS statistic bit for bit).
    for column in report["columns"]:
        want = scipy_result[column["column"]]
        if column["kind"] == "numeric":
            assert column["ks"]["statistic"] == want[0], column["column"]
        else:
            assert abs(column["chi2"]["statistic"] - want[0]) <= 1e-9 * max(1.0, want[0]), column["column"]
    label = f"{rows:,} x {rows:,} rows, 25 columns"
    rows_out = [
        {"what": f"drift, {label}, cached profile (drifted: {','.join(report['drifted'])})", "ours": cached,
         "anchor": scipy_seconds, "anchor_name": "scipy ks_2samp + chi2_contingency only", "unit": "s",
         "goal": "<= 3 s at 1M; >= 1x scipy"},
        {"what": f"drift, {label}, cold (profile built too)", "ours": cold, "anchor": scipy_seconds,
         "anchor_name": "scipy ks_2samp + chi2_contingency only", "unit": "s", "goal": "<= 5 s at 1M"},
    ]
    if anchors:
        write_parquet(reference, folder / "reference.parquet")
        write_parquet(current, folder / "current.parquet")
        del reference, current
        for tool in ("evidently", "nannyml"):
            say(f"{tool} on {rows:,} x {rows:,} ...")
            measured = run_anchor(tool, folder)
            rows_out.append({
                "what": f"drift, {label}, {tool} defaults", "ours": cached,
                "anchor": measured.get("seconds"), "unit": "s",
                "anchor_name": measured.get("name") or measured.get("error", "not run"),
                "goal": ">= 20x Evidently" if tool == "evidently" else "reported",
                "ratio": (measured["seconds"] / cached) if measured.get("seconds") else None,
                "ratio_is": "anchor / ours (speed-up)", "anchor_peak_mb": measured.get("peak_mb"),
                "anchor_flagged": measured.get("flagged")})
    return rows_out


# --- the anchors' own environment -------------------------------------------------------------

ANCHOR_SCRIPT = r"""
import json, os, resource, sys, time, warnings
warnings.filterwarnings("ignore")
os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
import pandas as pd
tool, folder = sys.argv[1], sys.argv[2]
reference = pd.read_parquet(os.path.join(folder, "reference.parquet"))
current = pd.read_parquet(os.path.join(folder, "current.parquet"))
categorical = [c for c in reference.columns if c.startswith("cat_")]
for frame in (reference, current):
    for name in categorical:
        frame[name] = frame[name].astype("category")
if tool == "evidently":
    import evidently
    from evidently import Report
    from evidently.presets import DataDriftPreset
else:
    import nannyml
start = time.perf_counter()
flagged = []
if tool == "evidently":
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    seconds = time.perf_counter() - start
    for metric in snapshot.dict().get("metrics", []):
        value = metric.get("value")
        name = str(metric.get("metric_name", ""))
        if "ValueDrift" in name and isinstance(value, (int, float)):
            flagged.append(name)
    name = f"Evidently {evidently.__version__} DataDriftPreset"
else:
    calc = nannyml.UnivariateDriftCalculator(column_names=list(reference.columns), treat_as_categorical=categorical,
                                             chunk_number=1)
    calc.fit(reference)
    result = calc.calculate(current)
    seconds = time.perf_counter() - start
    frame = result.filter(period="analysis").to_df()
    for column in frame.columns:
        if column[-1] == "alert" and bool(frame[column].iloc[0]):
            flagged.append(f"{column[0]}:{column[1]}")
    name = f"NannyML {nannyml.__version__} UnivariateDriftCalculator defaults"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
try:  # this process's own peak (ru_maxrss keeps the forking parent's over exec)
    peak = next(int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    pass
print(json.dumps({"seconds": seconds, "name": name, "peak_mb": peak, "flagged": flagged}))
"""


def _anchor_environment() -> str | None:
    """bench/.venv-anchors with Evidently and NannyML (from requirements-anchors.txt); an error or None."""
    if not ANCHOR_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ANCHOR_PYTHON.parent.parent)], check=True)
    if subprocess.run([str(ANCHOR_PYTHON), "-c", "import evidently, nannyml"], capture_output=True).returncode != 0:
        installed = subprocess.run([str(ANCHOR_PYTHON), "-m", "pip", "install", "-q", "-r",
                                    str(BENCH_DIR / "requirements-anchors.txt")], capture_output=True, text=True)
        if installed.returncode != 0:
            return f"anchors not installed: {installed.stderr[-300:]}"
    return None


def run_anchor(tool: str, folder: Path) -> dict[str, Any]:
    problem = _anchor_environment()
    if problem:
        return {"error": problem}
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
    done = subprocess.run([str(ANCHOR_PYTHON), "-c", ANCHOR_SCRIPT, tool, str(folder)], capture_output=True, text=True,
                          env=env, timeout=3600)
    if done.returncode != 0:
        return {"error": f"{tool} failed: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- peak memory of a window from disk ----------------------------------------------------------

MEMORY_CHILD = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[3])
mode, folder = sys.argv[1], sys.argv[2]
window = sys.argv[4] if len(sys.argv) > 4 else "current.parquet"
start = time.perf_counter()
if mode == "ours":
    from pathlib import Path
    from governance.monitoring.drift import NumericProfile, CategoricalProfile, adjust_pvalues, numeric_drift, categorical_drift
    from governance.monitoring.reader import read_columns
    import pickle
    results = []
    names = json.load(open(Path(folder) / "columns.json"))
    for name, kind in names:
        # The cached profile, one column at a time; the window's column read from the Parquet file alone.
        profile = pickle.load(open(Path(folder) / f"profile-{name}.pickle", "rb"))
        numeric, categorical = ([name], []) if kind == "numeric" else ([], [name])
        try:
            (_, values), = list(read_columns(Path(folder) / window, numeric, categorical, arrow_text=True))
        except TypeError:  # an older checkout (--memory-compare) without arrow_text
            (_, values), = list(read_columns(Path(folder) / window, numeric, categorical))
        if kind == "numeric":
            try:  # the reader's array is given up: sorted in place, not copied
                results.append(numeric_drift(profile, values, sort_in_place=True))
            except TypeError:  # an older checkout (--memory-compare)
                results.append(numeric_drift(profile, values))
        else:
            results.append(categorical_drift(profile, values))
        del profile, values
    adjusted = adjust_pvalues([r["pvalue"] for r in results], "benjamini-hochberg")
elif mode in ("cli", "service"):
    # The real code paths: `manage.py drift_report`'s function (the reference file profiled and the
    # window compared, one column at a time), and a monitor run's window path (monitors._window_columns
    # into drift_report_columns) with the sealed-file open stood in by the plain file and a reference
    # profile of 100,000 rows (a stored profile body holds every reference value, loaded whole).
    import os, pickle
    from pathlib import Path
    import django
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")
    os.environ["DATABASE_URL"] = f"sqlite:///{folder}/no-database.sqlite3"
    django.setup()
    names = json.load(open(Path(folder) / "columns.json"))
    numeric = [name for name, kind in names if kind == "numeric"]
    categorical = [name for name, kind in names if kind != "numeric"]
    if mode == "cli":
        from governance.monitoring.management.commands.drift_report import file_drift_report
        report = file_drift_report(str(Path(folder) / "reference.parquet"), str(Path(folder) / window), columns=numeric,
                                   categorical=categorical)
    else:
        from governance.monitoring.drift import drift_report_columns
        from governance.monitoring.services import monitors
        monitors.vault.sealed_file_open = lambda *, record, purpose: record
        profiles = pickle.load(open(Path(folder) / "service-profiles.pickle", "rb"))
        report = drift_report_columns(monitors._window_columns([Path(folder) / window], profiles), given_up=True)
    assert len(report["columns"]) == len(names)
else:
    import pandas as pd
    from scipy import stats
    reference = pd.read_parquet(f"{folder}/reference.parquet")
    current = pd.read_parquet(f"{folder}/current.parquet")
    for name in reference.columns:
        if name.startswith("cat_"):
            table = pd.crosstab(np.r_[np.zeros(len(reference)), np.ones(len(current))],
                                np.r_[reference[name].to_numpy(), current[name].to_numpy()])
            stats.chi2_contingency(table.to_numpy())
        else:
            stats.ks_2samp(reference[name].dropna().to_numpy(), current[name].dropna().to_numpy())
def peak_mb():
    # VmHWM is the high-water RSS of this process's own address space; ru_maxrss also holds the
    # forking parent's peak (Linux keeps it across exec), which here is the whole bench's data.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": peak_mb()}))
"""


def bench_memory(rows: int, say: Any, folder: Path, *, csv: bool = True,
                 compare: Path | None = None, whole: bool = True, real_paths: bool = True) -> list[dict[str, Any]]:
    import pickle

    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    say(f"peak memory: a {rows:,}-row window from disk ...")
    reference = make_frame(rows, 3, shifted=False)
    current = make_frame(rows, 4, shifted=True)
    write_parquet(reference, folder / "reference.parquet")
    write_parquet(current, folder / "current.parquet")
    del current
    columns = []
    for profile in build_profiles(reference, categorical=CATEGORICAL_NAMES):
        with open(folder / f"profile-{profile.column}.pickle", "wb") as handle:
            pickle.dump(profile, handle)
        columns.append((profile.column, profile.kind))
    with open(folder / "service-profiles.pickle", "wb") as handle:
        pickle.dump(build_profiles({name: values[:100_000] for name, values in reference.items()},
                                   categorical=CATEGORICAL_NAMES), handle)
    del reference
    (folder / "columns.json").write_text(json.dumps(columns))
    if csv:
        say("writing the window as CSV ...")
        with pa_csv.CSVWriter(folder / "current.csv", pq.ParquetFile(folder / "current.parquet").schema_arrow) as writer:
            for batch in pq.ParquetFile(folder / "current.parquet").iter_batches(batch_size=100_000):
                writer.write_batch(batch)
    measured = {}
    runs = [("ours", "current.parquet")] + ([("whole", "current.parquet")] if whole else [])
    runs += [("ours", "current.csv")] if csv else []
    runs += [("cli", "current.parquet"), ("service", "current.parquet")] if real_paths else []
    runs += [("compare", "current.parquet")] if compare else []
    for mode, window in runs:
        say(f"peak memory: {mode} on {window} ...")
        root = compare if mode == "compare" else REPO_ROOT
        done = subprocess.run([sys.executable, "-c", MEMORY_CHILD, "ours" if mode == "compare" else mode, str(folder),
                               str(root), window], capture_output=True, text=True, check=True)
        measured[(mode, window)] = json.loads(done.stdout.strip().splitlines()[-1])
    whole_run = measured.get(("whole", "current.parquet"), {"peak_mb": None, "seconds": None})
    out = [{"what": f"peak RSS, a {rows:,}-row window (Parquet), cached profile, column by column",
            "ours": measured[("ours", "current.parquet")]["peak_mb"], "anchor": whole_run["peak_mb"],
            "anchor_name": "whole frame (pandas) + scipy KS/chi2", "unit": "MB", "goal": "<= 500 MB at 10M"},
           {"what": "  same, its time", "ours": measured[("ours", "current.parquet")]["seconds"],
            "anchor": whole_run["seconds"], "anchor_name": "whole frame (pandas) + scipy KS/chi2", "unit": "s",
            "goal": "reported"}]
    if compare:
        before = measured[("compare", "current.parquet")]
        out += [{"what": f"  same (Parquet), the engine of {compare}", "ours": measured[("ours", "current.parquet")]["peak_mb"],
                 "anchor": before["peak_mb"], "anchor_name": f"{compare.name} (seconds: {before['seconds']:.1f})",
                 "unit": "MB", "goal": "reported"}]
    for mode, label in (("cli", f"peak RSS, manage.py drift_report, {rows:,} x {rows:,} rows (Parquet), profile built too"),
                        ("service", f"peak RSS, a monitor run's window path, {rows:,}-row window, 100,000-row profile")):
        if (mode, "current.parquet") in measured:
            out += [{"what": label, "ours": measured[(mode, "current.parquet")]["peak_mb"], "anchor": whole_run["peak_mb"],
                     "anchor_name": "whole frame (pandas) + scipy KS/chi2", "unit": "MB", "goal": "<= 500 MB at 10M"},
                    {"what": "  same, its time", "ours": measured[(mode, "current.parquet")]["seconds"],
                     "anchor": whole_run["seconds"], "anchor_name": "whole frame (pandas) + scipy KS/chi2", "unit": "s",
                     "goal": "reported"}]
    if csv:
        out += [{"what": f"peak RSS, a {rows:,}-row window (CSV, one column per pass), cached profile",
                 "ours": measured[("ours", "current.csv")]["peak_mb"], "anchor": whole_run["peak_mb"],
                 "anchor_name": "whole frame (pandas, Parquet) + scipy KS/chi2", "unit": "MB",
                 "goal": "<= 500 MB at 10M"},
                {"what": "  same, its time", "ours": measured[("ours", "current.csv")]["seconds"], "anchor": None,
                 "anchor_name": "", "unit": "s", "goal": "reported"}]
    return out


# --- false alarms -------------------------------------------------------------------------------

def bench_false_alarms(trials: int, rows: int, say: Any) -> list[dict[str, Any]]:
    from scipy import stats

    say(f"false alarms: {trials} undrifted windows of {rows:,} rows against {rows:,} ...")
    ours_drift = ours_significant = evidently_like = numeric_cells = categorical_cells = 0
    for trial in range(trials):
        reference = make_frame(rows, 1000 + 2 * trial, shifted=False)
        current = make_frame(rows, 1001 + 2 * trial, shifted=False)
        report = drift_report(build_profiles(reference, categorical=CATEGORICAL_NAMES), current)
        for column in report["columns"]:
            ours_drift += column["drift"]
            ours_significant += column["pvalue"] <= 0.05
        for name in CATEGORICAL_NAMES:
            categories = sorted(set(reference[name]) | set(current[name]))
            ref_counts = np.array([np.sum(reference[name] == c) for c in categories], dtype=float)
            cur_counts = np.array([np.sum(current[name] == c) for c in categories], dtype=float)
            # Evidently's chi-square: goodness of fit of the current counts to the reference shares.
            expected = ref_counts / ref_counts.sum() * cur_counts.sum()
            evidently_like += stats.chisquare(cur_counts, expected).pvalue <= 0.05
            categorical_cells += 1
        numeric_cells += len(report["columns"])
    return [
        {"what": f"false alarms per column, no drift, alpha 0.05 ({trials} x 25 columns, BH + effect size)",
         "ours": 100 * ours_drift / numeric_cells, "anchor": 100 * evidently_like / categorical_cells,
         "anchor_name": "Evidently chi2 (goodness of fit)", "unit": "%", "goal": "<= 6 %"},
        {"what": "  same, our unadjusted p <= 0.05 alone (the test's size)",
         "ours": 100 * ours_significant / numeric_cells, "anchor": 5.0, "anchor_name": "nominal alpha", "unit": "%",
         "goal": "about 5 %"},
    ]


# --- exactness --------------------------------------------------------------------------------

def bench_exactness(say: Any) -> list[dict[str, Any]]:
    from scipy import stats
    from sklearn import metrics as sk

    from governance.monitoring.performance import classification_metrics, regression_metrics

    say("exactness against scipy and scikit-learn ...")
    worst = {"ks_statistic": 0.0, "ks_pvalue": 0.0, "chi2": 0.0, "wasserstein": 0.0, "metrics": 0.0}
    for seed, (n_ref, n_cur) in enumerate([(9_000, 7_001), (10_000, 10_000), (3_000, 2_000), (50_000, 20_000)]):
        rng = np.random.default_rng(seed)
        reference = {"x": np.round(rng.normal(0, 1, n_ref), 2), "c": rng.choice(["a", "b", "c", "d"], n_ref)}
        current = {"x": np.round(rng.normal(0.05, 1, n_cur), 2), "c": rng.choice(["a", "b", "c", "d"], n_cur)}
        report = drift_report(build_profiles(reference, categorical=["c"]), current)
        numeric, categorical = report["columns"]
        ks = stats.ks_2samp(reference["x"], current["x"])
        worst["ks_statistic"] = max(worst["ks_statistic"], abs(numeric["ks"]["statistic"] - ks.statistic))
        worst["ks_pvalue"] = max(worst["ks_pvalue"], abs(numeric["ks"]["pvalue"] - ks.pvalue))
        worst["wasserstein"] = max(worst["wasserstein"], abs(numeric["wasserstein"]
                                                            - stats.wasserstein_distance(reference["x"], current["x"])))
        table = np.array([[np.sum(reference["c"] == k) for k in "abcd"], [np.sum(current["c"] == k) for k in "abcd"]])
        chi2 = stats.chi2_contingency(table)
        worst["chi2"] = max(worst["chi2"], abs(categorical["chi2"]["statistic"] - chi2.statistic),
                            abs(categorical["chi2"]["pvalue"] - chi2.pvalue))
        truth = rng.integers(0, 2, n_cur)
        score = np.clip(truth * 0.3 + rng.random(n_cur) * 0.7, 0, 1).round(3)
        predicted = (score >= 0.5).astype(int)
        ours = classification_metrics(truth, predicted, score)
        want = {"accuracy": sk.accuracy_score(truth, predicted), "precision": sk.precision_score(truth, predicted),
                "recall": sk.recall_score(truth, predicted), "f1": sk.f1_score(truth, predicted),
                "roc_auc": sk.roc_auc_score(truth, score), "brier": sk.brier_score_loss(truth, score)}
        regression = regression_metrics(score * 10, truth * 10.0)
        want_regression = {"mae": sk.mean_absolute_error(score * 10, truth * 10.0),
                           "rmse": float(np.sqrt(sk.mean_squared_error(score * 10, truth * 10.0))),
                           "r2": sk.r2_score(score * 10, truth * 10.0)}
        for name, value in want.items():
            worst["metrics"] = max(worst["metrics"], abs(ours[name] - value))
        for name, value in want_regression.items():
            worst["metrics"] = max(worst["metrics"], abs(regression[name] - value))
    return [{"what": f"largest |ours - reference|, {name.replace('_', ' ')}", "ours": value, "anchor": 0.0,
             "anchor_name": "scikit-learn" if name == "metrics" else "scipy", "unit": "abs diff",
             "goal": "0 (KS statistic)" if name == "ks_statistic" else "<= 1e-12", "ratio": None}
            for name, value in worst.items()]


# --- runner -------------------------------------------------------------------------------------

def run(quick: bool = False, full: bool = False, anchors: bool = True, rows: int | None = None,
        memory_rows: int | None = None, memory_only: bool = False, memory_compare: Path | None = None,
        window_only: bool = False) -> list[dict[str, Any]]:
    def say(message: str) -> None:
        print(f"[drift] {message}", file=sys.stderr, flush=True)

    if memory_only:
        with tempfile.TemporaryDirectory(prefix="bench-drift-memory-") as folder:
            return bench_memory(memory_rows or 10_000_000, say, Path(folder), compare=memory_compare,
                                whole=anchors)

    rows = rows or (20_000 if quick else (1_000_000 if full else 100_000))
    if window_only:
        with tempfile.TemporaryDirectory(prefix="bench-drift-") as folder:
            return bench_window(rows, say, anchors=anchors, folder=Path(folder))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as folder:
        results += bench_window(rows, say, anchors=anchors, folder=Path(folder))
        if full:
            results += bench_window(10_000_000, say, anchors=False, folder=Path(folder))
    memory_rows = memory_rows or (10_000_000 if full else (200_000 if quick else 1_000_000))
    with tempfile.TemporaryDirectory(prefix="bench-drift-memory-") as folder:
        results += bench_memory(memory_rows, say, Path(folder), compare=memory_compare)
    results += bench_false_alarms(20 if quick else 200, 2_000, say)
    results += bench_exactness(say)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000-row windows, fewer trials")
    parser.add_argument("--full", action="store_true", help="the issue's sizes: 1M x 1M, 10M x 10M, 10M-row memory")
    parser.add_argument("--no-anchors", action="store_true", help="skip Evidently and NannyML")
    parser.add_argument("--rows", type=int, default=0, help="rows per side of the window bench (e.g. 1000000)")
    parser.add_argument("--memory-rows", type=int, default=0, help="rows of the window in the peak-memory bench")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the peak-memory bench (Parquet and CSV), 10M rows unless --memory-rows")
    parser.add_argument("--window-only", action="store_true",
                        help="only the window timing at --rows (e.g. --rows 10000000 --no-anchors: the 10M x 10M row)")
    parser.add_argument("--memory-compare", type=Path, default=None,
                        help="another checkout of the repository whose engine the memory bench also measures")
    args = parser.parse_args()
    load = os.getloadavg()
    results = run(quick=args.quick, full=args.full, anchors=not args.no_anchors, rows=args.rows or None,
                  memory_rows=args.memory_rows or None, memory_only=args.memory_only,
                  memory_compare=args.memory_compare, window_only=args.window_only)
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'what':84} {'ours':>10} {'anchor':>10} {'unit':8} {'anchor is':44} goal")
    for row in results:
        ours, anchor = row.get("ours"), row.get("anchor")
        print(f"{row['what'][:84]:84} {_fmt(ours):>10} {_fmt(anchor):>10} {row.get('unit', ''):8} "
              f"{str(row.get('anchor_name', ''))[:44]:44} {row.get('goal', '')}")
    return 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if value and abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(main())
