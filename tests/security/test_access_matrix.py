"""The access matrix: every object-scoped endpoint and page × every role × (own object, another
team's object, a nonexistent one), each cell asserted against the rule it follows; the governance,
fairness and bundle endpoints are scoped by model visibility, the lineage ones by role permission
and then by the visibility of the team behind each record (governance registers the rules in
lineage.visibility at start-up); list endpoints, graphs and
pages never show another team's model names; separation of duties holds through the API,
the pages and the admin (tests/governance/test_separation_of_duties.py); tokens (revoked, expired,
read-only) are refused and stored hashed.

Each cell names the access decision, and each decision has one exact status:
  OK    200      PASS  got past every access check: the endpoint's own status, listed with it
                       (201, 202, or the service's domain refusal such as 409 for a rollback with
                       nothing to roll back to)
  F     403      N     404 (the object does not exist for this caller)
  U     401      L     302 to the sign-in page
The tokens are restricted to the own team's model, so they are scoped exactly like a member of
that team; lineage records (datasets, runs, keys, attestations) belong to a team and follow the
same visibility.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone

from audit.models import LedgerEntry
from core.actor import acting_as
from governance.fairness.models import SealedFile
from governance.fairness.services.runs import audit_request
from governance.fairness.services.specs import audit_spec_create
from governance.models import RegisteredModel, ServiceToken, TokenScope
from governance.registry.services.access import approver_scope_grant, service_account_create, service_token_revoke
from governance.registry.services.approvals import approval_policy_set, model_version_submit
from governance.registry.services.deployments import deployment_record, environment_create
from governance.registry.services.registry import model_register, model_version_register, team_create
from governance.reports import services as report_services
from lineage.models import Attestation, LineageNode
from lineage.services.datasets import dataset_create as lineage_dataset_create
from lineage.services.runs import training_run_record

pytestmark = pytest.mark.django_db

SEED = "system:access_matrix"
OWN, OTHER, MISSING = "own", "other", "missing"
OBJECTS = (OWN, OTHER, MISSING)
SECRET = "beta-hiring-secret"  # the other team's model: its name must never leak
ROLES = ("anonymous", "viewer", "data_scientist", "approver", "risk_officer", "auditor", "admin",
         "token_read", "token_write")
SEES_EVERY_MODEL = {"risk_officer", "auditor", "admin"}
TOKENS = {"token_read", "token_write"}
CARD = {"intended_use": "u", "limitations": "l", "evaluation_data": "e", "ethical_considerations": "c"}
PREDICTIONS = b"repaid,predicted,sex\n" + b"".join(f"{i % 2},{(i // 2) % 2},{'fm'[i % 3 % 2]}\n".encode()
                                                     for i in range(40))


# --- The world ------------------------------------------------------------------------------------

def _user(username: str, *groups: Group, superuser: bool = False) -> Any:
    user = get_user_model().objects.create(username=username, is_staff=True, is_superuser=superuser)
    with acting_as(SEED):
        for group in groups:
            user.groups.add(group)
    return get_user_model().objects.get(pk=user.pk)


def _role(name: str) -> Group:
    return Group.objects.get(name=name)


def build_world() -> dict[str, Any]:
    team_a = team_create(by=SEED, name="credit-risk")
    team_b = team_create(by=SEED, name="hiring")
    users = {
        "viewer": _user("vera", _role("viewer"), team_a.group),
        "data_scientist": _user("dana", _role("data_scientist"), team_a.group),
        "approver": _user("alice", _role("approver")),
        "risk_officer": _user("rita", _role("risk_officer")),
        "auditor": _user("audrey", _role("auditor")),
        "admin": _user("adam", _role("admin")),
    }
    scientist_b = _user("bert", _role("data_scientist"), team_b.group)
    for tier in ("high", "limited"):
        approval_policy_set(by=SEED, risk_tier=tier, quorum=2, required_roles=[], required_card_fields=[],
                                     expiry_hours=48)
    staging = environment_create(by=SEED, name="staging", is_production=False)
    world: dict[str, Any] = {"users": users, "objects": {}}
    # One run both teams trained their 1.0.0 from: its graph, page and outputs reach both model versions.
    shared_run = training_run_record(job_name="shared-feature-pipeline", actor=SEED)
    world["shared"] = {"run": shared_run.pk, "run_node": shared_run.node_id}
    for key, name, team, tier, owner in ((OWN, "alpha-scorer", team_a, "high", users["data_scientist"]),
                                         (OTHER, SECRET, team_b, "limited", scientist_b)):
        model = model_register(by=owner, name=name, team=team, risk_tier=tier)
        versions = {label: model_version_register(model=model, by=owner, label=label, artifact_uri=f"s3://{name}/{label}/",
                                                           manifest={"m.bin": "a" * 64},
                                                           training_run=shared_run.pk if label == "1.0.0" else None,
                                                           **CARD)
                    for label in ("1.0.0", "2.0.0", "3.0.0")}
        decide = model_version_submit(version=versions["2.0.0"], by=owner)
        withdraw = model_version_submit(version=versions["3.0.0"], by=owner)
        deployment = deployment_record(version=versions["1.0.0"], environment=staging, by=owner)
        with tempfile.TemporaryDirectory(prefix="matrix-") as folder:  # the spec keeps its own copy
            holdout = Path(folder) / "holdout.csv"
            holdout.write_bytes(PREDICTIONS)
            spec = audit_spec_create(by=owner, model=model, version=versions["1.0.0"],
                                     name="holdout", y_true="repaid", y_pred="predicted",
                                     sensitive=["sex"], dataset_path=holdout, min_group_size=1)
        audit = audit_request(spec=spec, by=SEED)  # queued: the task runs only after a commit
        bundle = report_services.bundle_export_request(by=SEED, model_name=name, check_access=False)
        node = LineageNode.objects.get(ref_type="governance.modelversion", ref_id=str(versions["1.0.0"].pk))
        deployment_node = LineageNode.objects.get(ref_type="governance.deployment", ref_id=str(deployment.pk))
        attestation = Attestation.objects.get(subjects__node=node)
        dataset, _ = lineage_dataset_create(namespace="s3://matrix", name=f"{team.name}-holdout", actor=SEED,
                                            owner_team=f"team:{team.name}")
        team_run = training_run_record(job_name=f"{team.name}-train", actor=SEED, owner_team=f"team:{team.name}")
        world["objects"][key] = {"model": name, "decide": decide.pk, "withdraw": withdraw.pk, "deployment": deployment.pk,
                                 "audit": audit.pk, "spec": spec.pk, "bundle": bundle.pk, "node": node.pk,
                                 "dataset": dataset.pk, "version": versions["1.0.0"].pk,
                                 "deployment_node": deployment_node.pk, "attestation": attestation.pk,
                                 "run": team_run.pk, "run_node": team_run.node_id, "uid": uuid.uuid4().hex,
                                 "datafile": SealedFile.objects.get(model=model, kind="dataset").file_id}
    world["objects"][MISSING] = {"model": "no-such-model", "decide": 999_999, "withdraw": 999_998, "deployment": 999_997,
                                 "audit": 999_996, "spec": 999_995, "bundle": 999_994, "node": 999_993,
                                 "dataset": 999_992, "version": 999_991, "deployment_node": 999_990,
                                 "attestation": 999_989, "run": 999_988, "run_node": 999_987,
                                 "uid": uuid.uuid4().hex, "datafile": "f" * 32}
    approver_scope_grant(by=SEED, to=users["approver"], model=RegisteredModel.objects.get(name="alpha-scorer"))
    alpha = RegisteredModel.objects.get(name="alpha-scorer")
    _, read_token = service_account_create(by=SEED, name="pipe-read", role="data_scientist", models=[alpha],
                                                    scope=TokenScope.READ)
    _, write_token = service_account_create(by=SEED, name="pipe-write", role="data_scientist", models=[alpha])
    world["tokens"] = {"token_read": read_token, "token_write": write_token}
    return world


def client_for(world: dict[str, Any], role: str) -> Client:
    client = Client(raise_request_exception=False)
    if role in TOKENS:
        client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {world['tokens'][role]}"
    elif role != "anonymous":
        client.force_login(world["users"][role])
    return client


# --- The rules ------------------------------------------------------------------------------------

def sees(role: str, obj: str) -> bool:
    return obj == OWN or (obj == OTHER and role in SEES_EVERY_MODEL)


def expect_read(role: str, obj: str) -> str:
    if role == "anonymous":
        return "U"
    return "OK" if sees(role, obj) else "N"


def expect_write(role: str, obj: str) -> str:
    """Registering, submitting, withdrawing, deploying, rolling back: team writers, never admins
    (tests/security/test_insiders_admins.py)."""
    if role == "anonymous":
        return "U"
    if role == "token_read":
        return "F"  # a read token is refused before any lookup
    if not sees(role, obj):
        return "N"
    writers = {"data_scientist", "token_write"}
    return "PASS" if role in writers else "F"


def expect_decide(role: str, obj: str) -> str:
    """Approvers in scope and risk officers decide; pipelines and admins never do."""
    if role == "anonymous":
        return "U"
    if role == "token_read":
        return "F"
    if not sees(role, obj):
        return "N"
    return "PASS" if role in {"approver", "risk_officer"} else "F"


def expect_export(role: str, obj: str) -> str:
    """Auditors and admins export bundles; the export right is checked before the model is looked up."""
    if role == "anonymous":
        return "U"
    if role not in {"auditor", "admin"}:
        return "F"
    return "PASS" if sees(role, obj) else "N"


def expect_page(role: str, obj: str) -> str:
    if role == "anonymous" or role in TOKENS:  # pages use sessions; a bearer token signs no one in
        return "L"
    return "OK" if sees(role, obj) else "N"


# Fairness (governance/fairness/services/): running an audit and defining a spec are role
# capabilities on top of seeing the model; uploading production predictions is a model write.
RUNS_AUDITS = {"data_scientist", "risk_officer", "auditor", "admin", "token_write"}
DEFINES_SPECS = {"data_scientist", "risk_officer", "admin", "token_write"}


def _fairness_write(role: str, obj: str, allowed: set[str]) -> str:
    if role == "anonymous":
        return "U"
    if role == "token_read":
        return "F"  # a read token is refused before any lookup
    if not sees(role, obj):
        return "N"  # the spec (or model) of an invisible model does not exist for the caller
    return "PASS" if role in allowed else "F"


def expect_audit_run(role: str, obj: str) -> str:
    """Data scientists, risk officers, auditors and admins who see the model run its audits."""
    return _fairness_write(role, obj, RUNS_AUDITS)


def expect_spec_define(role: str, obj: str) -> str:
    """Data scientists, risk officers and admins who see the model define audits; auditors only run them."""
    return _fairness_write(role, obj, DEFINES_SPECS)


# Sealed data files (issue 18, governance/fairness/services/vault.py): retention and erasure are a
# risk officer's decisions (everyone else who sees the file: 403 data_officer_required); a download
# needs a purpose: an auditor or risk officer, or the owner of the spec that stored it (the data
# scientist of the own team); never a token, an admin, an approver or a viewer.
DOWNLOADS_DATA = {"auditor", "risk_officer"}


def expect_data_officer(role: str, obj: str) -> str:
    return _fairness_write(role, obj, {"risk_officer"})


def expect_data_download(role: str, obj: str) -> str:
    if role == "anonymous":
        return "U"
    if not sees(role, obj):
        return "N"
    return "OK" if role in DOWNLOADS_DATA or (role == "data_scientist" and obj == OWN) else "F"


# Bundles (governance/reports/selectors.py): an export is visible to whoever requested it, and to
# holders of the export right (auditors, admins) who see its model. These were requested by the system.
EXPORTERS = {"auditor", "admin"}


def expect_bundle_read(role: str, obj: str) -> str:
    if role == "anonymous":
        return "U"
    return "OK" if role in EXPORTERS and sees(role, obj) else "N"


def expect_bundle_download(role: str, obj: str) -> str:
    """As reading it; a visible export that is still queued is then refused as not ready (409, its granted status)."""
    return "PASS" if expect_bundle_read(role, obj) == "OK" else expect_bundle_read(role, obj)


# Lineage (lineage/api.py, governance/roles.py, lineage/visibility.py, governance/lineage_access.py):
# Django model permissions decide first, checked before any lookup. Data scientists (and their
# pipeline tokens) read and record lineage, auditors only read it, admins hold every lineage
# permission; viewers, approvers and risk officers hold none. Then every lineage record is scoped:
# a node standing for a model version or deployment (and every attestation naming it) by that
# model's visibility, and lineage's own records (datasets, runs, keys, attestations) by their owner
# team, which whoever sees that team's models reads. Another team's record is not found, exactly
# like a nonexistent one. Only the owner team writes: a member (the data scientist) or a write token
# restricted to one of its models; admins belong to no team, so they may read every team's lineage
# but record none (403 lineage_not_owner / lineage_team_required).
READS_LINEAGE = {"data_scientist", "auditor", "admin", "token_read", "token_write"}
WRITES_LINEAGE = {"data_scientist", "admin", "token_write"}  # hold the add permissions
RECORDS_FOR_A_TEAM = {"data_scientist", "token_write"}  # members of (or bound to) team credit-risk


def expect_lineage_read(role: str, obj: str) -> str:
    """Any lineage record of a team (its dataset, run, model-version node, attestation): that team's visibility."""
    if role == "anonymous":
        return "U"
    if role not in READS_LINEAGE:
        return "F"
    return "OK" if sees(role, obj) else "N"


