"""`manage.py drift_report`: the documented JSON shape, CSV and Parquet alike, the table,
exit status 2 with a coded message for bad input; it stores and records nothing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from scipy import stats

from tests.conftest import REPO_ROOT

COLUMN_KEYS = {"column", "kind", "n_ref", "n_cur", "missing", "ks", "wasserstein", "wasserstein_normed", "psi", "js", "chi2",
               "novel", "drift"}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("drift_report", *args, stdout=out)
    return out.getvalue()


def _tables(rows_ref: int = 3_000, rows_cur: int = 1_500) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(16)
    reference = pa.table({"age": rng.normal(40, 10, rows_ref), "income": rng.lognormal(10, 1, rows_ref),
                          "region": rng.choice(["north", "south", "east"], rows_ref).tolist()})
    current = pa.table({"age": rng.normal(48, 10, rows_cur), "income": rng.lognormal(10, 1, rows_cur),
                        "region": rng.choice(["north", "south", "east", "west"], rows_cur).tolist()})
    return reference, current


def _write(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    reference, current = _tables()
    paths = tmp_path / f"ref.{kind}", tmp_path / f"cur.{kind}"
    for table, path in zip((reference, current), paths, strict=True):
        if kind == "csv":
            pa_csv.write_csv(table, path)
        else:
            pa_parquet.write_table(table, path)
    return paths


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_json_has_the_documented_shape_and_finds_the_shifted_column(kind: str, tmp_path: Path) -> None:
    ref, cur = _write(tmp_path, kind)
    report = json.loads(run("--reference", str(ref), "--current", str(cur), "--column", "age", "--column", "income",
                            "--categorical", "region", "--json"))
    assert set(report) == {"rows", "columns", "correction"}
    assert report["rows"] == {"reference": 3_000, "current": 1_500}
    assert report["correction"] == "benjamini-hochberg"
    assert all(set(column) == COLUMN_KEYS for column in report["columns"])
    by_name = {column["column"]: column for column in report["columns"]}
    assert by_name["age"]["drift"] is True
    assert by_name["income"]["drift"] is False
    assert by_name["region"]["novel"] == ["west"]
    assert set(by_name["region"]["chi2"]) == {"statistic", "pvalue", "dof", "correction"}
    assert set(by_name["age"]["ks"]) == {"statistic", "pvalue"}
    reference, current = _tables()
    want = stats.ks_2samp(reference.column("age").to_numpy(), current.column("age").to_numpy())
    assert by_name["age"]["ks"]["statistic"] == float(want.statistic)


def test_csv_and_parquet_give_the_same_report(tmp_path: Path) -> None:
    args = ["--column", "age", "--categorical", "region", "--json"]
    csv_ref, csv_cur = _write(tmp_path, "csv")
    parquet_ref, parquet_cur = _write(tmp_path, "parquet")
    from_csv = json.loads(run("--reference", str(csv_ref), "--current", str(csv_cur), *args))
    from_parquet = json.loads(run("--reference", str(parquet_ref), "--current", str(parquet_cur), *args))
    assert from_csv == from_parquet


def test_without_columns_every_column_is_compared_and_text_ones_are_categorical(tmp_path: Path) -> None:
    ref, cur = _write(tmp_path, "parquet")
    report = json.loads(run("--reference", str(ref), "--current", str(cur), "--correction", "bonferroni", "--json"))
    assert [(c["column"], c["kind"]) for c in report["columns"]] == [("age", "numeric"), ("income", "numeric"),
                                                                      ("region", "categorical")]
    assert report["correction"] == "bonferroni"


def test_table_output_names_the_drifting_column(tmp_path: Path) -> None:
    ref, cur = _write(tmp_path, "csv")
    text = run("--reference", str(ref), "--current", str(cur), "--column", "age", "--column", "income")
    assert "age (numeric)" in text and "DRIFT" in text.splitlines()[1]
    assert "DRIFT" not in text.splitlines()[2]


@pytest.mark.parametrize(("reference", "args", "code"), [
    ("a,b\n1,x\n2,y\n", ["--column", "b"], "drift_not_numeric"),
    ("a,b\n1,x\n2,y\n", ["--column", "zzz"], "drift_missing_column"),
    ("", ["--column", "a"], "drift_empty_input"),
    ("a\n\n", ["--column", "a"], "drift_empty_input"),
])
def test_bad_input_exits_2_with_a_coded_message(reference: str, args: list[str], code: str, tmp_path: Path) -> None:
    ref = tmp_path / "ref.csv"
    ref.write_text(reference)
    cur = tmp_path / "cur.csv"
    cur.write_text("a,b\n1,x\n")
    with pytest.raises(CommandError) as error:
        run("--reference", str(ref), "--current", str(cur), *args)
    assert error.value.returncode == 2 and str(error.value).startswith(f"{code}: ")


def test_missing_file_exits_2(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as error:
        run("--reference", str(tmp_path / "nope.csv"), "--current", str(tmp_path / "nope.csv"))
    assert error.value.returncode == 2 and str(error.value).startswith("drift_file_not_found: ")


def test_the_process_exits_2_and_touches_no_database(tmp_path: Path) -> None:
    # An empty SQLite file has no tables: any read or write of the ledger would fail the command.
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    result = subprocess.run([sys.executable, "manage.py", "drift_report", "--reference", str(tmp_path / "missing.csv"),
                             "--current", str(tmp_path / "missing.csv")],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "drift_file_not_found" in result.stderr
    ref, cur = _write(tmp_path, "csv")
    ok = subprocess.run([sys.executable, "manage.py", "drift_report", "--reference", str(ref), "--current", str(cur), "--json"],
                        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["rows"] == {"reference": 3_000, "current": 1_500}
