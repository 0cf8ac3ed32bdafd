"""`manage.py fairness_audit`: the documented JSON shape, score/threshold, the table, and exit
status 2 naming the problem for bad input; it stores and records nothing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import REPO_ROOT
from tests.fairness.helpers import credit_csv

GROUP_KEYS = {"attributes", "count", "selection_rate", "tpr", "fpr", "fnr", "tnr", "precision", "accuracy", "ci",
              "flags"}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("fairness_audit", *args, stdout=out)
    return out.getvalue()


def test_json_has_the_documented_shape(tmp_path: Path) -> None:
    path = credit_csv(tmp_path / "c.csv", rows=500)
    report = json.loads(run("--csv", str(path), "--y-true", "repaid", "--y-pred", "predicted", "--sensitive", "sex",
                            "--sensitive", "age_group", "--bootstrap", "200", "--seed", "3", "--json"))
    assert set(report) == {"rows", "overall", "groups", "disparities"}
    assert report["rows"] == 500
    assert all(set(group) == GROUP_KEYS for group in report["groups"])
    # Every value of each column and every intersection of the two.
    assert {tuple(sorted(g["attributes"])) for g in report["groups"]} == {("sex",), ("age_group",),
                                                                           ("age_group", "sex")}
    assert set(report["disparities"]) == {"sex", "age_group", "sex&age_group"}
    assert set(report["groups"][0]["ci"]) == GROUP_KEYS - {"attributes", "count", "ci", "flags"}  # one per rate
    # The seed makes the bootstrap repeatable.
    again = json.loads(run("--csv", str(path), "--y-true", "repaid", "--y-pred", "predicted", "--sensitive", "sex",
                           "--sensitive", "age_group", "--bootstrap", "200", "--seed", "3", "--json"))
    assert again == report


def test_score_at_or_above_the_threshold_is_a_positive_prediction(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("y,score,g\n1,0.5,a\n0,0.49,a\n1,0.7,b\n0,0.5,b\n")
    report = json.loads(run("--csv", str(path), "--y-true", "y", "--score", "score", "--threshold", "0.5",
                            "--sensitive", "g", "--min-group-size", "0", "--json"))
    groups = {g["attributes"]["g"]: g for g in report["groups"]}
    assert groups["a"]["selection_rate"] == 0.5 and groups["a"]["tpr"] == 1.0 and groups["a"]["fpr"] == 0.0
    assert groups["b"]["selection_rate"] == 1.0 and groups["b"]["fpr"] == 1.0


def test_score_gives_the_same_report_as_the_prediction_column(tmp_path: Path) -> None:
    path = credit_csv(tmp_path / "c.csv", rows=400)
    common = ["--csv", str(path), "--y-true", "repaid", "--sensitive", "sex", "--json"]
    assert json.loads(run(*common, "--score", "score", "--threshold", "0.5")) == json.loads(
        run(*common, "--y-pred", "predicted"))


def test_human_table_lists_groups_and_disparities(tmp_path: Path) -> None:
    text = run("--csv", str(credit_csv(tmp_path / "c.csv", rows=300)), "--y-true", "repaid", "--y-pred", "predicted",
               "--sensitive", "sex")
    assert "sex=female" in text and "sex=male" in text
    assert "demographic_parity_ratio" in text and "lowest impact ratio to best" in text


@pytest.mark.parametrize(("args", "problem"), [
    (["--y-pred", "nope", "--sensitive", "sex"], "fairness_missing_column"),
    (["--score", "score", "--sensitive", "sex"], "--score needs --threshold"),
    (["--y-pred", "predicted", "--sensitive", "sex", "--pos-label", "yes"], "fairness_"),
])
def test_bad_input_is_an_error_with_status_2_that_names_the_problem(args: list[str], problem: str,
                                                                    tmp_path: Path) -> None:
    path = credit_csv(tmp_path / "c.csv", rows=50)
    with pytest.raises(CommandError) as error:
        run("--csv", str(path), "--y-true", "repaid", *args)
    assert error.value.returncode == 2 and problem in str(error.value)


@pytest.mark.parametrize(("content", "code"), [
    ("", "fairness_empty_input"),
    ("repaid,predicted,sex\n", "fairness_empty_input"),
    ("repaid,predicted,sex\n1,1,f\n0,1\n", "fairness_malformed_file"),
])
def test_bad_files_exit_with_status_2(content: str, code: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(CommandError) as error:
        run("--csv", str(path), "--y-true", "repaid", "--y-pred", "predicted", "--sensitive", "sex")
    assert error.value.returncode == 2 and code in str(error.value)


def test_the_process_exits_2_and_touches_no_database(tmp_path: Path) -> None:
    # An empty SQLite file has no tables: any read or write of the ledger would fail the command.
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    result = subprocess.run([sys.executable, "manage.py", "fairness_audit", "--csv", str(tmp_path / "missing.csv"),
                             "--y-true", "y", "--y-pred", "p", "--sensitive", "s"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "fairness_file_not_found" in result.stderr
    ok = subprocess.run([sys.executable, "manage.py", "fairness_audit", "--csv",
                         str(credit_csv(tmp_path / "c.csv", rows=100)), "--y-true", "repaid", "--y-pred",
                         "predicted", "--sensitive", "sex", "--json"],
                        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["rows"] == 100
