"""Page render times on the real PostgreSQL with 10,000 models and 1,000,000 ledger entries.

Each page is rendered server-side through Django's test client (middleware, session, queries,
template) by a signed-in user of the role that uses it; we report the 95th percentile. Anchors,
measured in the same run on the same data: the Django admin page a reviewer would otherwise use
(the admin changelist counts every row, which is what the keyset-paginated ledger explorer
avoids), and for the ledger entry page the bare JSON inclusion-proof API.

    python -m bench.bench_pages [--quick]
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any

from bench.common import django_setup, recreate_database

BENCH_DB = "governance_bench_pages"
GOAL_MS = 100.0


def _load(*, models: int, entries: int, log: Any) -> dict[str, Any]:
    """Teams, people, `models` models with versions, requests, decisions, deployments; ledger filled to `entries`."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType
    from django.db import transaction
    from django.utils import timezone
    from guardian.models import GroupObjectPermission

    from audit import ledger
    from audit.models import LedgerEntry
    from audit.services import ledger_verify_and_record
    from core.actor import acting_as
    from governance.models import (
        ApprovalDecision,
        ApprovalRequest,
        Deployment,
        ModelVersion,
        RegisteredModel,
        RequestStatus,
        VersionStatus,
    )
    from governance.registry.services.access import approver_scope_grant
    from governance.registry.services.approvals import approval_policy_set
    from governance.registry.services.deployments import environment_create
    from governance.registry.services.registry import team_create

    seed = "system:bench"
    started = time.perf_counter()
    users = get_user_model().objects

    def person(username: str, *roles: str, groups: tuple[Any, ...] = ()) -> Any:
        user = users.create_user(username=username, password="bench-pass-123456", is_staff=True)
        with acting_as(seed):
            for role in roles:
                user.groups.add(Group.objects.get(name=role))
            for group in groups:
                user.groups.add(group)
        return users.get(pk=user.pk)

    team_count = max(1, models // 100)
    teams = [team_create(by=seed, name=f"team-{index:03d}") for index in range(team_count)]
    scientist = person("dana", "data_scientist", groups=(teams[0].group,))
    # Each team's versions are registered, submitted and deployed by that team's own member.
    members = [scientist] + [person(f"member-{index:03d}", "data_scientist", groups=(teams[index].group,))
                             for index in range(1, team_count)]
    approver = person("alice", "approver")
    approver_scope_grant(by=seed, to=approver, risk_tier="high")
    approver = users.get(pk=approver.pk)
    auditor = person("audrey", "auditor")
    approval_policy_set(by=seed, risk_tier="high", quorum=2, expiry_hours=72)
    staging = environment_create(by=seed, name="staging", is_production=False)
    production = environment_create(by=seed, name="production", is_production=True)
    policy_snapshot = {"policy_id": 1, "scope": "tier:high", "quorum": 2, "required_roles": [],
                       "fairness_audit_max_age_days": None, "required_card_fields": [], "expiry_hours": 72}

    member_of = {team.pk: member for team, member in zip(teams, members, strict=True)}
    now = timezone.now()
    tiers = ["minimal", "limited", "high"]
    view = Permission.objects.get(content_type__app_label="governance", codename="view_registeredmodel")
    model_type = ContentType.objects.get_for_model(RegisteredModel)
    batch = 1000
    for start in range(0, models, batch):
        with transaction.atomic(), acting_as(seed):
            rows = RegisteredModel.objects.bulk_create([
                RegisteredModel(name=f"model-{index:05d}", team=teams[index % team_count],
                                risk_tier=tiers[index % 3], description=f"Bench model {index}",
                                created_by=member_of[teams[index % team_count].pk])
                for index in range(start, min(models, start + batch))])
            GroupObjectPermission.objects.bulk_create([
                GroupObjectPermission(permission=view, group=teams[index % team_count].group,
                                      content_type=model_type, object_pk=str(row.pk))
                for index, row in zip(range(start, start + len(rows)), rows, strict=True)])
            versions = ModelVersion.objects.bulk_create([
                ModelVersion(model=row, label=f"1.{minor}.0", artifact_uri=f"s3://bench/{row.name}/1.{minor}.0/",
                             manifest={"model.pkl": "ab" * 32}, manifest_digest="cd" * 32, framework="sklearn",
                             intended_use="bench", limitations="bench", evaluation_data="bench",
                             ethical_considerations="bench",
                             status=VersionStatus.APPROVED if minor == 0 else VersionStatus.PENDING_REVIEW,
                             created_by=member_of[row.team_id])
                for row in rows for minor in (0, 1)])
            requests = ApprovalRequest.objects.bulk_create([
                ApprovalRequest(version=version, submitted_by=member_of[version.model.team_id],
                                submitted_at=now - timedelta(seconds=version.pk), comment="bench",
                                status=RequestStatus.APPROVED if version.status == VersionStatus.APPROVED
                                else RequestStatus.PENDING,
                                policy_snapshot=policy_snapshot,
                                expires_at=now - timedelta(seconds=version.pk) + timedelta(hours=72),
                                closed_at=now if version.status == VersionStatus.APPROVED else None)
                for version in versions])
            ApprovalDecision.objects.bulk_create([
                ApprovalDecision(request=request, approver=approver if index % 2 else auditor, decision="approve",
                                 comment="bench decision", approver_roles=["approver"], decided_at=now)
                for request in requests if request.status == RequestStatus.APPROVED for index in (0, 1)])
            Deployment.objects.bulk_create([
                Deployment(model=version.model, version=version, environment=staging if index % 3 else production,
                           deployed_by=member_of[version.model.team_id], deployed_at=now, is_active=True)
                for index, version in enumerate(versions) if version.status == VersionStatus.APPROVED])
    log(f"  {models} models with versions, requests, decisions, deployments: {time.perf_counter() - started:.0f} s")

    actors = [f"user:person{index}" for index in range(50)] + ["system:nightly", "service:pipeline"]
    actions = ["model_version.registered", "dataset.version_registered", "training_run.recorded",
               "deployment.recorded", "approval_request.submitted", "fairness_audit.completed"]
    chunk = 10_000
    remaining = entries - LedgerEntry.objects.count()
    counter = 0
    while remaining > 0:
        size = min(chunk, remaining)
        drafts = [ledger.draft(actor=actors[(counter + i) % len(actors)], action=actions[(counter + i) % len(actions)],
                               subject=("bench.thing", str((counter + i) % 200_000)),
                               payload={"index": counter + i, "note": "bench filler"})
                  for i in range(size)]
        with transaction.atomic():
            ledger.ledger_append_many(drafts, checkpoint=False)
        counter += size
        remaining -= size
    ledger.checkpoint_create()
    ledger_verify_and_record(actor="system:bench", check_state=False)
    ledger.checkpoint_create()
    log(f"  ledger filled to {LedgerEntry.objects.count()} entries: {time.perf_counter() - started:.0f} s")
    return {"scientist": scientist, "approver": approver, "auditor": auditor}


def _p95(samples: list[float]) -> float:
    samples = sorted(samples)
    return samples[max(0, int(round(0.95 * len(samples))) - 1)]


def _p95_ms(client: Any, url: str, *, runs: int) -> tuple[float, float]:
    """(wall-clock p95, this process's CPU-time p95) of rendering `url`, in ms.

    The CPU time leaves out PostgreSQL's own work and time spent waiting for a core, so on a
    loaded machine it shows what the page itself costs.
    """
    for _ in range(2):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        assert response.status_code == 200, url
    return _p95(wall), _p95(cpu)


def run(quick: bool = False) -> list[dict]:
    models, entries, runs = (1_000, 100_000, 20) if quick else (10_000, 1_000_000, 60)
    # BENCH_PAGES_REUSE=1 measures again on the database a previous run loaded (same sizes).
    reuse = os.environ.get("BENCH_PAGES_REUSE") == "1"
    key_dir = os.environ.get("BENCH_PAGES_KEY_DIR") or tempfile.mkdtemp(prefix="bench-pages-keys-")
    if not reuse:
        recreate_database(BENCH_DB)
    django_setup(BENCH_DB, key_dir)
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if reuse:
        from django.contrib.auth import get_user_model

        users = get_user_model().objects
        people = {"scientist": users.get(username="dana"), "approver": users.get(username="alice"),
                  "auditor": users.get(username="audrey")}
    else:
        call_command("migrate", verbosity=0)
        call_command("signing_key", "ensure", verbosity=0)
        people = _load(models=models, entries=entries, log=log)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    setup_test_environment()

    from audit.models import LedgerEntry
    from governance.models import RegisteredModel

    clients = {}
    for role, user in people.items():
        client = Client()
        client.force_login(user)
        clients[role] = client
    model = RegisteredModel.objects.order_by("pk")[models // 2]
    tree_size = LedgerEntry.objects.count()
    rng = random.Random(7)
    seq = rng.randrange(tree_size // 2)
    middle = tree_size // 2
    day = LedgerEntry.objects.filter(seq=middle).values_list("recorded_at", flat=True).get()
    since, until = (day - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S"), day.strftime("%Y-%m-%dT%H:%M:%S")

    pages = [
        ("dashboard, approver", "approver", "/", "admin index", "/admin/"),
        ("dashboard, auditor", "auditor", "/", "admin index", "/admin/"),
        ("dashboard, data scientist", "scientist", "/", "admin index", "/admin/"),
        ("models list, auditor (all models)", "auditor", "/models/",
         "admin model changelist", "/admin/governance/registeredmodel/"),
        ("models list, auditor, page 100", "auditor", "/models/?page=100" if models >= 5000 else "/models/?page=10",
         "admin model changelist", "/admin/governance/registeredmodel/"),
        ("models list, data scientist (team's models)", "scientist", "/models/",
         "admin model changelist", "/admin/governance/registeredmodel/"),
        ("models search, auditor", "auditor", "/models/?q=model-0421",
         "admin model changelist search", "/admin/governance/registeredmodel/?q=model-0421"),
        ("model page, auditor", "auditor", f"/models/{model.name}/",
         "admin model change page", f"/admin/governance/registeredmodel/{model.pk}/change/"),
        ("ledger explorer, newest", "auditor", "/ledger/", "admin ledger changelist", "/admin/audit/ledgerentry/"),
        ("ledger explorer, older page (keyset)", "auditor", f"/ledger/?before={middle}",
         "admin ledger changelist, page 100", "/admin/audit/ledgerentry/?p=100"),
        ("ledger explorer, by actor", "auditor", "/ledger/?actor=user:person7",
         "admin ledger changelist search", "/admin/audit/ledgerentry/?q=user:person7"),
        ("ledger explorer, action prefix", "auditor", "/ledger/?action=deployment.",
         "admin ledger changelist filter", "/admin/audit/ledgerentry/?action=deployment.recorded"),
        ("ledger explorer, by subject", "auditor", "/ledger/?subject_type=bench.thing&subject_id=4242",
         "admin ledger changelist search", "/admin/audit/ledgerentry/?q=4242"),
        ("ledger explorer, time range", "auditor", f"/ledger/?since={since}&until={until}",
         "admin ledger changelist", "/admin/audit/ledgerentry/"),
        ("ledger entry with proof and checkpoint", "auditor", f"/ledger/{seq}/",
         "JSON inclusion-proof API", f"/api/ledger/entries/{seq}/proof/"),
    ]
    rows = []
    for what, role, url, anchor_name, anchor_url in pages:
        client = clients[role]
        ours, ours_cpu = _p95_ms(client, url, runs=runs)
        anchor, anchor_cpu = _p95_ms(clients["auditor"], anchor_url, runs=max(5, runs // 4))
        rows.append({"what": f"{what}: p95 render ({models:,} models, {tree_size:,} entries)", "ours": round(ours, 1),
                     "anchor": round(anchor, 1), "anchor_name": anchor_name, "unit": "ms",
                     "goal": f"<= {GOAL_MS:.0f} ms", "ours_cpu_ms": round(ours_cpu, 1),
                     "anchor_cpu_ms": round(anchor_cpu, 1), "load_average": round(os.getloadavg()[0], 1)})
        log(f"  {what}: {ours:.1f} ms, CPU {ours_cpu:.1f} ms (anchor {anchor_name}: {anchor:.1f} ms, "
            f"CPU {anchor_cpu:.1f} ms; load {os.getloadavg()[0]:.1f})")
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
