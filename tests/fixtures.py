"""The fixtures every test folder shares: teams, users in roles, models, versions, policies.

One pytest plugin (registered by `tests/conftest.py`), so folders use these fixtures by name and
never import them; helpers (`CARD`, `MANIFEST`, `last_entry`, ...) are imported from here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from audit.models import LedgerEntry
from core.actor import acting_as
from governance.models import Environment, ModelVersion, RegisteredModel, Team
from governance.registry.services.access import approver_scope_grant
from governance.registry.services.approvals import approval_policy_set, model_version_submit
from governance.registry.services.deployments import environment_create
from governance.registry.services.registry import model_register, model_version_register, team_create

SEED = "system:test_setup"
CARD = {
    "intended_use": "Score consumer credit applications for default risk.",
    "limitations": "Not validated for small-business loans.",
    "evaluation_data": "Holdout 2024Q4, 120k applications.",
    "ethical_considerations": "Monitored for disparate impact by age and sex.",
}
MANIFEST = {"model.pkl": "a" * 64, "preprocess/scaler.json": "b" * 64}


@pytest.fixture
def make_user(db) -> Callable[..., Any]:  # type: ignore[no-untyped-def]
    def make(username: str, *roles: str, teams: tuple[Team, ...] = (), staff: bool = True) -> Any:
        user = get_user_model().objects.create_user(username=username, password="test-pass-123456", is_staff=staff)
        with acting_as(SEED):
            for role in roles:
                user.groups.add(Group.objects.get(name=role))
            for team in teams:
                user.groups.add(team.group)
        return get_user_model().objects.get(pk=user.pk)  # fresh: no cached permissions
    return make


@pytest.fixture
def team(db) -> Team:  # type: ignore[no-untyped-def]
    return team_create(by=SEED, name="credit-risk")


@pytest.fixture
def other_team(db) -> Team:  # type: ignore[no-untyped-def]
    return team_create(by=SEED, name="hiring")


@pytest.fixture
def scientist(make_user, team) -> Any:  # type: ignore[no-untyped-def]
    return make_user("dana", "data_scientist", teams=(team,))


@pytest.fixture
def scientist2(make_user, team) -> Any:  # type: ignore[no-untyped-def]
    return make_user("dario", "data_scientist", teams=(team,))


@pytest.fixture
def approver(make_user, team) -> Any:  # type: ignore[no-untyped-def]
    user = make_user("alice", "approver")
    approver_scope_grant(by=SEED, to=user, risk_tier="high")
    return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def approver2(make_user) -> Any:  # type: ignore[no-untyped-def]
    user = make_user("bob", "approver")
    approver_scope_grant(by=SEED, to=user, risk_tier="high")
    return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def risk_officer(make_user) -> Any:  # type: ignore[no-untyped-def]
    return make_user("rita", "risk_officer")


@pytest.fixture
def auditor(make_user) -> Any:  # type: ignore[no-untyped-def]
    return make_user("audrey", "auditor")


@pytest.fixture
def model(scientist, team) -> RegisteredModel:  # type: ignore[no-untyped-def]
    return model_register(by=scientist, name="credit-default-scorer", team=team, risk_tier="high",
                                   description="PD model", intended_purpose="Credit decisions",
                                   affected_groups=["applicants"], contacts=["risk@example.org"])


@pytest.fixture
def policy(model):  # type: ignore[no-untyped-def]
    return approval_policy_set(by=SEED, risk_tier="high", quorum=2, required_roles=["risk_officer"],
                                        required_card_fields=list(CARD), expiry_hours=48)


@pytest.fixture
def make_version(scientist, model) -> Callable[..., ModelVersion]:  # type: ignore[no-untyped-def]
    def make(label: str = "1.0.0", *, by: Any = None, **overrides: Any) -> ModelVersion:
        fields: dict[str, Any] = {"artifact_uri": f"s3://models/cds/{label}/", "manifest": dict(MANIFEST),
                                  "framework": "sklearn", "training_metrics": {"auc": 0.81}, **CARD}
        fields.update(overrides)
        return model_version_register(model=model, by=by or scientist, label=label, **fields)
    return make


@pytest.fixture
def version(make_version) -> ModelVersion:  # type: ignore[no-untyped-def]
    return make_version()


@pytest.fixture
def pending(version, scientist, policy):  # type: ignore[no-untyped-def]
    """A pending request submitted by the scientist (who also registered the version)."""
    return model_version_submit(version=version, by=scientist, comment="please review")


@pytest.fixture
def environments(db) -> dict[str, Environment]:  # type: ignore[no-untyped-def]
    return {
        "staging": environment_create(by=SEED, name="staging", is_production=False),
        "production": environment_create(by=SEED, name="production", is_production=True),
    }


def team_writer(team: Team, username: str = "dana") -> Any:
    """A data scientist of `team`: who registers its models (admins and superusers never do)."""
    user = get_user_model().objects.create_user(username=username, password="test-pass-123456")
    with acting_as(SEED):
        user.groups.add(Group.objects.get(name="data_scientist"), team.group)
    return get_user_model().objects.get(pk=user.pk)


def entries(action: str | None = None, **filters: Any) -> list[LedgerEntry]:
    query = LedgerEntry.objects.order_by("seq")
    if action:
        query = query.filter(action=action)
    return list(query.filter(**filters))


def last_entry(action: str) -> LedgerEntry:
    found = entries(action)
    assert found, f"no ledger entry {action}"
    return found[-1]


@pytest.fixture(autouse=True)
def _fast_password_hashing(request: pytest.FixtureRequest) -> None:
    """Test users only: PBKDF2's deliberate slowness would dominate the suite.

    Integration tests keep the production hashers: their servers run in other processes, which
    must be able to check the passwords these tests set.
    """
    if request.node.get_closest_marker("integration") is None:
        settings = request.getfixturevalue("settings")
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_personal_data_in_the_ledger(request: pytest.FixtureRequest) -> Iterator[None]:
    """Issue 18: after every database test, no ledger entry may hold a value of a column declared as an
    identifier (its stored pseudonym) or a sensitive value only one row holds; the suite fails if one does."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None or request.node.get_closest_marker("integration") is not None:
        yield
        return
    transactional = bool(marker.kwargs.get("transaction") or (marker.args and marker.args[0]))
    request.getfixturevalue("transactional_db" if transactional else "db")
    yield
    from governance.fairness.services.vault import ledger_personal_data_findings

    findings = ledger_personal_data_findings()
    assert not findings, f"personal data in the ledger: {findings}"


