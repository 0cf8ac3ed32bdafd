"""Reconcile: read a model's state from MLflow's REST API, compare it with what the last reconcile
saw, and record every difference. Idempotent: a second run with nothing changed writes nothing.

MLflow sends no event for deletions, renames, description edits, model tags or stage transitions,
and drops events when the receiver or its workers are down, so the scheduled pass over every model
(`mlflow_connection_reconcile`) is what makes the record complete; webhooks only make it prompt.

Reading MLflow (and hashing new versions' artifacts) happens before the transaction; the writes of
one model are one transaction, under a lock on its link, re-checked against the locked snapshot.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.ledger import draft, ledger_append, ledger_append_many, lock_for_update
from core.errors import Conflict, InvalidInput, ServiceError, Unavailable
from core.outbox.services import task_enqueue_on_commit
from governance.integrations.mlflow.client import MlflowClient, MlflowError, aliases_dict, tags_dict
from governance.integrations.mlflow.models import MlflowConnection, MlflowModelLink, MlflowVersionLink, MlflowViolation
from governance.integrations.mlflow.services.connections import client_for
from governance.models import NAME_PATTERN, Deployment, Environment, ModelVersion, RegisteredModel
from governance.registry.services.common import DeploymentNotApproved
from governance.registry.services.deployments import deployment_end, deployment_record
from governance.registry.services.registry import NewVersion, model_register, model_versions_register
from lineage.models import TrainingRun
from lineage.services.runs import run_create

logger = logging.getLogger(__name__)

NOTIFY_TASK = "governance.integrations.mlflow.tasks.mlflow_violation_notify_task"
REVERT_TASK = "governance.integrations.mlflow.tasks.mlflow_violation_revert_task"
VERSION_FIELDS = ("run_id", "source", "tags", "description", "current_stage")


@dataclass
class RemoteVersion:
    version: str
    run_id: str
    source: str
    tags: dict[str, str]
    description: str
    current_stage: str
    artifact_uri: str = ""
    manifest: dict[str, str] | None = None
    manifest_error: str = ""
    run: dict[str, Any] | None = None

    def snapshot(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in VERSION_FIELDS}


@dataclass
class RemoteModel:
    name: str
    description: str
    tags: dict[str, str]
    aliases: dict[str, str]
    versions: dict[str, RemoteVersion]

    def snapshot(self) -> dict[str, Any]:
        return {"description": self.description, "tags": self.tags, "aliases": self.aliases}


@dataclass
class ReconcileResult:
    mlflow_name: str
    changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def governed_name(mlflow_name: str) -> str:
    """The registered model name for an MLflow name: lowercase, other characters as '-'."""
    name = re.sub(r"[^a-z0-9._-]+", "-", mlflow_name.strip().lower()).strip("-._")
    if not re.match(NAME_PATTERN, name):
        raise InvalidInput(f"MLflow model {mlflow_name!r} maps to no valid model name.",
                           code="mlflow_model_name_invalid", extra={"mlflow_name": mlflow_name})
    return name


def _version(raw: dict[str, Any]) -> RemoteVersion:
    return RemoteVersion(version=str(raw.get("version")), run_id=str(raw.get("run_id") or ""),
                         source=str(raw.get("source") or ""), tags=tags_dict(raw.get("tags")),
                         description=str(raw.get("description") or ""),
                         current_stage=str(raw.get("current_stage") or "None"))


def fetch_model(client: MlflowClient, name: str, *, known: set[str], hash_new: bool = True) -> RemoteModel | None:
    """MLflow's state of one model; None if MLflow has no model of that name. New versions are read
    one by one (search gives no run id for `log_model` versions) and their artifacts hashed."""
    raw = client.registered_model(name)
    if raw is None:
        return None
    versions = {item.version: item for item in map(_version, client.model_versions(name))}
    for number in list(versions):
        if number in known or not hash_new:
            continue
        detail = _version(client.model_version(name, number))
        detail.artifact_uri = client.download_uri(name, number)
        try:
            detail.manifest = client.manifest(detail.artifact_uri)
        except MlflowError as exc:
            if exc.error_code != "UNSUPPORTED_ARTIFACT_URI" and exc.status is None:
                raise
            detail.manifest_error = str(exc)
        if detail.run_id:
            detail.run = client.run(detail.run_id)
        versions[number] = detail
    return RemoteModel(name=name, description=str(raw.get("description") or ""), tags=tags_dict(raw.get("tags")),
                       aliases=aliases_dict(raw.get("aliases")), versions=versions)


def _run_external_id(connection: MlflowConnection, remote: RemoteVersion) -> str:
    return f"mlflow:{connection.pk}:{remote.run_id}"[:100]


def _training_run(connection: MlflowConnection, remote: RemoteVersion, known: dict[str, int]) -> int | None:
    """The lineage run for the MLflow run (created once, keyed by the connection and run id); `known`
    maps the external ids of the runs that exist to their ids, and gets the new one."""
    if not remote.run_id or remote.run is None:
        return None
    external_id = _run_external_id(connection, remote)
    if external_id in known:
        return known[external_id]
    info = remote.run.get("info") or {}
    data = remote.run.get("data") or {}
    params = {str(p.get("key")): str(p.get("value")) for p in data.get("params") or [] if isinstance(p, dict)}
    status = {"FINISHED": "completed", "FAILED": "failed", "KILLED": "aborted", "RUNNING": "running"}.get(
        str(info.get("status")), "unknown")

    def moment(ms: Any) -> Any:
        return datetime.fromtimestamp(int(ms) / 1000, tz=UTC) if ms else None

    run = run_create(job_name=str(info.get("run_name") or remote.run_id)[:500],
                     job_namespace=f"mlflow:{connection.name}/experiment:{info.get('experiment_id', '')}"[:300],
                     external_run_id=external_id, code_repository="", code_commit="", parameters=params,
                     environment={}, started_at=moment(info.get("start_time")), ended_at=moment(info.get("end_time")),
                     status=status, actor=connection.service_account, owner_team=connection.team.group.name)
    ledger_append(actor=connection.service_account, action="mlflow.run_linked", subject=run,
                  payload={"connection": connection.name, "mlflow_run_id": remote.run_id, "status": status,
                           "params": params})
    known[external_id] = run.pk
    return run.pk


def _link_model(connection: MlflowConnection, remote: RemoteModel, result: ReconcileResult) -> MlflowModelLink:
    """The link for a model first seen: adopt the team's model of that name, or register one."""
    svc = connection.service_account
    name = governed_name(remote.name)
    model = RegisteredModel.objects.filter(name=name).first()
    if model is not None and model.team_id != connection.team_id:
        raise Conflict(f"A model named '{name}' belongs to another team.", code="mlflow_model_name_taken",
                       extra={"mlflow_name": remote.name, "model": name})
    if model is None:
        model = model_register(by=svc, name=name, team=connection.team, risk_tier=connection.default_risk_tier,
                               description=remote.description[:10000])
    link = MlflowModelLink.objects.create(connection=connection, mlflow_name=remote.name, model=model, snapshot={
        "description": remote.description, "tags": remote.tags, "aliases": {}})
    ledger_append(actor=svc, action="mlflow.model_linked", subject=model, payload={
        "connection": connection.name, "mlflow_name": remote.name, "model": model.name,
        "description": remote.description, "tags": remote.tags})
    result.changes.append(f"model {remote.name}: linked to {model.name}")
    return link


