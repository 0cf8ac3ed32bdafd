"""OpenLineage ingestion (`POST /api/v1/lineage`): RunEvent, DatasetEvent and JobEvent, spec 2-0-x.

Mapping onto our records:
- job (namespace, name) + run.runId -> `TrainingRun` (external_run_id = runId); START/RUNNING set it
  running, COMPLETE/FAIL/ABORT close it; `sourceCodeLocation` / `sourceCode` job facets give the code
  reference, `processing_engine` and a custom `environment` run facet the environment, a custom
  `parameters` run facet the parameters.
- inputs / outputs (namespace, name) -> `Dataset`, and a `DatasetVersion` whose digest is, in order:
  a custom dataset facet `contentDigest: {"sha256": "<hex>"}` (digest_kind "content"); otherwise the
  SHA-256 of the RFC 8785 bytes of {"namespace", "name", "version": the `version` facet's
  datasetVersion or null, "schema": [[name, type], ...] from the `schema` facet}
  (digest_kind "openlineage_identity": it identifies the version, it does not prove its bytes).
- edges input version -> run -> output version, attested by the server; an edge that would close a
  cycle (a job reading and writing the same unversioned table) is skipped and reported, not refused.
- deliveries are deduplicated on (runId, eventType, eventTime, SHA-256 of the decompressed body, the
  sending account): a retry gets the first answer again with 201 and writes nothing.
- a run belongs to the account that started it and its team: it is keyed by job namespace, job name,
  runId and owner. Another account's event for that runId (under another job or the same) is 409
  `openlineage_run_conflict`, and nothing is written. Datasets are the sending team's own
  (`lineage.services.datasets.dataset_create`).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.dateparse import parse_datetime

from audit import jcs
from audit.ledger import actor_label, ledger_append, lock_for_update
from core.errors import Conflict, InvalidInput, ServiceError, Unavailable
from lineage import attestations as statements
from lineage.models import DatasetVersion, LineageEdge, OpenLineageEvent, TrainingRun
from lineage.services import datasets as dataset_services
from lineage.services import graph as graph_services
from lineage.services import runs as run_services
from lineage.services.attestations import server_attest

RUN_EVENT, DATASET_EVENT, JOB_EVENT = "RunEvent", "DatasetEvent", "JobEvent"
EVENT_TYPES = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
_STATUS = {"START": TrainingRun.Status.RUNNING, "RUNNING": TrainingRun.Status.RUNNING,
           "COMPLETE": TrainingRun.Status.COMPLETED, "FAIL": TrainingRun.Status.FAILED,
           "ABORT": TrainingRun.Status.ABORTED}
MAX_DATASETS_PER_EVENT = 500


class PayloadTooLarge(ServiceError):
    code = "payload_too_large"
    status_code = 413


def invalid(field: str, message: str) -> InvalidInput:
    """A really invalid event: 400 naming the field (dotted path)."""
    return InvalidInput(f"Invalid OpenLineage event: {field}: {message}", code="openlineage_invalid_event",
                        extra={"field": field})


def decode_body(raw: bytes, *, content_encoding: str, max_bytes: int) -> bytes:
    """The event bytes; gzip is inflated incrementally and refused with 413 past `max_bytes`."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        if len(raw) > max_bytes:
            raise PayloadTooLarge(f"The event exceeds {max_bytes} bytes.")
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise InvalidInput(f"Content-Encoding {encoding!r} is not supported; use gzip or none.",
                           code="unsupported_content_encoding", status_code=415, extra={"field": "Content-Encoding"})
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, max_bytes + 1)
    except zlib.error:
        raise invalid("body", "not a valid gzip stream") from None
    if len(body) > max_bytes or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"The decompressed event exceeds {max_bytes} bytes.")
    if not inflater.eof:
        raise invalid("body", "truncated gzip stream")
    return body


# --- Validation -------------------------------------------------------------------------------

def _object(value: Any, field: str, *, required: bool = True) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise invalid(field, "must be an object")
    return value


def _string(container: Mapping[str, Any], key: str, field: str, *, required: bool = True) -> str:
    value = container.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise invalid(field, "must be a non-empty string" if required else "must be a string")
    return value