@pytest.fixture
def celery_worker_queue(settings, tmp_path: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A real `celery -A governance worker` on a Redis queue of its own, against the test database.

    This process publishes to the same queue for the duration of the test; yields the queue name.
    """
    from tests.conftest import REPO_ROOT
    from tests.faults.helpers import broker_override, service_env, stop, wait_for_log

    redis_url = os.environ["REDIS_URL"]  # given, or started by tests/servers.py
    queue = f"worker-{uuid.uuid4().hex[:8]}"
    media = tmp_path / "media"
    media.mkdir(exist_ok=True)
    settings.MEDIA_ROOT = media
    env = service_env(REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url, CELERY_TASK_DEFAULT_QUEUE=queue,
                      MEDIA_ROOT=str(media), LOG_LEVEL="INFO")
    log_path = tmp_path / "worker.log"
    with broker_override(redis_url, queue=queue), log_path.open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "governance", "worker", "--pool=solo",
                                   "--loglevel=INFO", "-Q", queue, "--without-heartbeat", "--without-gossip",
                                   "--without-mingle"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            wait_for_log(log_path, "ready", worker)
            yield queue
        finally:
            stop(worker, timeout_s=20)



# --- Signed approvals (tests/signatures, tests/integration) -----------------------------------------

def signed_policy(setting: str) -> Any:
    """The high-tier default policy: one approval, the model card, and `signed_approval` = `setting`."""
    return approval_policy_set(by=SEED, risk_tier="high", quorum=1, required_card_fields=list(CARD),
                               expiry_hours=48, signed_approval=setting)


@pytest.fixture
def request_under(version, scientist) -> Callable[[str], Any]:  # type: ignore[no-untyped-def]
    """A pending request of `version` (the high-tier model's) under a policy with the given `signed_approval`."""
    def make(setting: str) -> Any:
        signed_policy(setting)
        return model_version_submit(version=version, by=scientist, comment="please review")
    return make


class _RecordingHandler(BaseHTTPRequestHandler):
    """Answers every POST with 204 and keeps (headers, body) in the server's `received` list."""

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(({k: v for k, v in self.headers.items()}, body))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A real HTTP server on 127.0.0.1 that records the POSTs it receives: (its URL, the list)."""
    server = HTTPServer(("127.0.0.1", 0), _RecordingHandler)
    server.received = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", server.received  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
