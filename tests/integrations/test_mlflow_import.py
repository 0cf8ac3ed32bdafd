"""`manage.py mlflow_import`: progress on the terminal, --dry-run writes nothing, a rerun writes nothing."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.models import LedgerEntry
from governance.integrations.mlflow.models import MlflowConnection
from governance.models import ModelVersion, RegisteredModel

FILES = {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x00" * 100}


def importing(*args: str) -> str:
    out = StringIO()
    call_command("mlflow_import", "--tracking-uri", "http://mlflow.test", "--team", "credit-risk", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def registry(fake_mlflow):  # type: ignore[no-untyped-def]
    for name in ("alpha", "beta", "gamma"):
        for _ in range(2):
            fake_mlflow.add_version(name, FILES)
    return fake_mlflow


@pytest.mark.django_db
def test_dry_run_prints_the_plan_and_writes_nothing(team, environments, registry):
    count = LedgerEntry.objects.count()
    out = importing("--dry-run")
    assert "Would create connection 'import-mlflow-test'" in out
    assert "[1/3] alpha: model alpha: would link to alpha; would import versions 1, 2" in out
    assert "3 models, 3 would change, 0 with errors" in out
    assert LedgerEntry.objects.count() == count
    assert not MlflowConnection.objects.exists() and not RegisteredModel.objects.exists()


@pytest.mark.django_db
def test_import_is_idempotent_and_limited_to_the_named_models(team, environments, registry,
                                                               django_capture_on_commit_callbacks):
    out = importing("--model", "alpha", "--model", "beta")
    assert "[2/2] beta: model beta: linked to beta; version 1: imported (2 files); version 2: imported (2 files)" in out
    assert set(RegisteredModel.objects.values_list("name", flat=True)) == {"alpha", "beta"}
    assert ModelVersion.objects.count() == 4
    count = LedgerEntry.objects.count()
    again = importing("--model", "alpha", "--model", "beta")
    assert "[1/2] alpha: up to date" in again and "2 models, 0 changed" in again
    assert LedgerEntry.objects.count() == count
    everything = importing()
    assert "[3/3] gamma: model gamma: linked to gamma" in everything
    assert MlflowConnection.objects.count() == 1


@pytest.mark.django_db
def test_an_unknown_team_is_refused(registry):
    with pytest.raises(CommandError, match="No team named"):
        importing()
