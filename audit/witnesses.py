"""The log side of C2SP tlog-witness: push checkpoints to the witnesses of the policy file, keep their cosignatures.

Each witness gets only the signed checkpoint (origin, size, root) and a consistency proof from
the size it last cosigned, never entries. Answers are handled as the spec says: 200 (verify and
store the cosignature), 409 with a `text/x.tlog.size` body (retry from that size), 409 without
one or 422 (a fork alarm: tlog-witness v1.0.0 answered a same-size fork with 409, the current
text with 422), 429 (back off; the task retries later), anything else a refusal. A refusal is
the ledger entry `ledger.witness_refused` and an alert (log error and e-mail).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from audit import cosign, ledger
from audit.models import Checkpoint, WitnessCosignature

logger = logging.getLogger(__name__)

SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_CONFLICT_RETRIES = 3
REPUSH_AFTER = timedelta(days=1)


class WitnessUnavailable(Exception):
    """The witness could not answer now (network, 5xx, 429); retry later, after `retry_after_s` if given."""

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Outcome:
    witness: str
    result: str  # cosigned | already | stale | refused
    tree_size: int
    detail: str = ""


_policy_cache: dict[str, tuple[float, cosign.Policy]] = {}


def witness_policy() -> cosign.Policy | None:
    """The policy named by WITNESS_POLICY_FILE (re-read when the file changes), or None when unset."""
    path_text = settings.WITNESS_POLICY_FILE
    if not path_text:
        return None
    path = Path(path_text)
    mtime = path.stat().st_mtime
    cached = _policy_cache.get(path_text)
    if cached is None or cached[0] != mtime:
        cached = (mtime, cosign.parse_policy(path.read_text(encoding="utf-8")))
        _policy_cache[path_text] = cached
    return cached[1]


def _last_cosigned_size(witness: cosign.PolicyWitness) -> int:
    size = (WitnessCosignature.objects.filter(witness_vkey=witness.key.vkey)
            .aggregate(size=Max("checkpoint__tree_size"))["size"])
    return int(size or 0)


def _checkpoint_text(checkpoint: Checkpoint) -> str:
    return checkpoint.note[: checkpoint.note.rfind("\n\n") + 1]


def _store(checkpoint: Checkpoint, witness: cosign.PolicyWitness, response_text: str) -> cosign.Cosignature:
    text = _checkpoint_text(checkpoint)
    found = None
    for line in response_text.splitlines():
        if line.startswith(f"\u2014 {witness.key.name} "):
            try:
                found = cosign.verify_cosignature_line(line, text, witness.key)
                break
            except cosign.CosignatureError:
                continue
    if found is None:
        raise cosign.CosignatureError("the witness answered 200 without a valid cosignature by its key")
    with transaction.atomic():
        WitnessCosignature.objects.get_or_create(line=found.line, defaults={
            "checkpoint": checkpoint, "witness_name": witness.key.name, "witness_vkey": witness.key.vkey,
            "cosigned_at": datetime.fromtimestamp(found.timestamp, tz=UTC), "received_at": timezone.now()})
    return found


def _refuse(checkpoint: Checkpoint, witness: cosign.PolicyWitness, *, status: int | None, reason: str,
            fork: bool, witness_size: int | None = None) -> Outcome:
    payload = {"witness": witness.name, "witness_vkey": witness.key.vkey, "url": witness.url, "status": status,
               "reason": reason[:500], "tree_size": checkpoint.tree_size, "fork": fork, "witness_size": witness_size}
    with transaction.atomic():
        # No checkpoint after this entry: one would be pushed, refused and recorded again at once.
        # The scheduled checkpoint covers it and retries the witness at its own pace.
        ledger.ledger_append_many([ledger.draft(actor="system:witness", action="ledger.witness_refused",
                                                subject=("audit.checkpoint", str(checkpoint.tree_size)),
                                                payload=payload)], checkpoint=False)
        transaction.on_commit(lambda: _alert(payload))
    return Outcome(witness=witness.name, result="refused", tree_size=checkpoint.tree_size, detail=reason)


def _alert(payload: dict[str, object]) -> None:
    kind = "FORK ALARM" if payload["fork"] else "refusal"
    message = (f"Witness {payload['witness']} refused checkpoint @{payload['tree_size']} of {settings.LEDGER_ORIGIN} "
               f"(HTTP {payload['status']}): {payload['reason']}")
    logger.error("witness %s: %s", kind, message)
    if settings.WITNESS_ALERT_EMAILS:
        try:
            send_mail(f"[governance] witness {kind}: {payload['witness']}", message, settings.DEFAULT_FROM_EMAIL,
                      settings.WITNESS_ALERT_EMAILS)
        except Exception:  # noqa: BLE001 - the ledger entry is the record; a mail failure must not undo it
            logger.exception("witness alert e-mail failed")


def checkpoint_witness(*, checkpoint: Checkpoint, witness: cosign.PolicyWitness, client: httpx.Client,
                       force: bool = False) -> Outcome:
    """Obtain `witness`'s cosignature on `checkpoint` (one witness, one checkpoint)."""
    old_size = _last_cosigned_size(witness)
    if old_size > checkpoint.tree_size:
        return Outcome(witness.name, "stale", checkpoint.tree_size, f"witness is at {old_size}")
    fresh = WitnessCosignature.objects.filter(checkpoint=checkpoint, witness_vkey=witness.key.vkey,
                                              cosigned_at__gte=timezone.now() - REPUSH_AFTER).exists()
    if fresh and not force:
        return Outcome(witness.name, "already", checkpoint.tree_size)
    if not witness.url:
        return Outcome(witness.name, "stale", checkpoint.tree_size, "no URL in the policy")
    url = witness.url.rstrip("/") + "/add-checkpoint"
    for _attempt in range(MAX_CONFLICT_RETRIES):
        proof = (ledger.consistency_proof(first_size=old_size, second_size=checkpoint.tree_size)
                 if 0 < old_size < checkpoint.tree_size else [])
        body = cosign.add_checkpoint_body(old_size=old_size, proof=proof, signed_checkpoint=checkpoint.note)
        try:
            response = client.post(url, content=body, headers={"Content-Type": "text/plain; charset=utf-8"})
        except httpx.HTTPError as exc:
            raise WitnessUnavailable(f"{witness.name}: {type(exc).__name__}: {exc}") from exc
        status, text = response.status_code, response.text
        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        if status == 200:
            try:
                _store(checkpoint, witness, text)
            except cosign.CosignatureError as exc:
                return _refuse(checkpoint, witness, status=status, reason=str(exc), fork=False)
            return Outcome(witness.name, "cosigned", checkpoint.tree_size)
        if status == 409 and content_type == SIZE_CONTENT_TYPE and text.strip().isdigit():
            witness_size = int(text.strip())
            if witness_size > checkpoint.tree_size:
                return _refuse(checkpoint, witness, status=status, fork=True, witness_size=witness_size,
                               reason=f"the witness cosigned size {witness_size}, above this checkpoint "
                                      f"({checkpoint.tree_size}): the ledger was rolled back or forked")
            if witness_size == old_size:
                return _refuse(checkpoint, witness, status=status, reason="409 for the size it names",
                               fork=False, witness_size=witness_size)
            old_size = witness_size  # we lost track (e.g. a restored database): prove from its size
            continue
        if status in (409, 422):
            return _refuse(checkpoint, witness, status=status, fork=True, reason=text[:500] or "fork")
        if status == 429 or status >= 500:
            retry_after = response.headers.get("retry-after", "")
            raise WitnessUnavailable(f"{witness.name}: HTTP {status}",
                                     retry_after_s=int(retry_after) if retry_after.isdigit() else None)
        return _refuse(checkpoint, witness, status=status, fork=False, reason=text[:500] or f"HTTP {status}")
    return _refuse(checkpoint, witness, status=409, fork=False, reason="too many 409 answers")


