"""Load test of the service as it runs in production, bounded and loopback only; it stops by itself.

    python bench/load/run_load.py [--duration-s 180] [--users 16] [--web-workers 3] [--json FILE]

It creates its own PostgreSQL database (`governance_load`, dropped and recreated each run) and its
own redis-server on a free loopback port, starts gunicorn, a Celery worker and beat, then drives a
mixed pipeline load from this process with asyncio + httpx (register versions, post OpenLineage
events, request approvals, read the ledger, fetch inclusion proofs). It reports requests/s,
p50/p95/p99 per endpoint and the error rate; afterwards it runs `verify_ledger` and counts that
every accepted write is in the ledger exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
DATABASE = "governance_load"
MODELS = 8

SETUP = r"""
import json
from django.contrib.auth import get_user_model
from governance.models import RegisteredModel
root = get_user_model().objects.create(username="load-admin", is_superuser=True, is_staff=True)
team = team_create(by="system:load", name="load-team")
models = [model_register(by=root, name=f"load-model-{i}", team=team, risk_tier="minimal") for i in range(MODELS)]
approval_policy_set(by="system:load", risk_tier="minimal", quorum=1, required_roles=[], required_card_fields=[],
                             expiry_hours=48)
_, pipeline = service_account_create(by="system:load", name="load-pipeline", role="data_scientist", models=models)
_, auditor = service_account_create(by="system:load", name="load-auditor", role="auditor", scope="read")
print("TOKENS " + json.dumps({"pipeline": pipeline, "auditor": auditor}))
""".replace("MODELS", str(MODELS))

COUNT = r"""
import json, sys
from collections import Counter
from audit.models import LedgerEntry
from governance.models import ApprovalRequest, ModelVersion
from lineage.models import OpenLineageEvent
accepted = json.load(open(sys.argv[-1]))
def per_subject(action, subject_type, ids):
    counts = Counter(LedgerEntry.objects.filter(action=action, subject_type=subject_type)
                     .values_list("subject_id", flat=True))
    return {"rows": len(ids), "entries": sum(counts.values()),
            "exactly_once": sum(1 for pk in ids if counts.get(str(pk)) == 1),
            "orphans": sum(1 for key in counts if int(key) not in set(ids))}