def _record_versions(connection: MlflowConnection, link: MlflowModelLink, remotes: list[RemoteVersion],
                     result: ReconcileResult) -> None:
    """Register the new MLflow versions of one model as drafts, in one batch (`model_versions_register`)."""
    svc = connection.service_account
    ready = []
    known_runs = dict(TrainingRun.objects.filter(external_run_id__in=[
        _run_external_id(connection, remote) for remote in remotes if remote.run_id]).values_list(
        "external_run_id", "pk"))
    for remote in remotes:
        if remote.manifest is None or not remote.manifest:
            # Not registered: retried by the next pass. Logged, not recorded, so the pass stays idempotent.
            result.errors.append(f"version {remote.version}: artifacts not hashed: {remote.manifest_error or 'none'}")
            continue
        ready.append((remote, _training_run(connection, remote, known_runs)))
    if not ready:
        return
    versions = model_versions_register(model=link.model, by=svc, versions=[
        NewVersion(label=remote.version, artifact_uri=remote.artifact_uri or remote.source, manifest=remote.manifest,
                   training_run=run_pk) for remote, run_pk in ready])
    MlflowVersionLink.objects.bulk_create([
        MlflowVersionLink(link=link, mlflow_version=remote.version, version=version, snapshot=remote.snapshot())
        for (remote, _), version in zip(ready, versions, strict=True)])
    # One append for the batch: the same entries, in the same order, as one append each.
    ledger_append_many([draft(actor=svc, action="mlflow.version_imported", subject=version, payload={
        "connection": connection.name, "mlflow_name": link.mlflow_name, "mlflow_version": remote.version,
        **remote.snapshot(), "artifact_uri": remote.artifact_uri, "manifest_digest": version.manifest_digest,
        "training_run": run_pk}) for (remote, run_pk), version in zip(ready, versions, strict=True)], checkpoint=False)
    result.changes.extend(f"version {remote.version}: imported ({len(remote.manifest or {})} files)"
                          for remote, _ in ready)


