"""The only writer of the ledger: appends (single and batch), checkpoints, and proofs.

An append runs inside the caller's transaction, so a change and its entry commit together
or not at all. It serializes on the chain head: `SELECT ... FOR UPDATE` of the one
`LedgerHead` row on PostgreSQL; on SQLite every write transaction is IMMEDIATE, which takes
the database write lock at BEGIN. Concurrent writers therefore queue; they never read the
same head, so the chain cannot fork and `seq` has no gaps.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from audit import jcs, merkle, note
from audit.errors import InvalidInput, NotFound, Unavailable
from audit.keys import active_key
from audit.models import Checkpoint, LedgerEntry, LedgerHead, MerkleNode, SigningKey, node_key

logger = logging.getLogger(__name__)

ZERO_HASH = bytes(32)
HASH_SIZE = 32


@dataclass(frozen=True)
class EntryDraft:
    """What a caller wants recorded; `seq`, time and hashes are assigned at append."""

    actor: str
    action: str
    subject_type: str
    subject_id: str
    payload: Any = field(default_factory=dict)


def actor_label(actor: Any) -> str:
    """`user:<username>` for users, the string itself for `system:<task>` and `service:<name>`."""
    if isinstance(actor, str):
        label = actor
    elif hasattr(actor, "ledger_actor_label"):
        label = actor.ledger_actor_label()
    elif hasattr(actor, "get_username") and getattr(actor, "is_authenticated", False):
        label = f"user:{actor.get_username()}"
    else:
        label = ""
    if not label:
        raise InvalidInput("A ledger entry needs an actor.", code="ledger_actor_missing")
    return label


def subject_ref(subject: Any) -> tuple[str, str]:
    """(type, id) of a model instance (`app_label.model_name`, pk) or of an explicit pair."""
    if isinstance(subject, models.Model):
        meta = subject._meta
        return f"{meta.app_label}.{meta.model_name}", str(subject.pk)
    subject_type, subject_id = subject
    return str(subject_type), str(subject_id)


def draft(*, actor: Any, action: str, subject: Any, payload: Any = None) -> EntryDraft:
    subject_type, subject_id = subject_ref(subject)
    return EntryDraft(actor=actor_label(actor), action=action, subject_type=subject_type,
                      subject_id=subject_id, payload={} if payload is None else payload)


def format_time(moment: datetime) -> str:
    """UTC, microseconds, `Z`: one spelling, so the canonical bytes are reproducible."""
    return moment.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_ready(payload: Any) -> Any:
    # Dates, decimals and UUIDs become strings, the way Django serializes them.
    return json.loads(json.dumps(payload, cls=DjangoJSONEncoder))


def entry_document(*, seq: int, recorded_at: str, actor: str, action: str, subject_type: str,
                   subject_id: str, payload: Any, prev_hash: bytes) -> dict[str, Any]:
    """The fields that are hashed: everything but `entry_hash`."""
    return {
        "seq": seq,
        "recorded_at": recorded_at,
        "actor": actor,
        "action": action,
        "subject": {"type": subject_type, "id": subject_id},
        "payload": payload,
        "prev_hash": prev_hash.hex(),
    }


def _frontier_from_head(head: LedgerHead) -> list[tuple[int, bytes]]:
    raw = bytes(head.frontier)
    levels = [bit for bit in range(head.tree_size.bit_length() - 1, -1, -1) if head.tree_size >> bit & 1]
    return [(level, raw[i * HASH_SIZE:(i + 1) * HASH_SIZE]) for i, level in enumerate(levels)]


def _lock_head() -> LedgerHead:
    head = LedgerHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        # Created by the migration; recreate only if someone removed it (first append wins).
        LedgerHead.objects.get_or_create(pk=1)
        head = LedgerHead.objects.select_for_update().get(pk=1)
    return head


def ledger_append(*, actor: Any, action: str, subject: Any, payload: Any = None) -> LedgerEntry:
    """Append one entry inside the caller's transaction and return it."""
    return ledger_append_many([draft(actor=actor, action=action, subject=subject, payload=payload)],
                              checkpoint=False)[0]


def ledger_append_many(drafts: Sequence[EntryDraft], *, checkpoint: bool = True) -> list[LedgerEntry]:
    """Append many entries in one transaction (all or none); a checkpoint follows the commit."""
    if not drafts:
        return []
    with transaction.atomic():
        head = _lock_head()
        frontier = _frontier_from_head(head)
        prev_hash = bytes(head.head_hash)
        seq = head.tree_size
        now = timezone.now()
        recorded_at = format_time(now)
        entries: list[LedgerEntry] = []
        nodes: list[MerkleNode] = []
        for item in drafts:
            if not item.actor:
                raise InvalidInput("A ledger entry needs an actor.", code="ledger_actor_missing")
            payload = item.payload
            document = entry_document(seq=seq, recorded_at=recorded_at, actor=item.actor, action=item.action,
                                      subject_type=item.subject_type, subject_id=item.subject_id,
                                      payload=payload, prev_hash=prev_hash)
            try:
                canonical = jcs.canonicalize(document)
            except jcs.CanonicalizationError:
                document["payload"] = _json_ready(payload)
                canonical = jcs.canonicalize(document)
            entry_hash = hashlib.sha256(canonical).digest()
            leaf = merkle.leaf_hash(canonical)
            frontier, completed = merkle.frontier_append(frontier, leaf, seq)
            nodes.extend(MerkleNode(node_id=node_key(level, index), hash=node) for level, index, node in completed)
            entries.append(LedgerEntry(
                seq=seq, recorded_at=now, actor=item.actor, action=item.action,
                subject_type=item.subject_type, subject_id=item.subject_id, canonical=canonical,
                prev_hash=prev_hash, entry_hash=entry_hash, leaf_hash=leaf,
            ))
            prev_hash = entry_hash
            seq += 1
        LedgerEntry.objects.bulk_create(entries, batch_size=2000)
        if nodes:
            MerkleNode.objects.bulk_create(nodes, batch_size=2000)
        LedgerHead.objects.filter(pk=1).update(
            tree_size=seq, head_hash=prev_hash, frontier=b"".join(node for _, node in frontier))
        if checkpoint:
            transaction.on_commit(_checkpoint_after_commit)
    return entries