def expect_lineage_write(role: str, obj: str) -> str:
    """Recording under an existing record of a team (a dataset's new version): that team's members only."""
    if role == "anonymous":
        return "U"
    if role not in WRITES_LINEAGE:
        return "F"  # includes the read token, refused by its scope
    if not sees(role, obj):
        return "N"
    return "PASS" if role in RECORDS_FOR_A_TEAM else "F"


def expect_lineage_record(role: str, obj: str) -> str:
    """Recording something new for one's team (a dataset, an OpenLineage run): no existing object is involved."""
    return expect_lineage_write(role, OWN)


def expect_lineage_list(role: str, obj: str) -> str:
    return expect_lineage_read(role, OWN)


def expect_lineage_node_page(role: str, obj: str) -> str:
    if role == "anonymous" or role in TOKENS:
        return "L"
    if role not in READS_LINEAGE - TOKENS:
        return "F"
    return "OK" if sees(role, obj) else "N"


def _openlineage_event(names: dict[str, Any]) -> dict[str, Any]:
    return {"eventType": "COMPLETE", "eventTime": datetime.now(UTC).isoformat(),
            "run": {"runId": str(uuid.UUID(names["uid"])), "facets": {}},
            "job": {"namespace": "matrix", "name": "train", "facets": {}}, "inputs": [], "outputs": [],
            "producer": "https://example.com/matrix",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"}


# (method, path, body, rule, the exact status when the rule lets the caller through: "PASS" cells)
ENDPOINTS: list[tuple[str, str, Any, Any, int]] = [
    ("GET", "/api/models/{model}/", None, expect_read, 200),
    ("GET", "/api/models/{model}/versions/", None, expect_read, 200),
    ("GET", "/api/models/{model}/versions/1.0.0/", None, expect_read, 200),
    ("POST", "/api/models/{model}/versions/", {"label": "9.9.9", "artifact_uri": "s3://x/", "manifest": {"m": "b" * 64}},
     expect_write, 201),
    ("POST", "/api/models/{model}/versions/1.0.0/approval-requests/", {"comment": "please"}, expect_write, 201),
    ("GET", "/api/approval-requests/{decide}/", None, expect_read, 200),
    ("POST", "/api/approval-requests/{decide}/decisions/", {"decision": "approve", "comment": "fine"}, expect_decide,
     201),
    ("POST", "/api/approval-requests/{withdraw}/withdraw/", {"comment": "not yet"}, expect_write, 200),
    ("GET", "/api/deployments/{deployment}/", None, expect_read, 200),
    ("POST", "/api/deployments/", {"model": "{model}", "version": "1.0.0", "environment": "staging"}, expect_write, 201),
    # The only deployment has nothing to roll back to: past every access check, the service refuses it.
    ("POST", "/api/deployments/{deployment}/rollback/", {"comment": "revert"}, expect_write, 409),
    ("POST", "/api/bundles/", {"model": "{model}"}, expect_export, 202),
    ("GET", "/models/{model}/", None, expect_page, 200),
    # Fairness: scoped by the model's visibility.
    ("GET", "/api/fairness/audits/{audit}/", None, expect_read, 200),
    ("GET", "/api/fairness/audits/{audit}/status/", None, expect_read, 200),
    ("POST", "/api/fairness/audits/", {"spec_id": "{spec}"}, expect_audit_run, 202),
    ("POST", "/api/fairness/specs/", {"model": "{model}", "target": "production", "name": "matrix", "y_true": "repaid",
                                      "y_pred": "predicted", "sensitive": ["sex"]}, expect_spec_define, 201),
    ("GET", "/api/models/{model}/prediction-batches/", None, expect_read, 200),
    ("UPLOAD", "/api/models/{model}/prediction-batches/", {"file": PREDICTIONS}, expect_write, 201),
    ("GET", "/api/fairness/trend/?model={model}", None, expect_read, 200),
    # Sealed data files: list one model's, read, download (a purpose), retention, then erasure (last: it shreds the file).
    ("GET", "/api/fairness/data-files/?model={model}", None, expect_read, 200),
    ("GET", "/api/fairness/data-files/{datafile}/", None, expect_read, 200),
    ("GET", "/api/fairness/data-files/{datafile}/download/", None, expect_data_download, 200),
    ("POST", "/api/fairness/data-files/{datafile}/retention/", {"retention_until": "2040-01-01T00:00:00Z",
                                                                "reason": "matrix"}, expect_data_officer, 200),
    ("POST", "/api/fairness/data-files/{datafile}/erasure/", {"request": "matrix"}, expect_data_officer, 200),
    # Bundles: the exports' visibility.
    ("GET", "/api/bundles/{bundle}/", None, expect_bundle_read, 200),
    # A visible export that is still queued is refused as not ready.
    ("GET", "/api/bundles/{bundle}/download/", None, expect_bundle_download, 409),
    # Lineage: role permissions, then the visibility of the team's records (model-version and
    # deployment nodes by their model's, the team's own records by their owner team).
    ("GET", "/api/lineage/nodes/{node}/", None, expect_lineage_read, 200),
    ("GET", "/api/lineage/nodes/{deployment_node}/", None, expect_lineage_read, 200),
    ("GET", "/api/lineage/nodes/{run_node}/", None, expect_lineage_read, 200),
    ("GET", "/api/lineage/graph/?node=node:{node}&direction=both", None, expect_lineage_read, 200),
    ("GET", "/api/lineage/graph/?node=model_version:governance.modelversion:{version}&direction=upstream", None,
     expect_lineage_read, 200),
    ("GET", "/api/lineage/graph/?node=run:{run}&direction=both", None, expect_lineage_read, 200),
    ("GET", "/api/lineage/attestations/{attestation}/", None, expect_lineage_read, 200),
    ("GET", "/api/lineage/runs/{run}/", None, expect_lineage_read, 200),
    ("GET", "/api/lineage/datasets/{dataset}/", None, expect_lineage_read, 200),
    ("GET", "/api/lineage/datasets/{dataset}/versions/", None, expect_lineage_read, 200),
    ("POST", "/api/lineage/datasets/{dataset}/versions/", {"location_uri": "s3://matrix/{uid}/", "digest": "d" * 64,
                                                           "version": "{uid}"}, expect_lineage_write, 201),
    ("GET", "/api/lineage/runs/", None, expect_lineage_list, 200),
    ("GET", "/api/lineage/datasets/", None, expect_lineage_list, 200),
    ("GET", "/api/lineage/attestations/", None, expect_lineage_list, 200),
    ("POST", "/api/lineage/datasets/", {"namespace": "s3://matrix", "name": "new-{uid}"}, expect_lineage_record, 201),
    ("POST", "/api/lineage/runs/", {"job_name": "matrix-{uid}"}, expect_lineage_record, 201),
    ("POST", "/api/v1/lineage", _openlineage_event, expect_lineage_record, 201),
    ("GET", "/lineage/nodes/{node}/", None, expect_lineage_node_page, 200),
    ("GET", "/lineage/nodes/{run_node}/", None, expect_lineage_node_page, 200),
]


OUTCOME_STATUS = {"OK": 200, "U": 401, "F": 403, "N": 404, "L": 302}


def expected_status(rule_outcome: str, granted: int) -> int:
    """The one status a cell must answer: the access decision's, or the endpoint's own once access is granted."""
    return granted if rule_outcome == "PASS" else OUTCOME_STATUS[rule_outcome]


def outcome(status_code: int, location: str = "") -> str:
    if status_code == 302 and "login" in location:
        return "L"
    return {200: "OK", 401: "U", 403: "F", 404: "N"}.get(status_code, str(status_code))


def _normalized(content: bytes, names: dict[str, Any], missing: dict[str, Any]) -> bytes:
    """The body with this object's name and ids replaced by the nonexistent object's (CSRF tokens removed)."""
    content = re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b"", content)
    swaps = {str(value).encode(): str(missing[key]).encode() for key, value in names.items()}
    if not swaps:
        return content
    # Whole tokens only, all at once: id 1 must not rewrite "initial-scale=1" or the digits of another id.
    pattern = re.compile(rb"(?<![\w=.-])(" + b"|".join(re.escape(key) for key in sorted(swaps, key=len, reverse=True))
                         + rb")(?![\w-])")
    return pattern.sub(lambda match: swaps[match.group(1)], content)


