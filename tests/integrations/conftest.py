"""Shared set-up of the MLflow integration tests: a connection of the credit-risk team, the captured
deliveries (tests/data/mlflow), and a fake MLflow registry behind httpx."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from governance.integrations.mlflow.services import connections, reconcile
from governance.integrations.mlflow.services.connections import mlflow_connection_create
from tests.fixtures import SEED
from tests.mlflow_fake import FakeMlflow

DATA = Path(__file__).resolve().parent.parent / "data" / "mlflow"
SECRET = "test-secret-placeholder"  # noqa: S105 (the captures' published placeholder)


def delivery(name: str, index: int | None = None) -> dict[str, Any]:
    """One captured delivery: {"received_at_unix", "request": {"headers", "body"}}."""
    document = json.loads((DATA / name).read_text())
    if "delivery" in document:
        return document["delivery"]
    return document["attempts" if "attempts" in document else "deliveries"][index or 0]


def all_deliveries() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / "all-deliveries.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture
def mlflow_secret(settings) -> str:  # type: ignore[no-untyped-def]
    settings.MLFLOW_CREDENTIALS = {"MLFLOW_CRED_WEBHOOK_SECRET": SECRET}
    return SECRET


@pytest.fixture
def connection(team, environments, mlflow_secret):  # type: ignore[no-untyped-def]
    return mlflow_connection_create(by=SEED, name="lab", team=team, tracking_uri="http://mlflow.test",
                                    webhook_secret_env="MLFLOW_CRED_WEBHOOK_SECRET",
                                    alias_map={"champion": "production", "challenger": "staging"})


@pytest.fixture
def fake_mlflow(monkeypatch) -> FakeMlflow:  # type: ignore[no-untyped-def]
    fake = FakeMlflow()
    monkeypatch.setattr(reconcile, "client_for", lambda connection: fake.client())
    monkeypatch.setattr(connections, "client_for", lambda connection: fake.client())
    return fake