def _time(container: Mapping[str, Any], key: str, field: str) -> datetime:
    text = _string(container, key, field)
    try:
        moment = parse_datetime(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise invalid(field, "must be an ISO 8601 date-time with a time zone")
    try:
        return moment.astimezone(UTC)  # PostgreSQL refuses offsets beyond ±15:59 (hardening)
    except OverflowError:
        raise invalid(field, "is out of range") from None


def classify(event: Mapping[str, Any]) -> str:
    """RunEvent, DatasetEvent or JobEvent, from the fields present (schemaURL breaks ties)."""
    schema_url = event.get("schemaURL")
    schema_url = schema_url if isinstance(schema_url, str) else ""
    if "run" in event or schema_url.endswith("/RunEvent"):
        return RUN_EVENT
    if "dataset" in event or schema_url.endswith("/DatasetEvent"):
        return DATASET_EVENT
    if "job" in event or schema_url.endswith("/JobEvent"):
        return JOB_EVENT
    raise invalid("run", "an event needs run (RunEvent), dataset (DatasetEvent) or job (JobEvent)")


def _datasets(event: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    items = event.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise invalid(key, "must be a list")
    if len(items) > MAX_DATASETS_PER_EVENT:
        raise invalid(key, f"at most {MAX_DATASETS_PER_EVENT} datasets per event")
    for index, item in enumerate(items):
        field = f"{key}[{index}]"
        _object(item, field)
        _string(item, "namespace", f"{field}.namespace")
        _string(item, "name", f"{field}.name")
        _object(item.get("facets"), f"{field}.facets", required=False)
    return items


def parse_event(body: bytes) -> dict[str, Any]:
    """Parse and check an event; raises 400 naming the first invalid field."""
    try:
        event = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise invalid("body", "not UTF-8 JSON") from None
    if not isinstance(event, dict):
        raise invalid("body", "must be a JSON object")
    problem = statements.unstorable_reason(event) if b"\\u" in body else None
    if problem is not None:
        raise invalid(*problem)
    kind = classify(event)
    _time(event, "eventTime", "eventTime")
    _string(event, "producer", "producer", required=False)
    _string(event, "schemaURL", "schemaURL", required=False)
    if kind == RUN_EVENT:
        run = _object(event.get("run"), "run")
        _string(run, "runId", "run.runId")
        _object(run.get("facets"), "run.facets", required=False)
        job = _object(event.get("job"), "job")
        _string(job, "namespace", "job.namespace")
        _string(job, "name", "job.name")
        event_type = event.get("eventType")
        if event_type is not None and event_type not in EVENT_TYPES:
            raise invalid("eventType", f"must be one of {', '.join(EVENT_TYPES)}")
    elif kind == JOB_EVENT:
        job = _object(event.get("job"), "job")
        _string(job, "namespace", "job.namespace")
        _string(job, "name", "job.name")
    else:
        dataset = _object(event.get("dataset"), "dataset")
        _string(dataset, "namespace", "dataset.namespace")
        _string(dataset, "name", "dataset.name")
    _datasets(event, "inputs")
    _datasets(event, "outputs")
    event["_kind"] = kind
    return event


# --- Mapping ----------------------------------------------------------------------------------

def _facet(facets: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    value = (facets or {}).get(name)
    return value if isinstance(value, dict) else {}


def schema_columns(facets: Mapping[str, Any] | None) -> list[dict[str, str]]:
    fields = _facet(facets, "schema").get("fields")
    if not isinstance(fields, list):
        return []
    return [{"name": str(item["name"]), "type": str(item.get("type") or "")}
            for item in fields if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]]


def identity_digest(*, namespace: str, name: str, version: str | None, schema: list[dict[str, str]]) -> str:
    """SHA-256 of JCS {namespace, name, version, schema}: our digest when no content digest is sent."""
    return hashlib.sha256(jcs.canonicalize({
        "namespace": namespace, "name": name, "version": version,
        "schema": [[column["name"], column["type"]] for column in schema],
    })).hexdigest()


def _dataset_version(item: Mapping[str, Any], field: str, *, statistics_facet: str, actor: Any,
                     owner_team: str) -> DatasetVersion:
    namespace, name = item["namespace"], item["name"]
    facets = item.get("facets") or {}
    schema = schema_columns(facets)
    version_label = _facet(facets, "version").get("datasetVersion")
    version_label = str(version_label) if isinstance(version_label, (str, int)) else None
    content_digest = _facet(facets, "contentDigest").get("sha256")
    if content_digest is not None:
        if not statements.is_sha256_hex(content_digest):
            raise invalid(f"{field}.facets.contentDigest.sha256", "must be a lowercase hex SHA-256")
        digest, kind = content_digest, DatasetVersion.DigestKind.CONTENT
    else:
        digest = identity_digest(namespace=namespace, name=name, version=version_label, schema=schema)
        kind = DatasetVersion.DigestKind.OPENLINEAGE_IDENTITY
    location = _facet(facets, "dataSource").get("uri")
    location = location if isinstance(location, str) and location else f"{namespace.rstrip('/')}/{name}"
    statistics = _facet(item.get(statistics_facet) or {}, statistics_facet.replace("Facets", "Statistics"))
    row_count = statistics.get("rowCount")
    dataset, _ = dataset_services.dataset_create(namespace=namespace, name=name, actor=actor, owner_team=owner_team)
    version, _ = dataset_services.version_register(
        dataset=dataset, derived_from=[], actor=actor,
        spec=dataset_services.VersionSpec(location_uri=location[:2000], digest=digest, digest_kind=kind,
                                  version=version_label or "", schema=schema,
                                  row_count=row_count if isinstance(row_count, int) and row_count >= 0 else None))
    return version


def _code_reference(job_facets: Mapping[str, Any]) -> tuple[str, str]:
    location = _facet(job_facets, "sourceCodeLocation")
    repository = location.get("repoUrl") or location.get("url") or ""
    commit = location.get("version") or location.get("tag") or location.get("branch") or ""
    return str(repository)[:1000], str(commit)[:200]


def _environment(run_facets: Mapping[str, Any]) -> dict[str, Any]:
    environment: dict[str, Any] = {}
    engine = _facet(run_facets, "processing_engine")
    if engine.get("name"):
        environment[str(engine["name"])] = str(engine.get("version") or "")
    if engine.get("openlineageAdapterVersion"):
        environment["openlineage-adapter"] = str(engine["openlineageAdapterVersion"])
    packages = _facet(run_facets, "environment").get("packages")
    if isinstance(packages, dict):
        environment.update({str(k): str(v) for k, v in packages.items()})
    return environment


def _parameters(run_facets: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in _facet(run_facets, "parameters").items() if not key.startswith("_")}


def _link_run(run: TrainingRun, inputs: list[DatasetVersion], outputs: list[DatasetVersion],
              actor: Any) -> tuple[list[LineageEdge], list[list[int]]]:
    new_edges: list[LineageEdge] = []
    skipped: list[list[int]] = []
    pairs = [(version.node, run.node) for version in inputs] + [(run.node, version.node) for version in outputs]
    for source, target in pairs:
        try:
            edge, created = graph_services.edge_add(source, target)
        except Conflict:
            skipped.append([source.pk, target.pk])
            continue
        if created:
            new_edges.append(edge)
    return new_edges, skipped


def _run_key(*, job_namespace: str, job_name: str, actor: str, owner_team: str) -> tuple[str, str, str, str]:
    return job_namespace[:300], job_name[:500], actor, owner_team


def _apply_run_event(event: dict[str, Any], actor: Any, owner_team: str) -> dict[str, Any]:
    run_data, job = event["run"], event["job"]
    run_facets, job_facets = run_data.get("facets") or {}, job.get("facets") or {}
    event_type = event.get("eventType") or "OTHER"
    event_time = _time(event, "eventTime", "eventTime")
    run = lock_for_update(TrainingRun.objects).select_related("node").filter(
        external_run_id=run_data["runId"][:100]).first()
    wanted = _run_key(job_namespace=job["namespace"], job_name=job["name"], actor=actor_label(actor),
                      owner_team=owner_team)
    if run is not None and _run_key(job_namespace=run.job_namespace, job_name=run.job_name, actor=run.actor,
                                    owner_team=run.owner_team) != wanted:
        raise Conflict("This runId belongs to a run of another job or another account.",
                       code="openlineage_run_conflict", extra={"field": "run.runId"})
    inputs = [_dataset_version(item, f"inputs[{i}]", statistics_facet="inputFacets", actor=actor,
                               owner_team=owner_team)
              for i, item in enumerate(event.get("inputs") or [])]
    outputs = [_dataset_version(item, f"outputs[{i}]", statistics_facet="outputFacets", actor=actor,
                                owner_team=owner_team)
               for i, item in enumerate(event.get("outputs") or [])]
    repository, commit = _code_reference(job_facets)
    if run is None:
        run = run_services.run_create(
            job_name=job["name"][:500], job_namespace=job["namespace"][:300], external_run_id=run_data["runId"][:100],
            code_repository=repository, code_commit=commit, parameters=_parameters(run_facets),
            environment=_environment(run_facets), started_at=event_time if event_type == "START" else None,
            ended_at=None, status=_STATUS.get(event_type, TrainingRun.Status.UNKNOWN), actor=actor,
            owner_team=owner_team)
    changed: list[str] = []
    if event_type == "START" and run.started_at is None:
        run.started_at, changed = event_time, [*changed, "started_at"]
    if event_type in ("COMPLETE", "FAIL", "ABORT"):
        run.ended_at, changed = event_time, [*changed, "ended_at"]
    if event_type in _STATUS and run.status != _STATUS[event_type]:
        run.status, changed = _STATUS[event_type], [*changed, "status"]
    if not run.code_repository and repository:
        run.code_repository, run.code_commit, changed = repository, commit, [*changed, "code_repository", "code_commit"]
    if changed:
        run.save(update_fields=changed)
    new_edges, skipped = _link_run(run, inputs, outputs, actor)
    attestation = None
    if new_edges:
        external, internal = run_services.run_build_parameters(run)
        all_inputs = [edge.source for edge in LineageEdge.objects.filter(target=run.node).select_related("source")]
        attestation = server_attest(
            subjects=[run.node, *[version.node for version in outputs]], dependencies=all_inputs, actor=actor,
            external_parameters=external, internal_parameters=internal, invocation_id=f"run:{run.pk}",
            started_on=run.started_at, finished_on=run.ended_at, edges=new_edges, owner_team=run.owner_team)
    return {"run": run.pk, "run_node": run.node_id, "status": run.status,
            "inputs": [version.pk for version in inputs], "outputs": [version.pk for version in outputs],
            "new_edges": [[edge.source_id, edge.target_id] for edge in new_edges], "skipped_edges": skipped,
            "attestation": attestation.pk if attestation else None}


def _apply_dataset_event(event: dict[str, Any], actor: Any, owner_team: str) -> dict[str, Any]:
    version = _dataset_version(event["dataset"], "dataset", statistics_facet="inputFacets", actor=actor,
                               owner_team=owner_team)
    return {"dataset_versions": [version.pk]}


def _apply_job_event(event: dict[str, Any], actor: Any, owner_team: str) -> dict[str, Any]:
    # A JobEvent describes a job's static lineage, not a run that consumed a version: we register
    # its datasets but draw no edges.
    versions = [_dataset_version(item, f"{key}[{i}]", statistics_facet=f"{key[:-1]}Facets", actor=actor,
                                 owner_team=owner_team)
                for key in ("inputs", "outputs") for i, item in enumerate(event.get(key) or [])]
    return {"dataset_versions": [version.pk for version in versions]}


def dedup_key(*, run_id: str, event_type: str, event_time: str, body_sha256: str, sender: str) -> str:
    """One delivery of one account: another account's identical body is not its retry (nor an oracle for it)."""
    return hashlib.sha256(jcs.canonicalize([run_id, event_type, event_time, body_sha256, sender])).hexdigest()


def openlineage_event_ingest(*, body: bytes, actor: Any) -> tuple[dict[str, Any], bool]:
    """Apply one event in one transaction with its ledger entry; returns (result, duplicate)."""
    event = parse_event(body)
    kind = event.pop("_kind")
    body_sha256 = hashlib.sha256(body).hexdigest()
    run_id = str(event["run"]["runId"]) if kind == RUN_EVENT else ""
    event_type = str(event.get("eventType") or "") if kind == RUN_EVENT else ""
    event_time = str(event["eventTime"])
    owner_team = graph_services.acting_owner(actor)
    key = dedup_key(run_id=run_id, event_type=event_type, event_time=event_time, body_sha256=body_sha256,
                    sender=actor_label(actor))
    existing = OpenLineageEvent.objects.filter(dedup_key=key).first()
    if existing is not None:
        return existing.result, True
    try:
        with transaction.atomic():
            if kind == RUN_EVENT:
                result = _apply_run_event(event, actor, owner_team)
            elif kind == DATASET_EVENT:
                result = _apply_dataset_event(event, actor, owner_team)
            else:
                result = _apply_job_event(event, actor, owner_team)
            result = {"event_kind": kind, **result}
            record = OpenLineageEvent.objects.create(
                dedup_key=key, event_kind=kind, event_type=event_type, event_time=event_time[:64],
                openlineage_run_id=run_id[:100], body_sha256=body_sha256, run_id=result.get("run"), result=result,
                received_by=actor_label(actor))
            ledger_append(actor=actor, action="lineage.openlineage.event_ingested", subject=record, payload={
                "event_kind": kind, "event_type": event_type, "event_time": event_time, "run_id": run_id,
                "job": event.get("job", {}).get("name") if isinstance(event.get("job"), dict) else None,
                "producer": event.get("producer"), "body_sha256": body_sha256, "result": result,
            })
    except IntegrityError:
        # A concurrent delivery of the same event (or of the same new run) won the race.
        existing = OpenLineageEvent.objects.filter(dedup_key=key).first()
        if existing is not None:
            return existing.result, True
        raise Unavailable("A concurrent event for this run was being written; retry.", code="openlineage_retry")
    return result, False