def _alias_changed(connection: MlflowConnection, link: MlflowModelLink, alias: str, before: str | None,
                   after: str | None, result: ReconcileResult) -> None:
    svc = connection.service_account
    environment_name = (connection.alias_map or {}).get(alias)
    target = None
    if after is not None:
        target = (MlflowVersionLink.objects.select_related("version").filter(
            link=link, mlflow_version=after, deleted_at__isnull=True).first())
    payload = {"connection": connection.name, "mlflow_name": link.mlflow_name, "alias": alias,
               "version": after, "previous": before, "environment": environment_name}
    action = "mlflow.alias_set" if after is not None else "mlflow.alias_deleted"
    ledger_append(actor=svc, action=action, subject=target.version if target else link.model, payload=payload)
    result.changes.append(f"alias @{alias}: {before} -> {after}")
    if environment_name is None:
        return
    environment = Environment.objects.get(name=environment_name)
    active = Deployment.objects.filter(model=link.model, environment=environment, is_active=True).first()
    if after is None:
        _alias_deleted(connection, link, alias, before, environment, active, result)
        return
    if target is None:
        # A version never registered here (its artifacts could not be hashed) is approved for nothing.
        refusal = DeploymentNotApproved(f"MLflow version {after} is not registered here, so not approved.",
                                        extra={"version": after, "environment": environment.name})
        _violation(connection, link, alias, before, after, None, environment, active, refusal, result)
        return
    version = target.version
    if active is not None and active.version_id == version.pk:
        return
    try:
        with transaction.atomic():
            deployment_record(version=version, environment=environment, by=svc,
                              comment=f"MLflow alias @{alias} ({connection.name})")
        result.changes.append(f"alias @{alias}: deployment of {version.label} to {environment.name} recorded")
    except DeploymentNotApproved as refusal:
        _violation(connection, link, alias, before, after, version, environment, active, refusal, result)


def _alias_deleted(connection: MlflowConnection, link: MlflowModelLink, alias: str, before: str | None,
                   environment: Environment, active: Deployment | None, result: ReconcileResult) -> None:
    """The alias is gone (deleted, or with its version): the deployment it stood for ends, unless
    another version was deployed there since (that one is not the alias's to end)."""
    if active is None or before is None:
        return
    # Deleted versions too: MLflow drops a version's aliases when it deletes the version.
    named = (MlflowVersionLink.objects.filter(link=link, mlflow_version=before).order_by("-pk")
             .values_list("version_id", flat=True).first())
    if named != active.version_id:
        return
    deployment_end(deployment=active, by=connection.service_account,
                   comment=f"MLflow alias @{alias} deleted ({connection.name})")
    result.changes.append(f"alias @{alias}: deployment of {before} to {environment.name} ended")