def _checkpoint_after_commit() -> None:
    try:
        checkpoint_create()
    except Unavailable as exc:
        # Writes must not fail because the signing key is absent; the scheduled job retries.
        logger.warning("checkpoint after batch skipped: %s", exc.code)


def checkpoint_create() -> Checkpoint:
    """Sign the current tree head as a C2SP checkpoint, or return the one already made for it."""
    key = active_key(SigningKey.Purpose.CHECKPOINT)
    with transaction.atomic():
        head = _lock_head()
        existing = Checkpoint.objects.filter(tree_size=head.tree_size).first()
        if existing is not None:
            return existing
        root = merkle.frontier_root(_frontier_from_head(head))
        body = note.checkpoint_body(settings.LEDGER_ORIGIN, head.tree_size, root)
        signed = note.sign_note(body, name=key.record.name, private_key=key.private_key)
        return Checkpoint.objects.create(tree_size=head.tree_size, root_hash=root, note=signed,
                                         key=key.record, created_at=timezone.now())


# --- Proofs ----------------------------------------------------------------------------------

def current_tree_size() -> int:
    head = LedgerHead.objects.filter(pk=1).values_list("tree_size", flat=True).first()
    return int(head or 0)


def _lookup_nodes(wanted: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Fetch complete-subtree hashes: leaves from the entries, higher levels from the node table."""
    found: dict[tuple[int, int], bytes] = {}
    leaf_indices = [index for level, index in wanted if level == 0]
    keys = {node_key(level, index): (level, index) for level, index in wanted if level > 0}
    if leaf_indices:
        for seq, leaf in LedgerEntry.objects.filter(seq__in=leaf_indices).values_list("seq", "leaf_hash"):
            found[(0, seq)] = bytes(leaf)
    if keys:
        for key, node in MerkleNode.objects.filter(node_id__in=list(keys)).values_list("node_id", "hash"):
            found[keys[key]] = bytes(node)
    return found


def root_at(tree_size: int) -> bytes:
    """The Merkle root of the first `tree_size` entries, from stored complete subtrees."""
    if tree_size == 0:
        return merkle.root_hash([])
    subtrees = merkle.complete_subtrees(0, tree_size)
    found = _lookup_nodes(subtrees)
    try:
        return merkle.fold_subtrees([found[subtree] for subtree in subtrees])
    except KeyError as exc:
        raise NotFound("The ledger has no such tree.", code="tree_size_unknown") from exc


def inclusion_proof(*, leaf_index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 inclusion proof for entry `leaf_index` in the tree of size `tree_size`."""
    size_now = current_tree_size()
    if tree_size > size_now:
        raise InvalidInput(f"tree_size {tree_size} exceeds the ledger size {size_now}.",
                           code="tree_size_too_large", extra={"tree_size": tree_size, "ledger_size": size_now})
    if not 0 <= leaf_index < tree_size:
        raise InvalidInput(f"Entry {leaf_index} is not in a tree of size {tree_size}.",
                           code="leaf_index_out_of_range", extra={"leaf_index": leaf_index, "tree_size": tree_size})
    return merkle.build_proof(merkle.inclusion_proof_ranges(leaf_index, tree_size), _lookup_nodes)


def consistency_proof(*, first_size: int, second_size: int) -> list[bytes]:
    """RFC 9162 consistency proof between two tree sizes of this ledger."""
    size_now = current_tree_size()
    if second_size > size_now:
        raise InvalidInput(f"second {second_size} exceeds the ledger size {size_now}.",
                           code="tree_size_too_large", extra={"second": second_size, "ledger_size": size_now})
    if not 0 < first_size <= second_size:
        raise InvalidInput("first must be at least 1 and at most second.", code="invalid_tree_sizes",
                           extra={"first": first_size, "second": second_size})
    return merkle.build_proof(merkle.consistency_proof_ranges(first_size, second_size), _lookup_nodes)


def entries_for_subjects(subjects: Iterable[tuple[str, str]]) -> list[LedgerEntry]:
    """Every entry about any of the given (type, id) subjects, in ledger order."""
    query = models.Q(pk__in=[])
    for subject_type, subject_id in subjects:
        query |= models.Q(subject_type=subject_type, subject_id=subject_id)
    return list(LedgerEntry.objects.filter(query).order_by("seq"))