def _used(template: str, body: Any) -> set[str]:
    """The names an endpoint's path and body refer to: only those are swapped when comparing bodies."""
    text = template + repr(body)
    found = set(re.findall(r"\{(\w+)\}", text))
    return found | ({"uid"} if callable(body) else set())


def _fill(value: Any, names: dict[str, Any]) -> Any:
    if callable(value):
        return value(names)
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {key: _fill(item, names) for key, item in value.items()}
    return value


@pytest.mark.parametrize("role", ROLES)
def test_access_matrix(role):
    world = build_world()
    client = client_for(world, role)
    wrong: list[str] = []
    for method, template, body, rule, granted in ENDPOINTS:
        seen: dict[str, bytes] = {}
        for obj in (MISSING, OWN, OTHER):
            names = world["objects"][obj]
            path = template.format(**names)
            before = LedgerEntry.objects.count()
            if method == "GET":
                response = client.get(path)
                if response.streaming:  # a data-file download: read it whole here
                    streamed = HttpResponse(b"".join(response.streaming_content), status=response.status_code)
                    response = streamed
            elif method == "UPLOAD":  # multipart, as the prediction-batch endpoint takes it
                response = client.post(path, {"file": SimpleUploadedFile("batch.csv", body["file"], "text/csv")})
            else:
                response = client.post(path, _fill(body, names), content_type="application/json")
            expected = rule(role, obj)
            status = expected_status(expected, granted)
            got = outcome(response.status_code, response.get("Location", ""))
            if response.status_code != status or (status == 302 and got != "L"):
                wrong.append(f"{method} {template} [{obj}]: expected {expected} ({status}), got {response.status_code} "
                             f"{response.content[:160]!r}")
            # A refusal writes nothing but, where a rule refused it, the `<action>.refused` entry
            # (the ledger's seq counts from 0 without gaps, so the count before is the next seq).
            new = LedgerEntry.objects.filter(seq__gte=before).values_list("action", flat=True)
            if response.status_code >= 300 and not all(action.endswith(".refused") for action in new):
                wrong.append(f"{method} {template} [{obj}]: refused ({response.status_code}) but wrote to the ledger")
            used = {key: value for key, value in names.items() if key in _used(template, body)}
            seen[obj] = _normalized(response.content, used, world["objects"][MISSING])
            if obj == OTHER and got == "N" and seen[OTHER] != seen[MISSING]:
                # An invisible object must answer exactly like a nonexistent one: no existence oracle.
                diff = [line for line in difflib.unified_diff(seen[MISSING].decode(errors="replace").splitlines(),
                                                              seen[OTHER].decode(errors="replace").splitlines(),
                                                              lineterm="", n=0) if line[:1] in "+-"]
                wrong.append(f"{method} {template} [other]: its 404 differs from a nonexistent object's: {diff[:6]}")
            if obj == OWN and not sees(role, OTHER) and SECRET.encode() in response.content:
                wrong.append(f"{method} {template} [own]: names the other team's model")
    assert not wrong, f"role {role}:\n" + "\n".join(wrong)