def checkpoint_witness_latest(*, force: bool = False, timeout_s: float | None = None) -> list[Outcome]:
    """Push the latest checkpoint to every witness of the policy; `force` re-pushes a cosigned one (daily)."""
    policy = witness_policy()
    if policy is None or not policy.witnesses:
        return []
    checkpoint = Checkpoint.objects.order_by("-tree_size").first()
    if checkpoint is None:
        return []
    outcomes = []
    unavailable: WitnessUnavailable | None = None
    with httpx.Client(timeout=timeout_s or settings.WITNESS_TIMEOUT_S) as client:
        for witness in policy.witnesses.values():
            try:
                outcomes.append(checkpoint_witness(checkpoint=checkpoint, witness=witness, client=client,
                                                   force=force))
            except WitnessUnavailable as exc:
                logger.warning("witness unavailable: %s", exc)
                unavailable = exc
    if unavailable is not None:
        raise unavailable
    return outcomes


def cosignatures_latest(checkpoint: Checkpoint) -> list[WitnessCosignature]:
    """The stored cosignatures of a checkpoint, the latest per witness, in a stable order (one query)."""
    latest: dict[str, WitnessCosignature] = {}
    for item in WitnessCosignature.objects.filter(checkpoint=checkpoint).order_by("cosigned_at", "pk"):
        latest[item.witness_vkey] = item
    return sorted(latest.values(), key=lambda c: c.witness_vkey)


def cosigned_note(checkpoint: Checkpoint, cosignatures: list[WitnessCosignature] | None = None) -> str:
    """The checkpoint's signed note with its cosignature lines appended."""
    items = cosignatures_latest(checkpoint) if cosignatures is None else cosignatures
    return checkpoint.note + "".join(item.line + "\n" for item in items)


def latest_cosigned_checkpoint(min_tree_size: int = 0) -> Checkpoint | None:
    """The largest checkpoint of at least `min_tree_size` that some witness cosigned."""
    return (Checkpoint.objects.filter(tree_size__gte=min_tree_size, cosignatures__isnull=False)
            .order_by("-tree_size").first())


def checkpoint_to_show(min_tree_size: int) -> Checkpoint | None:
    """The largest cosigned checkpoint of at least `min_tree_size`, else the latest checkpoint (one query)."""
    cosigned = Exists(WitnessCosignature.objects.filter(checkpoint=OuterRef("pk")))
    return (Checkpoint.objects.select_related("key")
            .annotate(cosigned_covering=cosigned & Q(tree_size__gte=min_tree_size))
            .order_by("-cosigned_covering", "-tree_size").first())
