"""MLflow integration benchmarks: webhook receipt to 2xx, and importing 100 models x 10 versions.

Webhook: signed `model_version.created` deliveries (each a new delivery id) POSTed through Django's
test client, so the whole middleware stack, the HMAC check, the dedup insert, the ledger append,
the outbox row and its publish to Redis after commit are inside the time (no network, no gunicorn).
Anchor in the same run: the floor of the same check in plain Python (HMAC-SHA256 and JSON parse of
the same bytes). Redeliveries (dedup answer) are timed too.

Import: `mlflow_connection_reconcile` (what `manage.py mlflow_import` runs) against an in-process fake
MLflow REST server (tests/mlflow_fake.py behind httpx.MockTransport: a real server would measure
MLflow, not us; the integration test covers the real one). Each version has 3 small artifacts.
Anchor in the same run: reading the same registry through the same client and hashing every
artifact, with no writes. Memory: resident set size after 10 and after all models.

    python -m bench.bench_mlflow [--quick]
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
import uuid

from bench.common import django_setup, recreate_database

BENCH_DB = "governance_bench_mlflow" + os.environ.get("BENCH_DB_SUFFIX", "")
SECRET = "bench-secret"  # noqa: S105
QUEUE = "bench-mlflow"


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _setup_connection():  # type: ignore[no-untyped-def]
    from governance.integrations.mlflow.services.connections import mlflow_connection_create
    from governance.registry.services.deployments import environment_create
    from governance.registry.services.registry import team_create

    team = team_create(by="system:bench", name="bench-team")
    environment_create(by="system:bench", name="production", is_production=True)
    return mlflow_connection_create(by="system:bench", name="bench", team=team, tracking_uri="http://mlflow.test",
                                    webhook_secret_env="MLFLOW_CRED_BENCH_SECRET",
                                    alias_map={"champion": "production"})


def _webhook(deliveries: int) -> list[dict]:
    import hashlib
    import hmac
    import json

    from django.test import Client

    from governance.fairness.notifications import sign

    client = Client()
    bodies = []
    for index in range(deliveries):
        body = json.dumps({"entity": "model_version", "action": "created", "timestamp": "2026-12-06T10:26:34+00:00",
                           "data": {"name": f"model-{index % 50}", "version": str(index), "source": "models:/m-x",
                                    "run_id": None, "tags": {}, "description": None}}).encode()
        delivery_id, timestamp = str(uuid.uuid4()), str(int(time.time()))
        headers = {"HTTP_X_MLFLOW_DELIVERY_ID": delivery_id, "HTTP_X_MLFLOW_TIMESTAMP": timestamp,
                   "HTTP_X_MLFLOW_SIGNATURE": sign(SECRET, delivery_id=delivery_id, timestamp=timestamp, body=body)}
        bodies.append((body, headers))

    def post(body: bytes, headers: dict[str, str]) -> int:
        return client.generic("POST", "/api/integrations/mlflow/webhook", data=body, content_type="application/json",
                              **headers).status_code

    for body, headers in bodies[:20]:  # warm up (first-request imports), not timed
        assert post(body, headers) == 202
    fresh, dup, floor = [], [], []
    for body, headers in bodies[20:]:
        began = time.perf_counter()
        status = post(body, headers)
        fresh.append((time.perf_counter() - began) * 1000)
        assert status == 202, status
        began = time.perf_counter()
        assert post(body, headers) == 200
        dup.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        message = f"{headers['HTTP_X_MLFLOW_DELIVERY_ID']}.{headers['HTTP_X_MLFLOW_TIMESTAMP']}.".encode() + body
        hmac.compare_digest(hmac.new(SECRET.encode(), message, hashlib.sha256).digest(), b"x" * 32)
        json.loads(body)
        floor.append((time.perf_counter() - began) * 1000)

    def p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=20)[18]

    anchor = p95(floor)
    n = len(fresh)
    return [
        {"what": f"webhook receipt to 2xx, p95 ({n} new deliveries)", "ours": round(p95(fresh), 2),
         "anchor": round(anchor, 4), "anchor_name": "HMAC + JSON parse only", "unit": "ms", "goal": "p95 <= 50 ms"},
        {"what": f"webhook receipt to 2xx, p50 ({n} new deliveries)", "ours": round(statistics.median(fresh), 2),
         "anchor": round(statistics.median(floor), 4), "anchor_name": "HMAC + JSON parse only", "unit": "ms",
         "goal": ""},
        {"what": f"webhook redelivery (dedup) to 200, p95 ({n})", "ours": round(p95(dup), 2),
         "anchor": round(anchor, 4), "anchor_name": "HMAC + JSON parse only", "unit": "ms", "goal": "p95 <= 50 ms"},
    ]


def _import(models: int, versions: int) -> list[dict]:
    from governance.integrations.mlflow.services.reconcile import fetch_model, mlflow_connection_reconcile
    from governance.models import ModelVersion
    from tests.mlflow_fake import FakeMlflow

    connection = _setup_connection_cached()
    fake = FakeMlflow()
    for model in range(models):
        for version in range(versions):
            fake.add_version(f"bench-model-{model:03d}", {
                "MLmodel": f"flavors: {{}}  # {model}.{version}\n".encode(),
                "model.pkl": os.urandom(2048), "requirements.txt": b"scikit-learn==1.9.1\n"},
                run_id=f"{model:016x}{version:016x}")
    # Anchor: read and hash everything through the same client, no writes.
    with fake.client() as client:
        began = time.perf_counter()
        for name in sorted(fake.models):
            fetch_model(client, name, known=set())
        anchor_s = time.perf_counter() - began
    rss: dict[int, float] = {}

    def progress(index: int, total: int, result) -> None:  # type: ignore[no-untyped-def]
        assert not result.errors, result.errors
        if index in (10, total):
            rss[index] = _rss_mb()

    with fake.client() as client:
        began = time.perf_counter()
        mlflow_connection_reconcile(connection=connection, client=client, progress=progress)
        ours_s = time.perf_counter() - began
        assert ModelVersion.objects.count() == models * versions
        began = time.perf_counter()
        results = mlflow_connection_reconcile(connection=connection, client=client)
        rerun_s = time.perf_counter() - began
        assert not any(result.changes for result in results)
    what = f"mlflow_import {models} models x {versions} versions (fake REST, 3 files each)"
    return [
        {"what": what, "ours": round(ours_s, 2), "anchor": round(anchor_s, 2),
         "anchor_name": "REST read + SHA-256 only", "unit": "s", "goal": "<= 60 s"},
        {"what": f"re-import, nothing changed ({models} models)", "ours": round(rerun_s, 2), "anchor": round(anchor_s, 2),
         "anchor_name": "REST read + SHA-256 only", "unit": "s", "goal": "writes nothing"},
        {"what": f"import RSS after 10 models -> after {models}", "ours": round(rss.get(models, 0.0), 1),
         "anchor": round(rss.get(10, 0.0), 1), "anchor_name": "RSS after 10 models", "unit": "MB",
         "goal": "flat (ratio ~1)"},
    ]


_CONNECTION = None


def _setup_connection_cached():  # type: ignore[no-untyped-def]
    global _CONNECTION
    if _CONNECTION is None:
        _CONNECTION = _setup_connection()
    return _CONNECTION


def run(quick: bool = False) -> list[dict]:
    os.environ["MLFLOW_CRED_BENCH_SECRET"] = SECRET
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/7")
    os.environ["CELERY_TASK_DEFAULT_QUEUE"] = QUEUE  # nobody consumes it; emptied below
    with tempfile.TemporaryDirectory() as key_dir:
        recreate_database(BENCH_DB)
        django_setup(BENCH_DB, key_dir)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("signing_key", "ensure", verbosity=0)
        print(f"load average before: {os.getloadavg()}", file=sys.stderr)
        _setup_connection_cached()
        rows = _webhook(120 if quick else 1020)
        rows += _import(20 if quick else 100, 5 if quick else 10)
        print(f"load average after: {os.getloadavg()}; max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB",
              file=sys.stderr)
        from django.conf import settings
        from django.db import connections

        try:
            import redis

            redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(QUEUE)
        except Exception:  # noqa: BLE001, S110 (best effort: the queue is the bench's own)
            pass
        connections.close_all()
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