# --- Lists and pages never leak another team's model ----------------------------------------------

LIST_PATHS = ["/api/models/", "/api/approval-requests/", "/api/deployments/", "/api/bundles/",
              "/api/models/?team=hiring", "/api/approval-requests/?model=" + SECRET, "/models/", "/",
              "/api/fairness/audits/", "/api/fairness/audits/?model=" + SECRET, "/api/fairness/specs/",
              "/api/fairness/specs/?model=" + SECRET, "/api/fairness/data-files/", "/api/lineage/datasets/", "/api/lineage/runs/",
              "/api/lineage/attestations/", "/api/lineage/keys/"]
# The shared run both teams' 1.0.0 versions came from: its graph reaches both model versions and deployments.
SHARED_LINEAGE_PATHS = ["/api/lineage/graph/?node=run:{run}&direction=both&depth=5",
                        "/api/lineage/graph/?node=node:{run_node}&direction=downstream&depth=5",
                        "/api/lineage/runs/{run}/", "/lineage/nodes/{run_node}/"]


def expect_list(role: str, path: str) -> str:
    """Lists answer like reading one's own object: pages want a session, lineage lists and pages a lineage permission."""
    if path.startswith("/lineage/"):
        return expect_lineage_node_page(role, OWN)
    if not path.startswith("/api/"):
        return expect_page(role, OWN)
    if path.startswith("/api/lineage/"):
        return expect_lineage_list(role, OWN)
    return expect_read(role, OWN)


