"""Ledger tables. Entries, Merkle nodes and checkpoints are append-only, enforced by triggers.

Only `audit.ledger` writes these tables (and `audit.keys` for signing keys). The chain head
(`LedgerHead`) is a cache that makes appends O(1); verification never trusts it.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.utils.functional import cached_property

# A complete Merkle subtree (level, index) is stored under one integer key, so a proof's
# nodes are fetched with one `IN` query on the primary key.
NODE_LEVEL_SHIFT = 56


def node_key(level: int, index: int) -> int:
    return (level << NODE_LEVEL_SHIFT) | index


class LedgerEntry(models.Model):
    """One entry. `canonical` holds the exact RFC 8785 bytes that are hashed and are the Merkle leaf."""

    seq = models.BigIntegerField(primary_key=True)
    recorded_at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=100)
    subject_type = models.CharField(max_length=100)
    subject_id = models.CharField(max_length=200)
    canonical = models.BinaryField()
    prev_hash = models.BinaryField(max_length=32)
    entry_hash = models.BinaryField(max_length=32)
    leaf_hash = models.BinaryField(max_length=32)

    class Meta:
        ordering = ["seq"]
        # One index per filtered column, each written by every append (audit/0010): actor is
        # filtered by equality; action by equality, IN and prefix (`action__startswith`), which one
        # pattern_ops index serves alone on PostgreSQL (its = is the column's; other engines ignore
        # the opclass).
        indexes = [models.Index(fields=["subject_type", "subject_id", "seq"], name="ledger_subject_idx"),
                   models.Index(fields=["actor"], name="ledger_actor_idx"),
                   models.Index(fields=["action"], name="ledger_action_idx", opclasses=["varchar_pattern_ops"])]
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.subject_type}:{self.subject_id}"

    @cached_property
    def document(self) -> dict[str, Any]:
        """The entry as it was hashed (parsed from the canonical bytes, never from the columns)."""
        return json.loads(bytes(self.canonical))

    @property
    def payload(self) -> Any:
        return self.document["payload"]

    @property
    def subject_prev(self) -> int | None:
        """The seq of the previous entry about this subject (None for the first, and for
        entries from before the cut-over, which lack the field)."""
        value = self.document.get("subject_prev")
        return value if isinstance(value, int) else None


class MerkleNode(models.Model):
    """Hash of a complete subtree of level >= 1; leaves (level 0) live on `LedgerEntry.leaf_hash`."""

    node_id = models.BigIntegerField(primary_key=True)
    hash = models.BinaryField(max_length=32)

    class Meta:
        verbose_name = "Merkle node"

    def __str__(self) -> str:
        return f"node level {self.level} index {self.index}"

    @property
    def level(self) -> int:
        return self.node_id >> NODE_LEVEL_SHIFT

    @property
    def index(self) -> int:
        return self.node_id & ((1 << NODE_LEVEL_SHIFT) - 1)


class LedgerHead(models.Model):
    """The single row that appends lock; holds the tree size, last entry hash and Merkle frontier."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    tree_size = models.BigIntegerField(default=0)
    head_hash = models.BinaryField(max_length=32, default=bytes(32))
    # Concatenated 32-byte hashes of the complete subtrees covering the tree, largest first;
    # their levels follow from the binary digits of tree_size.
    frontier = models.BinaryField(default=b"")
    # The cut-over: every entry from this seq on names the previous entry about its subject
    # (`subject_prev` in its canonical bytes); entries before it, written by older code, lack it.
    # A ledger started by this code has 0; migration audit/0005 set it to the size of an older one.
    subject_prev_from = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        verbose_name = "ledger head"

    def __str__(self) -> str:
        return f"ledger head @{self.tree_size}"


class SigningKey(models.Model):
    """A public key the server signs with. The private half lives only in a file."""

    class Purpose(models.TextChoices):
        CHECKPOINT = "checkpoint", "Ledger checkpoints"
        ATTESTATION = "attestation", "Attestations and bundle manifests"

    name = models.CharField(max_length=200)
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    algorithm = models.CharField(max_length=20, default="ed25519")
    public_key = models.BinaryField(max_length=32, unique=True)
    key_id = models.CharField(max_length=8, help_text="C2SP signed-note key id, hex")
    dsse_keyid = models.CharField(max_length=64, help_text="DSSE keyid: hex SHA-256 of the public key")
    vkey = models.CharField(max_length=300)
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["valid_from"]
        indexes = [models.Index(fields=["key_id"], name="signingkey_keyid_idx")]

    def __str__(self) -> str:
        return self.vkey


class Checkpoint(models.Model):
    """A signed C2SP checkpoint over the first `tree_size` entries."""

    tree_size = models.BigIntegerField(unique=True)
    root_hash = models.BinaryField(max_length=32)
    note = models.TextField(help_text="The signed note, exactly as published")
    key = models.ForeignKey(SigningKey, on_delete=models.PROTECT, related_name="checkpoints")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["tree_size"]
        get_latest_by = "tree_size"

    def __str__(self) -> str:
        return f"checkpoint @{self.tree_size}"


class WitnessCosignature(models.Model):
    """A witness's cosignature/v1 line on one of our checkpoints, exactly as it came; append-only.

    Storing one writes no ledger entry: an entry would make a new checkpoint that is pushed to
    the witnesses again, forever. A cosignature needs none: it verifies on its own.
    """

    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="cosignatures")
    witness_name = models.CharField(max_length=200, help_text="the witness key name")
    witness_vkey = models.CharField(max_length=300, db_index=True)
    cosigned_at = models.DateTimeField(help_text="the time inside the cosignature")
    line = models.TextField(unique=True, help_text="the signature line, without its newline")
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["checkpoint__tree_size", "cosigned_at"]

    def __str__(self) -> str:
        return f"cosignature by {self.witness_name} @{self.checkpoint.tree_size}"
class CheckpointTimestamp(models.Model):
    """An RFC 3161 time-stamp token over a checkpoint's signed note (append-only, like the ledger).

    `token` is the DER TimeStampToken exactly as the TSA returned it; its message imprint is
    SHA-256 of `checkpoint.note`. The other columns are read from the token for queries.
    """

    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="timestamps")
    token = models.BinaryField()
    token_sha256 = models.CharField(max_length=64, unique=True)
    gen_time = models.DateTimeField()
    serial_number = models.CharField(max_length=100)
    policy = models.CharField(max_length=200)
    tsa_url = models.CharField(max_length=500)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["checkpoint__tree_size", "gen_time"]
        verbose_name = "checkpoint timestamp"

    def __str__(self) -> str:
        return f"timestamp of checkpoint @{self.checkpoint.tree_size} at {self.gen_time:%Y-%m-%dT%H:%M:%SZ}"
