"""Demo lineage for `seed_demo`: German-credit-like data, raw -> cleaned -> training run -> model.

Idempotent: versions are found by digest, the run by its job and commit, the pipeline key by its
keyid; a second run writes nothing. The data is synthetic and deterministic (a seeded generator),
so every machine gets the same digests.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from typing import Any, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from audit import dsse
from core.actor import acting_as
from lineage import attestations as statements
from lineage.models import Attestation, LineageEdge, LineageNode, PipelineKey, TrainingRun
from lineage.services.attestations import attestation_submit
from lineage.services.datasets import VersionSpec, dataset_create, dataset_version_register
from lineage.services.keys import pipeline_key_register
from lineage.services.model_versions import lineage_record_model_version
from lineage.services.runs import ArtifactSpec, training_run_record

ACTOR = "system:seed_demo"
PIPELINE_USERNAME = "demo-lineage-pipeline"
# The demo's lineage belongs to the credit team that governance's demo creates; governance names a team's
# owner label and its members' group alike ("team:<name>"), so the demo pipeline joins that group.
DEMO_OWNER = "team:credit-risk"
JOB_NAMESPACE = "credit-risk-ml"
JOB_NAME = "train_credit_scorecard"
CODE_REPOSITORY = "https://git.example.org/credit-risk/scorecard.git"
CODE_COMMIT = "4f9d2c7e1b3a5d8f6e0c9b2a7d4e1f3c5b8a6d2e"
# A demo-only signing key, derived from a public constant so the seed is reproducible. Never use
# such a key for anything real: anyone can recompute it.
_DEMO_PIPELINE_SEED = hashlib.sha256(b"governance demo pipeline key (insecure, public)").digest()
# Another team's pipeline, whose attempt to attest to the credit team's data is refused.
OTHER_TEAM = "team:hiring"
OTHER_PIPELINE_USERNAME = "demo-hiring-pipeline"
_DEMO_OTHER_PIPELINE_SEED = hashlib.sha256(b"governance demo hiring pipeline key (insecure, public)").digest()

_STATUS = ["A11", "A12", "A13", "A14"]
_PURPOSE = ["A40", "A41", "A42", "A43", "A46", "A49"]
_HOUSING = ["A151", "A152", "A153"]
COLUMNS = [("status", "string"), ("duration", "int"), ("purpose", "string"), ("credit_amount", "int"),
           ("age", "int"), ("sex", "string"), ("housing", "string"), ("foreign_worker", "string"),
           ("credit_good", "int")]


def german_credit_like_rows(count: int = 1000) -> list[list[Any]]:
    """Deterministic rows shaped like the UCI German credit data (with some missing ages to clean)."""
    rng = random.Random(20_260_101)
    rows: list[list[Any]] = []
    for _ in range(count):
        age: int | str = rng.randint(19, 75) if rng.random() > 0.02 else ""
        amount = int(rng.lognormvariate(7.9, 0.8))
        good = 1 if rng.random() < (0.75 if amount < 5000 else 0.6) else 0
        rows.append([rng.choice(_STATUS), rng.choice([6, 12, 18, 24, 36, 48]), rng.choice(_PURPOSE), amount, age,
                     rng.choice(["male", "female"]), rng.choice(_HOUSING), rng.choice(["A201", "A202"]), good])
    return rows


def _csv(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    out.write(",".join(name for name, _ in COLUMNS) + "\n")
    for row in rows:
        out.write(",".join(str(value) for value in row) + "\n")
    return out.getvalue().encode()


def _pipeline_user(username: str = PIPELINE_USERNAME, team: str = DEMO_OWNER) -> Any:
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username, defaults={"is_active": True})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
        user.user_permissions.add(*Permission.objects.filter(
            content_type__app_label="lineage",
            codename__in=["add_pipelinekey", "view_pipelinekey", "add_attestation", "view_attestation"]))
    team_group = Group.objects.filter(name=team).first()
    if team_group is not None and not user.groups.filter(pk=team_group.pk).exists():
        user.groups.add(team_group)
    return get_user_model().objects.get(pk=user.pk)


def _pipeline_attestation(*, user: Any, raw_node: LineageNode, clean_node: LineageNode, manifest: dict[str, str],
                          stdout: TextIO) -> Attestation | None:
    """The cleaning pipeline of the credit team signs its own statement "clean was made from raw" and submits it."""
    from lineage.visibility import may_write_owner

    if not may_write_owner(user, DEMO_OWNER):
        stdout.write(f"  lineage: no team {DEMO_OWNER} yet (seed governance's demo first): no pipeline attestation\n")
        return None
    private_key = Ed25519PrivateKey.from_private_bytes(_DEMO_PIPELINE_SEED)
    raw_public = private_key.public_key().public_bytes_raw()
    keyid = dsse.envelope_keyid(raw_public)
    if not PipelineKey.objects.filter(keyid=keyid).exists():
        import base64

        pipeline_key_register(owner=user, public_key=base64.b64encode(raw_public).decode(),
                                       name="demo cleaning pipeline")
    if LineageEdge.objects.filter(source=raw_node, target=clean_node).exists():
        return None
    statement = statements.build_statement(
        subjects=[("german_credit_clean/", clean_node.digest)],
        build_type="https://git.example.org/credit-risk/pipelines/clean@v2",
        external_parameters={"drop_rows_with_missing": ["age"], "split": {"test_fraction": 0.2, "seed": 7},
                             "files": manifest},
        internal_parameters={}, resolved_dependencies=[statements.resource("german_credit_raw.csv", raw_node.digest)],
        builder_id="https://ci.example.org/runners/credit-risk", invocation_id="clean-2026-10-01")
    envelope = dsse.sign_envelope(json.dumps(statement, indent=2).encode(), payload_type=dsse.PAYLOAD_TYPE_IN_TOTO,
                                  private_key=private_key, keyid=keyid)
    attestation, _ = attestation_submit(envelope_bytes=json.dumps(envelope, indent=2).encode(), submitted_by=user)
    stdout.write(f"  lineage: pipeline-signed attestation {attestation.pk} links raw -> clean\n")
    return attestation


def _cross_team_attempt(*, clean_node: LineageNode, stdout: TextIO) -> None:
    """The hiring team's pipeline signs "we made the credit team's clean data" with its own key: refused,
    and kept in the ledger as `lineage.attestation.submitted.refused` (attestation_subject_not_writable)."""
    import base64

    from core.errors import ServiceError
    from lineage.visibility import may_write_owner

    user = _pipeline_user(OTHER_PIPELINE_USERNAME, OTHER_TEAM)
    if not may_write_owner(user, OTHER_TEAM):
        return  # governance's demo (which makes the teams) has not run
    private_key = Ed25519PrivateKey.from_private_bytes(_DEMO_OTHER_PIPELINE_SEED)
    raw_public = private_key.public_key().public_bytes_raw()
    keyid = dsse.envelope_keyid(raw_public)
    if not PipelineKey.objects.filter(keyid=keyid).exists():
        pipeline_key_register(owner=user, public_key=base64.b64encode(raw_public).decode(),
                              name="demo hiring pipeline")
    statement = statements.build_statement(
        subjects=[("german_credit_clean/", clean_node.digest)],
        build_type="https://git.example.org/hiring/pipelines/clean@v1", external_parameters={},
        internal_parameters={}, resolved_dependencies=[], builder_id="https://ci.example.org/runners/hiring",
        invocation_id="hiring-claims-credit-data")
    envelope = dsse.sign_envelope(json.dumps(statement, indent=2).encode(), payload_type=dsse.PAYLOAD_TYPE_IN_TOTO,
                                  private_key=private_key, keyid=keyid)
    try:
        attestation_submit(envelope_bytes=json.dumps(envelope, indent=2).encode(), submitted_by=user)
    except ServiceError as exc:
        stdout.write(f"  lineage: the hiring pipeline's attestation about the credit team's data is refused "
                     f"({exc.code}) and kept in the ledger\n")
        return
    raise RuntimeError("another team's pipeline attested to the credit team's data")


def seed(stdout: TextIO) -> str:
    """Create the demo lineage (idempotent) and say where to look."""
    # Writes captured outside our services (the demo pipeline user's permissions) are attributed too.
    with acting_as(ACTOR):
        return _seed(stdout)


def _seed(stdout: TextIO) -> str:
    raw_dataset, _ = dataset_create(namespace="s3://demo-bank", name="german_credit_raw",
                                             description="Loan applications as exported from the core system",
                                             actor=ACTOR, owner_team=DEMO_OWNER)
    clean_dataset, _ = dataset_create(namespace="s3://demo-bank", name="german_credit_clean",
                                               description="Training/test split after cleaning", actor=ACTOR,
                                               owner_team=DEMO_OWNER)
    rows = german_credit_like_rows()
    raw_bytes = _csv(rows)
    raw, _ = dataset_version_register(dataset=raw_dataset, actor=ACTOR, spec=VersionSpec(
        location_uri="s3://demo-bank/german_credit/raw/2026-10-01.csv", content=raw_bytes, version="2026-10-01",
        schema=[{"name": name, "type": kind} for name, kind in COLUMNS], row_count=len(rows),
        sensitive_data_notes=("Contains the protected attributes age and sex (used only for fairness audits, "
                              "never as model features); applicant ids removed at export; retention 5 years.")))
    cleaned = [row for row in rows if row[4] != ""]
    split = int(len(cleaned) * 0.8)
    train_bytes, test_bytes = _csv(cleaned[:split]), _csv(cleaned[split:])
    manifest = {"train.csv": hashlib.sha256(train_bytes).hexdigest(),
                "test.csv": hashlib.sha256(test_bytes).hexdigest()}
    clean, _ = dataset_version_register(dataset=clean_dataset, actor=ACTOR, spec=VersionSpec(
        location_uri="s3://demo-bank/german_credit/clean/2026-10-01/", manifest=manifest, version="2026-10-01",
        schema=[{"name": name, "type": kind} for name, kind in COLUMNS], row_count=len(cleaned),
        sensitive_data_notes="Rows with a missing age dropped; age and sex kept for fairness audits only."))
    _pipeline_attestation(user=_pipeline_user(), raw_node=raw.node, clean_node=clean.node, manifest=manifest,
                          stdout=stdout)
    _cross_team_attempt(clean_node=clean.node, stdout=stdout)

    run = TrainingRun.objects.filter(job_name=JOB_NAME, code_commit=CODE_COMMIT).first()
    if run is None:
        from datetime import UTC, datetime

        run = training_run_record(
            job_name=JOB_NAME, job_namespace=JOB_NAMESPACE, code_repository=CODE_REPOSITORY, code_commit=CODE_COMMIT,
            parameters={"model": "LogisticRegression", "C": 0.5, "class_weight": "balanced",
                        "features": ["status", "duration", "purpose", "credit_amount", "housing"]},
            environment={"python": "3.11.9", "scikit-learn": "1.7.2", "numpy": "2.3.4", "pandas": "2.3.3"},
            started_at=datetime(2026, 10, 1, 9, 0, tzinfo=UTC), ended_at=datetime(2026, 10, 1, 9, 14, tzinfo=UTC),
            inputs=[clean], artifacts=[ArtifactSpec(
                uri="s3://demo-bank/models/scorecard/2026-10-01/model.pkl",
                digest=hashlib.sha256(b"demo scorecard model " + CODE_COMMIT.encode()).hexdigest(),
                label="scorecard model.pkl")],
            actor=ACTOR, owner_team=DEMO_OWNER)
    # Model versions that governance's demo registered for a credit model, not yet linked to a run.
    linked = []
    for node in LineageNode.objects.filter(kind=LineageNode.Kind.MODEL_VERSION, label__icontains="credit",
                                           in_edges__isnull=True).order_by("pk"):
        lineage_record_model_version(run_id=run.pk, subject=(node.ref_type, node.ref_id), digest=node.digest,
                                              label=node.label, actor=ACTOR)
        linked.append(node.pk)
    focus = (LineageNode.objects.filter(kind=LineageNode.Kind.MODEL_VERSION, in_edges__source=run.node)
             .order_by("pk").first() or run.node)
    stdout.write(f"  lineage: open /lineage/nodes/{focus.pk}/ for the graph; "
                 f"/api/lineage/graph/?node=node:{focus.pk}&direction=upstream&depth=5 for JSON; "
                 f"/api/lineage/keys/ for the keys that verify every envelope\n")
    return (f"datasets raw={raw.pk} clean={clean.pk}, run {run.pk}, "
            f"{Attestation.objects.count()} attestations, linked model versions {linked or 'none'}")