@pytest.mark.parametrize("role", [role for role in ROLES if role not in SEES_EVERY_MODEL])
def test_lists_and_pages_never_name_another_teams_model(role):
    world = build_world()
    client = client_for(world, role)
    for path in LIST_PATHS + [template.format(**world["shared"]) for template in SHARED_LINEAGE_PATHS]:
        response = client.get(path)
        expected = expect_list(role, path)
        assert response.status_code == OUTCOME_STATUS[expected], (path, response.status_code)
        assert outcome(response.status_code, response.get("Location", "")) == expected, (path, response)
        assert SECRET.encode() not in response.content, f"{path} leaks {SECRET} to {role}"
    if role != "anonymous":
        own = client.get("/api/models/")
        if own.status_code == 200 and role not in {"auditor"}:
            assert b"alpha-scorer" in own.content, "the own model is listed (the leak check is not vacuous)"
    if role in READS_LINEAGE:
        graph = client.get(SHARED_LINEAGE_PATHS[0].format(**world["shared"]))
        assert b"alpha-scorer" in graph.content, "the shared graph shows the own model (the leak check is not vacuous)"


@pytest.mark.parametrize("role", sorted(SEES_EVERY_MODEL & READS_LINEAGE))
def test_those_who_see_every_model_see_both_teams_in_the_shared_lineage(role):
    world = build_world()
    client = client_for(world, role)
    for template in SHARED_LINEAGE_PATHS:
        response = client.get(template.format(**world["shared"]))
        assert response.status_code == 200, (template, response.status_code)
        assert SECRET.encode() in response.content and b"alpha-scorer" in response.content, template


