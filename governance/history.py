"""Per-object history from the ledger, with each entry checked on the spot.

For every entry about a subject: the entry hash and leaf hash are recomputed from the stored
canonical bytes, and the entry's RFC 9162 inclusion proof is checked against the latest signed
checkpoint (whose signature is verified with the published keys). The admin shows the result
next to each entry, so a reviewer sees at once whether the history they read is the one the
log committed to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from audit import ledger, merkle, note
from audit.keys import verifiers
from audit.models import Checkpoint, LedgerEntry
from core.errors import ServiceError


@dataclass
class VerifiedEntry:
    entry: LedgerEntry
    hash_ok: bool
    included: bool | None  # None: newer than the latest checkpoint
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.hash_ok and self.included is not False

    @property
    def payload(self) -> Any:
        return self.entry.payload


@dataclass
class History:
    entries: list[VerifiedEntry]
    checkpoint: Checkpoint | None
    checkpoint_ok: bool
    checkpoint_problem: str = ""

    @property
    def all_ok(self) -> bool:
        return self.checkpoint_ok and all(item.ok for item in self.entries)


def _checked_root(checkpoint: Checkpoint) -> bytes:
    """The root the signed note commits to; raises NoteError if the signature or body is bad."""
    body, _ = note.open_note(checkpoint.note, verifiers())
    parsed = note.parse_checkpoint(body)
    if parsed.tree_size != checkpoint.tree_size:
        raise note.NoteError("the signed tree size differs from the stored one")
    return parsed.root_hash


def verify_entry(entry: LedgerEntry, *, checkpoint: Checkpoint | None, root: bytes | None,
                 checkpoint_problem: str = "") -> VerifiedEntry:
    """Recompute the entry's hashes from its bytes and check its inclusion under `root` (the checkpoint's)."""
    canonical = bytes(entry.canonical)
    problems: list[str] = []
    hash_ok = hashlib.sha256(canonical).digest() == bytes(entry.entry_hash)
    if not hash_ok:
        problems.append("entry hash does not match its bytes")
    if merkle.leaf_hash(canonical) != bytes(entry.leaf_hash):
        hash_ok = False
        problems.append("leaf hash does not match its bytes")
    included: bool | None = None
    if checkpoint is not None and entry.seq < checkpoint.tree_size:
        if root is None:
            included = False
            problems.append(checkpoint_problem)
        else:
            try:
                proof = ledger.inclusion_proof(leaf_index=entry.seq, tree_size=checkpoint.tree_size)
                merkle.verify_inclusion(merkle.leaf_hash(canonical), entry.seq, checkpoint.tree_size, proof, root)
                included = True
            except (merkle.ProofError, KeyError, ServiceError) as exc:
                included = False
                problems.append(f"not included in checkpoint @{checkpoint.tree_size}: {exc}")
    return VerifiedEntry(entry=entry, hash_ok=hash_ok, included=included, problems=problems)


def subject_history(subject_type: str, subject_id: str) -> History:
    """Every entry about one subject, each verified against the latest checkpoint."""
    checkpoint = Checkpoint.objects.order_by("-tree_size").first()
    root: bytes | None = None
    checkpoint_ok, checkpoint_problem = True, ""
    if checkpoint is not None:
        try:
            root = _checked_root(checkpoint)
        except note.NoteError as exc:
            checkpoint_ok, checkpoint_problem = False, f"checkpoint signature does not verify: {exc}"
    items = [verify_entry(entry, checkpoint=checkpoint, root=root, checkpoint_problem=checkpoint_problem)
             for entry in ledger.entries_for_subjects([(subject_type, str(subject_id))])]
    return History(entries=items, checkpoint=checkpoint, checkpoint_ok=checkpoint_ok,
                   checkpoint_problem=checkpoint_problem)