def _violation(connection: MlflowConnection, link: MlflowModelLink, alias: str, before: str | None, after: str,
               version: ModelVersion | None, environment: Environment, active: Deployment | None,
               refusal: DeploymentNotApproved, result: ReconcileResult) -> None:
    status = version.status if version is not None else "unregistered"
    violation = MlflowViolation(connection=connection, model=link.model, version=version, mlflow_name=link.mlflow_name,
                                mlflow_version=after, alias=alias, environment=environment.name, version_status=status,
                                code=refusal.code, detected_at=timezone.now())
    violation.save_recorded(action="mlflow.policy_violation", by=connection.service_account, extra={
        "previous": before, "message": refusal.message, "revert": connection.revert_violations})
    result.changes.append(f"alias @{alias}: POLICY VIOLATION ({after} is {status})")
    task_enqueue_on_commit(NOTIFY_TASK, violation.pk)
    if connection.revert_violations:
        # Back to the version the alias named before only if that one runs there now (else two
        # refused versions would bounce the alias between them): otherwise the alias is removed.
        previous = (MlflowVersionLink.objects.filter(link=link, mlflow_version=before, deleted_at__isnull=True)
                    .values_list("version_id", flat=True).first() if before is not None else None)
        revert_to = before if active is not None and previous == active.version_id else None
        task_enqueue_on_commit(REVERT_TASK, violation.pk, revert_to)


def _apply(connection: MlflowConnection, remote: RemoteModel | None, mlflow_name: str,
           result: ReconcileResult) -> None:
    svc = connection.service_account
    link = (lock_for_update(MlflowModelLink.objects).select_related("model")
            .filter(connection=connection, mlflow_name=mlflow_name, deleted_at__isnull=True).first())
    if remote is None:
        if link is not None:
            link.deleted_at = timezone.now()
            link.save(update_fields=["deleted_at"])
            ledger_append(actor=svc, action="mlflow.model_deleted", subject=link.model,
                          payload={"connection": connection.name, "mlflow_name": mlflow_name})
            result.changes.append(f"model {mlflow_name}: deleted in MLflow")
        return
    if link is None:
        link = _link_model(connection, remote, result)
    seen = link.snapshot or {}
    model_changes = {key: {"before": seen.get(key), "after": value}
                     for key, value in (("description", remote.description), ("tags", remote.tags))
                     if seen.get(key) != value}
    if model_changes:
        ledger_append(actor=svc, action="mlflow.model_changed", subject=link.model,
                      payload={"connection": connection.name, "mlflow_name": mlflow_name, "changes": model_changes})
        result.changes.append(f"model {mlflow_name}: {', '.join(sorted(model_changes))} changed")
    links = {item.mlflow_version: item for item in link.versions.select_related("version")
             .filter(deleted_at__isnull=True)}
    new_versions: list[RemoteVersion] = []
    for number in sorted(remote.versions, key=_version_key):
        current = remote.versions[number]
        known = links.get(number)
        if known is None:
            new_versions.append(current)
            continue
        after = current.snapshot()
        # The run id is absent from search results of `log_model` versions: never a change by itself.
        if not after["run_id"]:
            after["run_id"] = known.snapshot.get("run_id", "")
        diff = {key: {"before": known.snapshot.get(key), "after": value} for key, value in after.items()
                if known.snapshot.get(key) != value}
        if diff:
            ledger_append(actor=svc, action="mlflow.version_changed", subject=known.version, payload={
                "connection": connection.name, "mlflow_name": mlflow_name, "mlflow_version": number, "changes": diff})
            known.snapshot = after
            known.save(update_fields=["snapshot"])
            result.changes.append(f"version {number}: {', '.join(sorted(diff))} changed")
    _record_versions(connection, link, new_versions, result)
    for number, known in sorted(links.items()):
        if number not in remote.versions:
            known.deleted_at = timezone.now()
            known.save(update_fields=["deleted_at"])
            ledger_append(actor=svc, action="mlflow.version_deleted", subject=known.version, payload={
                "connection": connection.name, "mlflow_name": mlflow_name, "mlflow_version": number,
                "status_here": known.version.status})
            result.changes.append(f"version {number}: deleted in MLflow")
    before_aliases = dict(seen.get("aliases") or {})
    for alias in sorted(set(before_aliases) | set(remote.aliases)):
        if before_aliases.get(alias) != remote.aliases.get(alias):
            _alias_changed(connection, link, alias, before_aliases.get(alias), remote.aliases.get(alias), result)
    snapshot = remote.snapshot()
    if snapshot != seen:
        link.snapshot = snapshot
        link.save(update_fields=["snapshot"])


