"""PostgreSQL goes away during traffic (a TCP proxy we cut, not the shared cluster): clients get a
clear 503 with Retry-After and retry with the same Idempotency-Key; afterwards every version exists
exactly once, with exactly one ledger entry, and the chain verifies. No 500, no partial write."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from audit.models import LedgerEntry
from audit.verify import verify_ledger
from governance.models import IdempotencyRecord, ModelVersion
from governance.registry.services.access import service_account_create
from governance.registry.services.registry import model_register, team_create
from tests.conftest import uses_postgres
from tests.faults.helpers import TcpProxy, database_url, gunicorn, service_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.postgres,
              pytest.mark.skipif(not uses_postgres(), reason="cuts a TCP path to the real PostgreSQL")]

VERSIONS = 30


def pipeline_token() -> str:
    root = get_user_model().objects.create(username="root", is_superuser=True, is_staff=True)
    team = team_create(by="system:fault_test", name="credit-risk")
    model = model_register(by=root, name="scorer", team=team, risk_tier="minimal")
    _, token = service_account_create(by="system:fault_test", name="pipeline", role="data_scientist",
                                               models=[model])
    return token


def body(index: int) -> dict[str, object]:
    return {"label": f"1.{index}.0", "artifact_uri": f"s3://models/scorer/1.{index}.0/",
            "manifest": {"model.bin": f"{index:064x}"}}


def test_postgres_outage_gives_503_with_retry_after_and_retries_write_exactly_once():
    token = pipeline_token()
    config = connection.settings_dict
    proxy = TcpProxy(config["HOST"] or "127.0.0.1", int(config["PORT"] or 5432))
    env = service_env(DATABASE_URL=database_url(port=proxy.port), DB_CONN_MAX_AGE="0")
    outcomes: dict[int, list[int]] = {index: [] for index in range(VERSIONS)}
    unavailable: list[httpx.Response] = []
    bad: list[str] = []
    first_writes_done = threading.Event()
    try:
        with gunicorn(env, workers=2) as (base, _):
            def drive() -> None:
                with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
                    for index in range(VERSIONS):
                        deadline = time.monotonic() + 60
                        while time.monotonic() < deadline:
                            response = client.post("/api/models/scorer/versions/", json=body(index),
                                                   headers={"Idempotency-Key": f"version-{index}"})
                            outcomes[index].append(response.status_code)
                            if response.status_code == 201:
                                break
                            if response.status_code == 503:
                                unavailable.append(response)
                                time.sleep(0.2)
                                continue
                            bad.append(f"{index}: {response.status_code} {response.text[:300]}")
                            break
                        if index == 5:
                            first_writes_done.set()
                        time.sleep(0.05)

            driver = threading.Thread(target=drive)
            driver.start()
            assert first_writes_done.wait(60)
            proxy.cut()  # PostgreSQL "restarts": live connections die, new ones are refused
            time.sleep(2.5)
            proxy.restore()
            driver.join(timeout=180)
            assert not driver.is_alive()
    finally:
        proxy.close()

    assert not bad, bad
    assert all(codes[-1] == 201 for codes in outcomes.values()), outcomes
    assert unavailable, "the outage was not observed by any request"
    for response in unavailable:
        assert response.json()["code"] == "database_unavailable"
        assert int(response.headers["Retry-After"]) > 0
    labels = sorted(ModelVersion.objects.filter(model__name="scorer").values_list("label", flat=True))
    assert labels == sorted(f"1.{index}.0" for index in range(VERSIONS))
    entries = LedgerEntry.objects.filter(action="model_version.registered")
    assert entries.count() == VERSIONS, "each accepted write has exactly one ledger entry"
    assert IdempotencyRecord.objects.filter(response_status=0).count() == 0, "no half-written idempotency claim"
    result = verify_ledger()
    assert result.ok, result.problems