versions = {(m, l): pk for pk, m, l in ModelVersion.objects.values_list("pk", "model__name", "label")}
accepted_versions = [versions.get(tuple(item)) for item in accepted["versions"]]
events = list(OpenLineageEvent.objects.values_list("pk", flat=True))
requests = list(ApprovalRequest.objects.values_list("pk", flat=True))
print("COUNTS " + json.dumps({
    "versions": {"accepted": len(accepted["versions"]), "missing": accepted_versions.count(None),
                 **per_subject("model_version.registered", "governance.modelversion", list(versions.values()))},
    "openlineage_events": {"accepted": accepted["events"],
                           **per_subject("lineage.openlineage.event_ingested", "lineage.openlineageevent", events)},
    "approval_requests": {"accepted": len(accepted["requests"]),
                          "missing": len(set(accepted["requests"]) - set(requests)),
                          **per_subject("approval_request.submitted", "governance.approvalrequest", requests)},
    "ledger_entries": LedgerEntry.objects.count(),
}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg(*args: str) -> None:
    subprocess.run([*args, "-h", PG["host"], "-p", str(PG["port"]), "-U", PG["user"]], check=True,
                   stdout=subprocess.DEVNULL, timeout=120)


def manage(env: dict[str, str], *args: str, capture: bool = False) -> str:
    completed = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, text=True, timeout=900,
                               capture_output=capture)
    if completed.returncode not in (0, 1) or (capture and "Traceback" in (completed.stderr or "")):
        raise RuntimeError(f"manage.py {args[0]} failed: {(completed.stderr or '')[-2000:]}")
    return completed.stdout if capture else ""


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


class Stats:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.errors: dict[str, int] = defaultdict(int)
        self.accepted: dict[str, Any] = {"versions": [], "events": 0, "requests": []}
        self.error_samples: list[str] = []

    def record(self, name: str, started: float, response: httpx.Response | None) -> None:
        self.latencies[name].append(time.perf_counter() - started)
        if response is None:
            self.errors[name] += 1
            self.statuses[name][0] += 1
            return
        self.statuses[name][response.status_code] += 1
        if response.status_code >= 500 or response.status_code in (401, 403):
            self.errors[name] += 1
            if len(self.error_samples) < 10:
                self.error_samples.append(f"{name} {response.status_code} {response.text[:200]}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def openlineage_event(user: int, index: int) -> dict[str, Any]:
    return {"eventType": "COMPLETE", "eventTime": datetime.now(UTC).isoformat(),
            "run": {"runId": str(uuid.uuid4()), "facets": {}},
            "job": {"namespace": "load", "name": f"features-{user}", "facets": {}},
            "inputs": [{"namespace": "s3://load", "name": f"raw-{user % 4}"}],
            "outputs": [{"namespace": "s3://load", "name": f"features-{user}-{index % 50}",
                         "facets": {"schema": {"fields": [{"name": "x", "type": "double"}]}}}],
            "producer": "https://example.org/load", "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json"}


async def virtual_user(user: int, base: str, tokens: dict[str, str], stats: Stats, stop_at: float,
                       proof_size: list[int]) -> None:
    rng = random.Random(user)
    pipeline = httpx.AsyncClient(base_url=base, timeout=30, headers={"Authorization": f"Bearer {tokens['pipeline']}"})
    auditor = httpx.AsyncClient(base_url=base, timeout=30, headers={"Authorization": f"Bearer {tokens['auditor']}"})
    drafts: list[tuple[str, str]] = []
    index = 0
    async with pipeline, auditor:
        while time.monotonic() < stop_at:
            index += 1
            choice = rng.random()
            started = time.perf_counter()
            response: httpx.Response | None = None
            try:
                if choice < 0.25:
                    name, model, label = "register_version", f"load-model-{rng.randrange(MODELS)}", f"{user}.{index}.0"
                    response = await pipeline.post(f"/api/models/{model}/versions/", json={
                        "label": label, "artifact_uri": f"s3://load/{model}/{label}/",
                        "manifest": {"model.bin": f"{user:032x}{index:032x}"}, "intended_use": "load test"},
                        headers={"Idempotency-Key": f"v-{user}-{index}"})
                    if response.status_code == 201:
                        stats.accepted["versions"].append([model, label])
                        drafts.append((model, label))
                elif choice < 0.45:
                    name = "openlineage_event"
                    response = await pipeline.post("/api/v1/lineage", json=openlineage_event(user, index))
                    if response.status_code == 201:
                        stats.accepted["events"] += 1
                elif choice < 0.55 and drafts:
                    name = "request_approval"
                    model, label = drafts.pop()
                    response = await pipeline.post(f"/api/models/{model}/versions/{label}/approval-requests/",
                                                   json={"comment": "load"}, headers={"Idempotency-Key": f"a-{user}-{index}"})
                    if response.status_code == 201:
                        stats.accepted["requests"].append(response.json()["id"])
                elif choice < 0.80:
                    name = "read_ledger"
                    response = await auditor.get("/api/ledger/entries/", params={"page_size": 20})
                else:
                    name = "fetch_proof"
                    if proof_size[0] < 1:
                        response = await auditor.get("/api/ledger/checkpoint/")
                        name = "read_checkpoint"
                    else:
                        response = await auditor.get(f"/api/ledger/entries/{rng.randrange(proof_size[0])}/proof/")
            except httpx.HTTPError:
                response = None
            stats.record(name, started, response)


async def checkpoint_watcher(base: str, token: str, stop_at: float, proof_size: list[int]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
        while time.monotonic() < stop_at:
            with contextlib.suppress(httpx.HTTPError, ValueError, IndexError):
                response = await client.get("/api/ledger/checkpoint/")
                if response.status_code == 200:
                    proof_size[0] = int(response.text.splitlines()[1])
            await asyncio.sleep(2)


async def drive(base: str, tokens: dict[str, str], users: int, duration_s: float) -> tuple[Stats, float]:
    stats = Stats()
    stop_at = time.monotonic() + duration_s
    proof_size = [0]
    started = time.perf_counter()
    await asyncio.gather(checkpoint_watcher(base, tokens["auditor"], stop_at, proof_size),
                         *(virtual_user(user, base, tokens, stats, stop_at, proof_size) for user in range(users)))
    return stats, time.perf_counter() - started


def wait_http(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=2)
            return
        time.sleep(0.2)
    raise TimeoutError(url)


def run(*, duration_s: float, users: int, web_workers: int, celery_concurrency: int = 2,
        logs_dir: str = "") -> dict[str, Any]:
    """Run the whole load test and return its figures (see `main` for the printed table)."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is needed")
    with tempfile.TemporaryDirectory(prefix="governance-load-") as folder:
        work = Path(folder)
        redis_port, web_port = free_port(), free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no"], stdout=subprocess.DEVNULL, start_new_session=True)
        database_url = f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{DATABASE}"
        broker = f"redis://127.0.0.1:{redis_port}/0"
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": broker, "CELERY_BROKER_URL": broker,
               "VAR_DIR": str(work / "var"), "MEDIA_ROOT": str(work / "media"), "SECURE_COOKIES": "false",
               "LEDGER_SIGNING_KEY_FILE": str(work / "keys/ledger.key"),
               "ATTESTATION_SIGNING_KEY_FILE": str(work / "keys/attestation.key"),
               "LEDGER_CHECKPOINT_INTERVAL_S": "5", "DB_CONN_MAX_AGE": "60", "LOG_LEVEL": "WARNING",
               "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "governance.settings"}
        processes: list[subprocess.Popen[bytes]] = []
        try:
            pg("dropdb", "--if-exists", DATABASE)
            pg("createdb", DATABASE)
            manage(env, "migrate", "--noinput", "-v", "0")
            manage(env, "signing_key", "ensure")
            tokens = json.loads(manage(env, "shell", "-c", SETUP, capture=True).split("TOKENS ", 1)[1])
            processes.append(start([str(BIN / "gunicorn"), "governance.wsgi:application", "--bind", f"127.0.0.1:{web_port}",
                                    "--workers", str(web_workers), "--timeout", "60", "--log-level", "warning"],
                                   env, work / "gunicorn.log"))
            processes.append(start([str(BIN / "celery"), "-A", "governance", "worker", "--loglevel", "WARNING",
                                    "--concurrency", str(celery_concurrency), "--hostname", "load@%h"], env, work / "worker.log"))
            processes.append(start([str(BIN / "celery"), "-A", "governance", "beat", "--loglevel", "WARNING",
                                    "--scheduler", "celery.beat:PersistentScheduler", "-s", str(work / "beat-schedule")],
                                   env, work / "beat.log"))
            base = f"http://127.0.0.1:{web_port}"
            wait_http(f"{base}/admin/login/")
            stats, elapsed_s = asyncio.run(drive(base, tokens, users, duration_s))
        finally:
            for process in reversed(processes):
                stop(process)
            redis.kill()
            redis.wait(timeout=10)
        if logs_dir:
            Path(logs_dir).mkdir(parents=True, exist_ok=True)
            for log in work.glob("*.log"):
                shutil.copy(log, Path(logs_dir) / log.name)
        accepted_file = work / "accepted.json"
        accepted_file.write_text(json.dumps(stats.accepted))
        verify = json.loads(manage(env, "verify_ledger", "--json", capture=True) or "{}")
        counts = json.loads(manage(env, "shell", "-c", COUNT.replace("sys.argv[-1]", repr(str(accepted_file))),
                                   capture=True).split("COUNTS ", 1)[1])
    endpoints = {}
    total = sum(len(values) for values in stats.latencies.values())
    for name, values in sorted(stats.latencies.items()):
        endpoints[name] = {"requests": len(values), "rps": len(values) / elapsed_s,
                           "p50_ms": 1000 * percentile(values, 0.50), "p95_ms": 1000 * percentile(values, 0.95),
                           "p99_ms": 1000 * percentile(values, 0.99), "errors": stats.errors.get(name, 0),
                           "statuses": dict(stats.statuses[name])}
    return {"duration_s": elapsed_s, "users": users, "web_workers": web_workers, "requests": total,
            "rps": total / elapsed_s, "error_rate": sum(stats.errors.values()) / max(total, 1),
            "endpoints": endpoints, "error_samples": stats.error_samples,
            "verify_ok": bool(verify.get("ok")), "verify_entries": verify.get("tree_size"),
            "counts": counts}


def exactly_once(counts: dict[str, Any]) -> bool:
    """Every accepted write has one ledger entry, and no entry lacks its row."""
    for key in ("versions", "openlineage_events", "approval_requests"):
        item = counts[key]
        if item.get("missing") or item["orphans"] or item["exactly_once"] != item["rows"] or item["entries"] != item["rows"]:
            return False
    return (counts["openlineage_events"]["rows"] == counts["openlineage_events"]["accepted"]
            and counts["approval_requests"]["rows"] == counts["approval_requests"]["accepted"])


def print_report(result: dict[str, Any]) -> None:
    print(f"\n{result['requests']} requests in {result['duration_s']:.0f} s from {result['users']} users "
          f"against {result['web_workers']} gunicorn workers: {result['rps']:.1f} req/s, "
          f"error rate {100 * result['error_rate']:.2f} %")
    print(f"{'endpoint':20} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}  statuses")
    for name, row in result["endpoints"].items():
        print(f"{name:20} {row['requests']:>9} {row['rps']:>8.1f} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} "
              f"{row['p99_ms']:>8.1f} {row['errors']:>7}  {row['statuses']}")
    for sample in result["error_samples"]:
        print(f"  error: {sample}")
    print(f"verify_ledger: {'OK' if result['verify_ok'] else 'FAILED'} ({result['verify_entries']} entries)")
    print(f"accepted writes in the ledger exactly once: {exactly_once(result['counts'])} {json.dumps(result['counts'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=180)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--json", default="")
    parser.add_argument("--logs", default="", help="copy the gunicorn, worker and beat logs to this folder")
    args = parser.parse_args()
    result = run(duration_s=min(args.duration_s, 900), users=min(args.users, 64), web_workers=args.web_workers,
                 logs_dir=args.logs)
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["verify_ok"] and exactly_once(result["counts"]) and result["error_rate"] < 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