def _version_key(number: str) -> tuple[int, str]:
    return (int(number), "") if number.isdigit() else (1 << 62, number)


def mlflow_model_reconcile(*, connection: MlflowConnection, mlflow_name: str, client: MlflowClient | None = None,
                           dry_run: bool = False) -> ReconcileResult:
    """Bring the record of one MLflow model up to date (one transaction); with dry_run, only say what would change."""
    result = ReconcileResult(mlflow_name=mlflow_name)
    own_client = client is None
    client = client or client_for(connection)
    try:
        known = set() if connection.pk is None else set(MlflowVersionLink.objects.filter(
            link__connection=connection, link__mlflow_name=mlflow_name, link__deleted_at__isnull=True,
            deleted_at__isnull=True).values_list("mlflow_version", flat=True))
        try:
            remote = fetch_model(client, mlflow_name, known=known, hash_new=not dry_run)
        except MlflowError as exc:
            raise Unavailable(f"MLflow: {exc}", code="mlflow_unavailable", extra={"model": mlflow_name})
        if dry_run:
            return _dry_run(connection, mlflow_name, remote, known, result)
        try:
            with transaction.atomic():
                _apply(connection, remote, mlflow_name, result)
        except ServiceError as exc:
            result.changes.clear()
            result.errors.append(f"{exc.code}: {exc.message}")
            logger.warning("mlflow reconcile of %s/%s refused: %s", connection.name, mlflow_name, exc.code)
    finally:
        if own_client:
            client.close()
    return result


def _dry_run(connection: MlflowConnection, mlflow_name: str, remote: RemoteModel | None, known: set[str],
             result: ReconcileResult) -> ReconcileResult:
    link = None if connection.pk is None else MlflowModelLink.objects.filter(
        connection=connection, mlflow_name=mlflow_name, deleted_at__isnull=True).first()
    if remote is None:
        if link is not None:
            result.changes.append(f"model {mlflow_name}: would record its deletion")
        return result
    if link is None:
        result.changes.append(f"model {mlflow_name}: would link to {governed_name(mlflow_name)}")
    new = sorted(set(remote.versions) - known, key=_version_key)
    if new:
        result.changes.append(f"would import versions {', '.join(new)}")
    gone = sorted(known - set(remote.versions), key=_version_key)
    if gone:
        result.changes.append(f"would record deleted versions {', '.join(gone)}")
    seen_aliases = (link.snapshot or {}).get("aliases", {}) if link else {}
    for alias in sorted(set(seen_aliases) | set(remote.aliases)):
        if seen_aliases.get(alias) != remote.aliases.get(alias):
            result.changes.append(f"would record alias @{alias}: {seen_aliases.get(alias)} -> {remote.aliases.get(alias)}")
    return result


def mlflow_connection_reconcile(*, connection: MlflowConnection, names: list[str] | None = None,
                                client: MlflowClient | None = None, dry_run: bool = False,
                                progress: Callable[[int, int, ReconcileResult], None] | None = None,
                                ) -> list[ReconcileResult]:
    """Reconcile the named models, or every model MLflow lists plus every linked one (deletions)."""
    own_client = client is None
    client = client or client_for(connection)
    try:
        if names:
            targets = list(dict.fromkeys(names))
        else:
            try:
                listed = [str(item.get("name")) for item in client.registered_models()]
            except MlflowError as exc:
                raise Unavailable(f"MLflow: {exc}", code="mlflow_unavailable")
            linked = [] if connection.pk is None else MlflowModelLink.objects.filter(
                connection=connection, deleted_at__isnull=True).values_list("mlflow_name", flat=True)
            if not dry_run:
                renamed = _renames(connection, client, listed=listed, linked=list(linked))
                linked = [renamed.get(name, name) for name in linked]
            targets = list(dict.fromkeys([*listed, *linked]))
        results = []
        for index, name in enumerate(targets, start=1):
            try:
                result = mlflow_model_reconcile(connection=connection, mlflow_name=name, client=client,
                                                dry_run=dry_run)
            except ServiceError as exc:
                result = ReconcileResult(mlflow_name=name, errors=[f"{exc.code}: {exc.message}"])
            results.append(result)
            if progress is not None:
                progress(index, len(targets), result)
        return results
    finally:
        if own_client:
            client.close()