@pytest.mark.parametrize("role", ROLES)
def test_ledger_is_for_auditors_and_admins_only(role):
    world = build_world()
    client = client_for(world, role)
    expected = {"auditor": 200, "admin": 200, "anonymous": 401}.get(role, 403)
    for path in ("/api/ledger/entries/", "/api/ledger/entries/0/"):
        response = client.get(path)
        assert response.status_code == expected, (path, response.status_code)
    page = client.get("/ledger/")
    if role in ("anonymous", *TOKENS):
        assert page.status_code == 302
    elif role in ("auditor", "admin"):
        assert page.status_code == 200
    else:
        assert page.status_code == 403
        assert SECRET.encode() not in page.content


# --- Tokens ---------------------------------------------------------------------------------------

def test_tokens_are_stored_hashed_and_revoked_or_expired_tokens_are_refused():
    world = build_world()
    token_text = world["tokens"]["token_write"]
    stored = ServiceToken.objects.get(account__name="pipe-write")
    assert token_text not in {stored.prefix, stored.token_hash}
    assert stored.token_hash == hashlib.sha256(token_text.encode()).hexdigest()
    # gov_<hex prefix>_<secret>: the secret itself may hold "_" (URL-safe base64), so split twice only;
    # splitting at the last "_" tested a fragment a few characters long, which a ledger can hold by chance.
    secret = token_text.split("_", 2)[2]
    assert len(secret) >= 40
    for entry in LedgerEntry.objects.filter(subject_type="governance.servicetoken"):
        assert secret not in bytes(entry.canonical).decode(), "the secret is in the ledger"

    client = client_for(world, "token_write")
    assert client.get("/api/models/").status_code == 200
    with acting_as(SEED):
        ServiceToken.objects.filter(pk=stored.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = client.get("/api/models/")
    assert expired.status_code == 401 and expired.json()["code"] == "authentication_failed"
    with acting_as(SEED):
        ServiceToken.objects.filter(pk=stored.pk).update(expires_at=None)
    assert client.get("/api/models/").status_code == 200
    service_token_revoke(token=stored, by=SEED, comment="leaked in a CI log")
    revoked = client.get("/api/models/")
    assert revoked.status_code == 401 and revoked.json()["code"] == "authentication_failed"
    assert LedgerEntry.objects.filter(action="service_token.revoked").exists()


def test_a_guessed_or_malformed_token_is_refused():
    world = build_world()
    real = world["tokens"]["token_write"]
    prefix = real.rsplit("_", 1)[0]
    for fake in (prefix + "_" + "x" * 40, "gov_nope_nope", "Bearer", real + "x", real[:-1]):
        client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {fake}")
        assert client.get("/api/models/").status_code == 401, fake


# --- Sign-in: rate limited, failures recorded in the ledger once per window ------------------------

def test_failed_sign_ins_are_recorded_in_the_ledger_and_rate_limited(settings):
    user = get_user_model().objects.create_user("signer", password="correct-horse-battery", is_staff=True)
    client = Client(raise_request_exception=False)
    before = LedgerEntry.objects.filter(action="auth.sign_in_failed").count()
    statuses = [client.post("/admin/login/", {"username": "signer", "password": "wrong-password"},
                            REMOTE_ADDR="10.9.8.7").status_code for _ in range(12)]
    # Four are answered by the form; the fifth reaches the limit and the rest are refused unchecked.
    assert statuses == [200] * 4 + [429] * 8
    failures = LedgerEntry.objects.filter(action="auth.sign_in_failed").count() - before
    assert failures == 1, "one ledger entry per username and window, not one per failure"
    blocked = client.post("/admin/login/", {"username": "signer", "password": "correct-horse-battery"},
                          REMOTE_ADDR="10.9.8.7")
    assert blocked.status_code == 429 and b"Too many failed sign-ins" in blocked.content, "rate limit did not apply"
    assert "_auth_user_id" not in client.session
    assert user.pk  # the account itself is untouched