def _renames(connection: MlflowConnection, client: MlflowClient, *, listed: list[str],
             linked: list[str]) -> dict[str, str]:
    """MLflow sends nothing on a rename: a linked model gone and a new one whose versions have the
    same sources is the same model renamed. Moves the link (`mlflow.model_renamed`); {old: new}."""
    gone = sorted(set(linked) - set(listed))
    new = sorted(set(listed) - set(linked))
    if not gone or not new:
        return {}
    sources_of_new = {}
    for name in new:
        try:
            sources_of_new[name] = frozenset(str(v.get("source") or "") for v in client.model_versions(name))
        except MlflowError:
            continue
    renamed: dict[str, str] = {}
    for old_name in gone:
        seen = frozenset(str(item.snapshot.get("source") or "") for item in MlflowVersionLink.objects.filter(
            link__connection=connection, link__mlflow_name=old_name, link__deleted_at__isnull=True,
            deleted_at__isnull=True))
        match = [name for name, sources in sources_of_new.items() if sources and sources == seen
                 and name not in renamed.values()]
        if len(match) != 1 or "" in seen:
            continue
        with transaction.atomic():
            link = lock_for_update(MlflowModelLink.objects).select_related("model").filter(
                connection=connection, mlflow_name=old_name, deleted_at__isnull=True).first()
            if link is None or MlflowModelLink.objects.filter(connection=connection, mlflow_name=match[0],
                                                              deleted_at__isnull=True).exists():
                continue
            link.mlflow_name = match[0]
            link.save(update_fields=["mlflow_name"])
            ledger_append(actor=connection.service_account, action="mlflow.model_renamed", subject=link.model,
                          payload={"connection": connection.name, "from": old_name, "to": match[0]})
        renamed[old_name] = match[0]
    return renamed


def mlflow_version_alias_on_approval(*, version_id: int) -> str | None:
    """After an approval here: set the connection's `alias_on_approval` on the MLflow version, and record it."""
    link = (MlflowVersionLink.objects.select_related("version", "link__connection__service_account")
            .filter(version_id=version_id, deleted_at__isnull=True, link__deleted_at__isnull=True).first())
    if link is None:
        return None
    connection = link.link.connection
    alias = connection.alias_on_approval
    if not alias or not connection.is_active:
        return None
    with client_for(connection) as client:
        current = aliases_dict((client.registered_model(link.link.mlflow_name) or {}).get("aliases"))
        if current.get(alias) == link.mlflow_version:
            return alias
        client.alias_set(link.link.mlflow_name, alias, link.mlflow_version)
    with transaction.atomic():
        ledger_append(actor=connection.service_account, action="mlflow.alias_set_on_approval", subject=link.version,
                      payload={"connection": connection.name, "mlflow_name": link.link.mlflow_name,
                               "mlflow_version": link.mlflow_version, "alias": alias, "previous": current.get(alias)})
    return alias


def mlflow_violation_revert(*, violation_id: int, previous: str | None) -> bool:
    """Move the alias back (to the version it named before, or remove it) and record that; once."""
    violation = (MlflowViolation.objects.select_related("connection__service_account")
                 .filter(pk=violation_id).first())
    if violation is None or violation.reverted_at is not None:
        return False
    connection = violation.connection
    name = violation.mlflow_name
    with client_for(connection) as client:
        current = aliases_dict((client.registered_model(name) or {}).get("aliases"))
        if current.get(violation.alias) != violation.mlflow_version:
            error = f"the alias moved on in MLflow (now {current.get(violation.alias)}); not reverted"
        else:
            error = ""
            if previous:
                client.alias_set(name, violation.alias, previous)
            else:
                client.alias_delete(name, violation.alias)
    with transaction.atomic():
        violation = lock_for_update(MlflowViolation.objects).get(pk=violation_id)
        if violation.reverted_at is not None:
            return False
        violation.revert_error = error
        if not error:
            violation.reverted_at = timezone.now()
        violation.save_recorded(action="mlflow.alias_reverted" if not error else "mlflow.alias_revert_skipped",
                                by=connection.service_account,
                                extra={"alias": violation.alias, "moved_back_to": previous, "reason": error or None})
    return not error
