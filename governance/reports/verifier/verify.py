#!/usr/bin/env python3
"""Offline verifier for a governance audit bundle (zip). Stand-alone: Python 3.9+ and `cryptography` (3.1+).

    python verify.py BUNDLE.zip --trusted-key VKEY_OR_FILE [--trusted-key ...]

Prints its own SHA-256 first (`verify.py sha256 <hex>`: compare it with the one the service
publishes). Exits 0 when every check holds against the pinned keys; 1 naming the failure (and
every approval that did not meet its policy); 3 when every check holds but nothing was pinned,
so the bundle is only consistent with itself. Take this file from the service (`/verify.py`) or
its repository, never from a bundle. This file deliberately imports nothing from the service that produced the bundle: it
re-implements, from the public specifications, everything it checks:

- RFC 9162 §2.1 Merkle tree hashing, inclusion proofs (§2.1.3.2), consistency proofs (§2.1.4.2);
- C2SP signed notes (https://c2sp.org/signed-note) with Ed25519, verifier keys ("vkeys"),
  and C2SP tlog-checkpoint bodies (https://c2sp.org/tlog-checkpoint);
- DSSE v1 envelopes and their pre-authentication encoding (https://github.com/secure-systems-lab/dsse).

See VERIFY.md (in the bundle, and next to this file in the repository) for what each check means and how to repeat it with
standard tools.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import hashlib
import json
import math
import posixpath
import re
import struct
import sys
import time
import unicodedata
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # pragma: no cover - the one dependency
    sys.stderr.write("verify.py needs the `cryptography` package: pip install cryptography\n")
    sys.exit(2)

BUNDLE_FORMAT = "governance-bundle/v1"
MANIFEST = "manifest.json"
MANIFEST_ENVELOPE = "manifest.dsse.json"
MANIFEST_PAYLOAD_TYPE = "application/vnd.governance.bundle-manifest+json"

# Zip-bomb and abuse limits: generous for real bundles, small enough to stop a hostile file.
MAX_MEMBERS = 200_000
MAX_MEMBER_BYTES = 4 * 1024**3
MAX_TOTAL_BYTES = 16 * 1024**3
MAX_COMPRESSION_RATIO = 200
RATIO_CHECK_MIN_BYTES = 1024 * 1024
MAX_PATH_CHARS = 512

HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)
EMPTY_ROOT = hashlib.sha256(b"").digest()
SIGNATURE_TYPE_ED25519 = 0x01
NOTE_SIGNATURE_PREFIX = "\u2014 "
_STD_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}\Z")
_URLSAFE_BASE64 = re.compile(r"[A-Za-z0-9_-]*={0,2}\Z")
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}\Z")


class VerificationError(Exception):
    """The first check that failed: `check` names it, the message says what is wrong."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message


def fail(check: str, message: str) -> VerificationError:
    return VerificationError(check, message)


# --- Encodings -----------------------------------------------------------------------------

def b64decode_strict(text: Any, what: str) -> bytes:
    """Padded standard base64, canonical spelling only (one encoding per byte string)."""
    if not isinstance(text, str) or not _STD_BASE64.match(text):
        raise fail("encoding", f"{what} is not standard base64")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise fail("encoding", f"{what} is not standard base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise fail("encoding", f"{what} is not canonical base64")
    return raw


def b64decode_dsse(text: Any, what: str) -> bytes:
    """DSSE allows standard or URL-safe base64, padded or not; the spelling must still be canonical."""
    if not isinstance(text, str):
        raise fail("dsse", f"{what} is not a base64 string")
    if _STD_BASE64.match(text):
        std = text
    elif _URLSAFE_BASE64.match(text):
        std = text.replace("-", "+").replace("_", "/")
    else:
        raise fail("dsse", f"{what} is not base64")
    bare = std.rstrip("=")
    try:
        raw = base64.b64decode(bare + "=" * (-len(bare) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise fail("dsse", f"{what} is not base64") from None
    canonical = base64.b64encode(raw).decode("ascii")
    if std not in (canonical, canonical.rstrip("=")):
        raise fail("dsse", f"{what} is not canonical base64")
    return raw


def b64decode_fast(text: Any, what: str) -> bytes:
    """Same contract as b64decode_strict (canonical padded standard base64), in two C calls."""
    if not isinstance(text, str):
        raise fail("encoding", f"{what} is not a base64 string")
    try:
        raw = binascii.a2b_base64(text)
    except (binascii.Error, ValueError):
        raise fail("encoding", f"{what} is not standard base64") from None
    # a2b_base64 skips stray characters; the canonical re-encoding must give back the very text.
    if binascii.b2a_base64(raw, newline=False).decode("ascii") != text:
        raise fail("encoding", f"{what} is not canonical standard base64")
    return raw


_ENTRY_LINE = re.compile(rb'\{"seq":(0|[1-9][0-9]{0,18}),"canonical":"([A-Za-z0-9+/]*={0,2})",'
                         rb'"entry_hash":"([0-9a-f]{64})"\}\Z')


def _parse_entry_line(line: bytes, line_number: int) -> tuple[int, str, str]:
    """(seq, canonical base64, entry_hash hex) of one line of entries.jsonl.

    Lines in the exporter's exact spelling are read with one regular expression; anything else
    goes through the JSON parser, with the same result for the same JSON value.
    """
    match = _ENTRY_LINE.match(line)
    if match is not None:
        return int(match.group(1)), match.group(2).decode("ascii"), match.group(3).decode("ascii")
    where = f"ledger/entries.jsonl line {line_number}"
    try:
        record = json.loads(line.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise fail("entries", f"{where} is not JSON") from None
    if not isinstance(record, dict) or set(record) != {"seq", "canonical", "entry_hash"}:
        raise fail("entries", f"{where} must have exactly seq, canonical and entry_hash")
    seq, canonical, entry_hash = record["seq"], record["canonical"], record["entry_hash"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise fail("entries", f"{where}: seq is not a non-negative integer")
    if not isinstance(canonical, str):
        raise fail("entries", f"{where}: canonical is not a base64 string")
    if not isinstance(entry_hash, str) or not _HEX64.match(entry_hash):
        raise fail("entries", f"{where}: entry_hash is not 64 lowercase hex digits")
    return seq, canonical, entry_hash


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate JSON member {key!r}")
        result[key] = value
    return result


def load_json(data: bytes, what: str, check: str) -> Any:
    """Strict JSON: UTF-8, no duplicate members (two parsers must not read two different documents)."""
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise fail(check, f"{what} is not valid JSON: {exc}") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- RFC 9162 Merkle trees -----------------------------------------------------------------

def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(leaf: bytes, leaf_index: int, tree_size: int, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root that `proof` implies for `leaf` at `leaf_index`; raises ValueError."""
    if not 0 <= leaf_index < tree_size:
        raise ValueError(f"leaf index {leaf_index} is outside a tree of size {tree_size}")
    if len(leaf) != HASH_SIZE:
        raise ValueError("the leaf hash is not 32 bytes")
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in proof:
        if len(p) != HASH_SIZE:
            raise ValueError("a proof element is not 32 bytes")
        if sn == 0:
            raise ValueError("the proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("the proof is shorter than the path to the root")
    return r


class InclusionVerifier:
    """Checks many RFC 9162 inclusion proofs against one root, sharing work between them.

    Proofs of neighbouring leaves meet at a common ancestor and continue with the same siblings.
    Once a proof has been checked all the way to the root, every state it passed through (the
    node position and its computed hash) is remembered with the rest of its path; a later proof
    that reaches the same state with the same remaining path must reach the same root, so it
    stops there. The result is exactly that of checking each proof in full.
    """

    def __init__(self, tree_size: int, root: bytes) -> None:
        self.tree_size = tree_size
        self.root = root
        self.proven: dict[tuple[int, int, bytes], list[Any]] = {}

    def verify(self, leaf: bytes, leaf_index: int, proof: list[Any], decode: Any = None) -> None:
        """Raise ValueError unless `proof` leads from `leaf` at `leaf_index` to the root.

        `proof` holds the sibling hashes, or their encodings with `decode` turning one into bytes:
        elements are decoded only when they are used, and compared in their encoded form when a
        proven path is reused (decoding is a function, so equal encodings mean equal hashes).
        """
        if not 0 <= leaf_index < self.tree_size:
            raise ValueError(f"leaf index {leaf_index} is outside a tree of size {self.tree_size}")
        if len(leaf) != HASH_SIZE:
            raise ValueError("the leaf hash is not 32 bytes")
        fn, sn, r = leaf_index, self.tree_size - 1, leaf
        proven = self.proven
        visited: list[tuple[tuple[int, int, bytes], int]] = []
        for position, p in enumerate(proof):
            state = (fn, sn, r)
            known = proven.get(state)
            if known is not None and known == proof[position:]:
                break
            if position:
                visited.append((state, position))
            if decode is not None:
                p = decode(p)
            if not isinstance(p, bytes) or len(p) != HASH_SIZE:
                raise ValueError("a proof element is not 32 bytes")
            if sn == 0:
                raise ValueError("the proof is longer than the path to the root")
            if fn & 1 or fn == sn:
                r = node_hash(p, r)
                if not fn & 1:
                    while fn and not fn & 1:
                        fn >>= 1
                        sn >>= 1
            else:
                r = node_hash(r, p)
            fn >>= 1
            sn >>= 1
        else:
            if sn != 0:
                raise ValueError("the proof is shorter than the path to the root")
            if r != self.root:
                raise ValueError("the inclusion proof does not lead to the checkpoint's root")
        for state, position in visited:
            proven[state] = proof[position:]


def verify_consistency(first_size: int, second_size: int, proof: Sequence[bytes],
                       first_root: bytes, second_root: bytes) -> None:
    """RFC 9162 §2.1.4.2; raises ValueError unless tree `first_size` is a prefix of tree `second_size`."""
    if not 0 <= first_size <= second_size:
        raise ValueError(f"tree sizes {first_size} and {second_size} are not in order")
    if first_size == 0 and first_root != EMPTY_ROOT:
        raise ValueError("the empty tree's root must be SHA-256 of no bytes")
    if first_size == second_size:
        if proof:
            raise ValueError("a proof between equal tree sizes must be empty")
        if first_root != second_root:
            raise ValueError("equal tree sizes with different roots")
        return
    if len(first_root) != HASH_SIZE or len(second_root) != HASH_SIZE:
        raise ValueError("a root hash is not 32 bytes")
    if first_size == 0:
        if proof:
            raise ValueError("a proof from the empty tree must be empty")
        return
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        raise ValueError("the proof is empty or has an element that is not 32 bytes")
    path = list(proof)
    if first_size & (first_size - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first_size - 1, second_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ValueError("the proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("the proof is shorter than needed")
    if fr != first_root:
        raise ValueError("the proof does not lead to the first root")
    if sr != second_root:
        raise ValueError("the proof does not lead to the second root")


# --- Keys ----------------------------------------------------------------------------------

def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def note_key_id(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note key id: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([SIGNATURE_TYPE_ED25519]) + public_key).digest()[:4]


def dsse_keyid(public_key: bytes) -> str:
    """The keyid this service puts in DSSE signatures: hex SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(public_key).hexdigest()


def _check_key_name(name: str) -> None:
    if not name or "+" in name or any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in name):
        raise ValueError(f"key name {name!r} is not allowed")


class PublicKey:
    """An Ed25519 public key, with its signed-note name if it came as a vkey."""

    def __init__(self, raw: bytes, name: str | None = None, source: str = "") -> None:
        if len(raw) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        self.raw = raw
        self.name = name
        self.source = source
        self.key = Ed25519PublicKey.from_public_bytes(raw)
        self.dsse_keyid = dsse_keyid(raw)
        self.note_key_id = note_key_id(name, raw) if name is not None else None

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self.key.verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def label(self) -> str:
        if self.name is not None and self.note_key_id is not None:
            return f"{self.name}+{self.note_key_id.hex()}"
        return f"dsse:{self.dsse_keyid[:16]}"


def parse_vkey(text: str, source: str = "") -> PublicKey:
    """`<name>+<8 hex key id>+<base64(0x01 || 32-byte key)>`; the key id must match name and key."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise ValueError("a vkey is <name>+<key id>+<key>")
    name, key_hex, key_b64 = parts
    _check_key_name(name)
    if not _HEX8.match(key_hex):
        raise ValueError("a vkey's key id is 8 hex digits")
    try:
        material = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a vkey's key is not base64") from None
    if len(material) != 33 or material[0] != SIGNATURE_TYPE_ED25519:
        raise ValueError("a vkey's key is not an Ed25519 key")
    key = PublicKey(material[1:], name=name, source=source)
    if key.note_key_id != bytes.fromhex(key_hex):
        raise ValueError("a vkey's key id does not match its name and key")
    return key


def parse_pem(data: bytes, source: str = "") -> PublicKey:
    try:
        loaded = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError(f"not a PEM public key: {exc}") from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError("the PEM key is not Ed25519")
    return PublicKey(raw_public_key(loaded), source=source)


# --- C2SP signed notes and checkpoints ------------------------------------------------------

class SignedNote:
    def __init__(self, text: str, signatures: list[tuple[str, bytes, bytes]]) -> None:
        self.text = text
        self.signatures = signatures  # (key name, 4-byte key id, signature)


def parse_note(note: str) -> SignedNote:
    if any(unicodedata.category(ch) == "Cc" and ch != "\n" for ch in note):
        raise ValueError("the note contains control characters")
    split = note.rfind("\n\n")
    if split < 0:
        raise ValueError("the note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2:]
    if not block.endswith("\n"):
        raise ValueError("the note does not end with a signature line")
    signatures = []
    for line in block[:-1].split("\n"):
        if not line.startswith(NOTE_SIGNATURE_PREFIX):
            raise ValueError(f"not a signature line: {line!r}")
        name, _, sig_b64 = line[len(NOTE_SIGNATURE_PREFIX):].partition(" ")
        _check_key_name(name)
        try:
            raw = base64.b64decode(sig_b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"the signature by {name!r} is not base64") from None
        if len(raw) <= 4:
            raise ValueError(f"the signature by {name!r} is too short")
        signatures.append((name, raw[:4], raw[4:]))
    return SignedNote(text, signatures)


def open_note(note: str, keys: Iterable[PublicKey]) -> tuple[str, list[PublicKey]]:
    """The note text and the known keys that signed it; every signature by a known key must verify."""
    parsed = parse_note(note)
    known = {(k.name, k.note_key_id): k for k in keys if k.name is not None}
    signers: list[PublicKey] = []
    message = parsed.text.encode("utf-8")
    for name, key_id, signature in parsed.signatures:
        key = known.get((name, key_id))
        if key is None:
            continue  # signatures by unknown keys are ignored, as the spec says
        if not key.verify(signature, message):
            raise ValueError(f"the signature by {key.label()} does not verify")
        if key not in signers:
            signers.append(key)
    if not signers:
        names = ", ".join(f"{name}+{key_id.hex()}" for name, key_id, _ in parsed.signatures)
        raise ValueError(f"no signature by a known key (signed by: {names or 'nobody'})")
    return parsed.text, signers


class CheckpointBody:
    def __init__(self, origin: str, tree_size: int, root_hash: bytes) -> None:
        self.origin = origin
        self.tree_size = tree_size
        self.root_hash = root_hash


def parse_checkpoint_body(text: str) -> CheckpointBody:
    if not text.endswith("\n"):
        raise ValueError("a checkpoint ends with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise ValueError("a checkpoint has origin, tree size and root hash lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not origin:
        raise ValueError("the checkpoint origin is empty")
    if not _DECIMAL.match(size_text) or int(size_text) >= 2**64:
        raise ValueError(f"the checkpoint tree size {size_text!r} is not a canonical decimal")
    root = b64decode_strict(root_text, "checkpoint root hash")
    if len(root) != HASH_SIZE:
        raise ValueError("the checkpoint root hash is not 32 bytes")
    if any(not line for line in lines[3:]):
        raise ValueError("a checkpoint extension line is empty")
    return CheckpointBody(origin, int(size_text), root)


# --- DSSE ----------------------------------------------------------------------------------

def pae(payload_type: str, payload: bytes) -> bytes:
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def verify_dsse(envelope_bytes: bytes, keys: Sequence[PublicKey], what: str) -> tuple[str, bytes, list[PublicKey]]:
    """(payloadType, payload, signers): at least one signature by a known key, and none by a known key fails."""
    envelope = load_json(envelope_bytes, what, "dsse")
    if not isinstance(envelope, dict):
        raise fail("dsse", f"{what} is not a JSON object")
    payload_type = envelope.get("payloadType")
    signatures = envelope.get("signatures")
    if not isinstance(payload_type, str):
        raise fail("dsse", f"{what}: payloadType is not a string")
    payload = b64decode_dsse(envelope.get("payload"), f"{what} payload")
    if not isinstance(signatures, list) or not signatures:
        raise fail("dsse", f"{what} has no signatures")
    by_keyid = {k.dsse_keyid: k for k in keys}
    message = pae(payload_type, payload)
    signers: list[PublicKey] = []
    for entry in signatures:
        if not isinstance(entry, dict):
            raise fail("dsse", f"{what}: a signature is not an object")
        signature = b64decode_dsse(entry.get("sig"), f"{what} signature")
        keyid = entry.get("keyid") or ""
        if not isinstance(keyid, str):
            raise fail("dsse", f"{what}: a keyid is not a string")
        candidates = [by_keyid[keyid]] if keyid in by_keyid else ([] if keyid else list(keys))
        matched = None
        for key in candidates:
            if key.verify(signature, message):
                matched = key
                break
        if keyid in by_keyid and matched is None:
            raise fail("dsse", f"{what}: the signature by keyid {keyid[:16]}… does not verify")
        if matched is not None and matched not in signers:
            signers.append(matched)
    if not signers:
        keyids = ", ".join(str(s.get("keyid", ""))[:16] + "…" for s in signatures if isinstance(s, dict))
        raise fail("dsse", f"{what} is not signed by any key in keys/ (keyids: {keyids})")
    return payload_type, payload, signers


# --- Approvals, replayed ------------------------------------------------------------------

REPLAYED_TYPES = frozenset({
    "governance.approvalrequest", "governance.approvaldecision", "governance.modelversion",
    "governance.registeredmodel", "governance.approvalpolicy", "auth.user", "fairness.auditrun",
    "signatures.approvercredential",
})
DECISION_ROLES = ("approver", "risk_officer")
_KNOWN_POLICY_KEYS = frozenset({"policy_id", "scope", "quorum", "required_roles", "fairness_audit_max_age_days",
                                "required_card_fields", "expiry_hours"})


class ApprovalViolations(VerificationError):
    """Approvals that did not meet their policy: one line each, naming the request, the decision and the rule."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("approval", lines[0])
        self.lines = lines


def _bounded_subjects(raw: Any) -> dict[tuple[str, str], tuple[int, tuple[str, ...]]]:
    if not isinstance(raw, list):
        raise fail("manifest", "bounded_subjects is not a list")
    bounded: dict[tuple[str, str], tuple[int, tuple[str, ...]]] = {}
    for item in raw:
        if not isinstance(item, dict):
            raise fail("manifest", "a bounded subject is not an object")
        kind, ident, through = item.get("type"), item.get("id"), item.get("through_seq")
        prefixes = item.get("action_prefixes")
        if (not isinstance(kind, str) or not isinstance(ident, str) or isinstance(through, bool)
                or not isinstance(through, int) or not isinstance(prefixes, list) or not prefixes
                or not all(isinstance(p, str) and p for p in prefixes)):
            raise fail("manifest", "a bounded subject is not {type, id, through_seq, action_prefixes}")
        if (kind, ident) in bounded:
            raise fail("manifest", f"bounded subject {kind}:{ident} is listed twice")
        bounded[(kind, ident)] = (through, tuple(prefixes))
    return bounded


def _time(text: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 UTC time as the ledger writes it, else None."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)  # noqa: UP017 (Python 3.9)
    return moment.timestamp()


def _payload(document: dict[str, Any]) -> dict[str, Any]:
    payload = document.get("payload")
    return payload if isinstance(payload, dict) else {}


def _state(document: dict[str, Any]) -> dict[str, Any]:
    state = _payload(document).get("state")
    return state if isinstance(state, dict) else {}


def replay_approvals(documents: list[tuple[int, dict[str, Any]]]) -> tuple[list[str], int]:
    """(violations, approvals replayed): each request the entries show approved, judged again.

    Rules, from the policy snapshot frozen into the request when it was submitted (and the policy
    of the model's risk tier when it was decided must not be stricter than that snapshot):
    quorum (distinct approving people), every required role held at the time of their decision
    by one of the approvers, each approver holding a decision role (approver or risk officer) at
    the time, separation of duties (no approver submitted the request or registered the version;
    nobody decides twice), and evidence: the model-card fields the policy requires, filled in the
    version's recorded state, and a passing fairness audit of the version no older than the
    policy's limit (or, for any other evidence list in the snapshot, a passing audit naming it).
    Roles come from the role.granted / role.revoked entries of each person, not from what the
    decision says about itself; a role a person granted themselves does not count.
    """
    roles: dict[str, list[tuple[int, str, bool, str]]] = {}
    names: dict[str, str] = {}
    versions: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    models: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    policies: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    audits: list[tuple[int, dict[str, Any]]] = []
    if not any(document["subject"].get("type") == "governance.approvalrequest" for _, document in documents):
        return [], 0  # no request, nothing to replay: keep bundles of many version entries fast
    submissions: dict[str, tuple[int, dict[str, Any]]] = {}
    decisions: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
    approvals: list[tuple[int, str, dict[str, Any], dict[str, Any]]] = []
    for seq, document in documents:
        subject = document["subject"]
        kind, ident = subject.get("type"), str(subject.get("id"))
        action = document.get("action")
        payload = _payload(document)
        if kind == "auth.user":
            if action in ("role.granted", "role.revoked") and isinstance(payload.get("role"), str):
                roles.setdefault(ident, []).append((seq, payload["role"], action == "role.granted",
                                                    str(document.get("actor"))))
            if isinstance(payload.get("username"), str):
                names[ident] = payload["username"]
            elif isinstance(payload.get("user"), str):
                names.setdefault(ident, payload["user"])
        elif kind == "governance.modelversion":
            versions.setdefault(ident, []).append((seq, _state(document)))
        elif kind == "governance.registeredmodel":
            models.setdefault(ident, []).append((seq, _state(document)))
        elif kind == "governance.approvalpolicy":
            policies.setdefault(ident, []).append((seq, _state(document)))
        elif kind == "fairness.auditrun":
            audits.append((seq, _state(document)))
        elif kind == "governance.approvalrequest":
            state = _state(document)
            if ident not in submissions:
                submissions[ident] = (seq, state)
            after = payload.get("after")
            if isinstance(after, dict) and after.get("status") == "approved":
                approvals.append((seq, ident, state, document))
        elif kind == "governance.approvaldecision":
            state = _state(document)
            if payload.get("before") is None and state:
                decisions.setdefault(str(state.get("request")), []).append((seq, ident, state))

    def who(user_id: Any) -> str:
        key = str(user_id)
        return f"user {key} ({names[key]})" if key in names else f"user {key}"

    def grants_at(user_id: Any, seq: int) -> dict[str, tuple[int, str]]:
        """role -> (seq, actor) of the grant in force before `seq`."""
        held: dict[str, tuple[int, str]] = {}
        for at, role, granted, actor in roles.get(str(user_id), []):
            if at < seq:
                if granted:
                    held[role] = (at, actor)
                else:
                    held.pop(role, None)
        return held

    def self_granted(user_id: Any, grant: tuple[int, str]) -> bool:
        name = names.get(str(user_id))
        return name is not None and grant[1] == f"user:{name}"

    def roles_at(user_id: Any, seq: int) -> set[str]:
        """Roles held before `seq`, except those the person granted themselves."""
        return {role for role, grant in grants_at(user_id, seq).items() if not self_granted(user_id, grant)}

    violations: list[str] = []
    for seq, request_id, state, document in approvals:
        submitted_seq, submitted = submissions.get(request_id, (seq, state))
        frozen = submitted.get("policy_snapshot") if submitted else None
        if not isinstance(frozen, dict):
            frozen = state.get("policy_snapshot")
        snapshot: dict[str, Any] = frozen if isinstance(frozen, dict) else {}
        submitter = submitted.get("submitted_by", state.get("submitted_by"))
        version_id = str(submitted.get("version", state.get("version")))
        policy = f"policy {snapshot.get('policy_id')} ({snapshot.get('scope', '?')})"
        made = [item for item in decisions.get(request_id, []) if item[0] < seq]
        approving = [item for item in made if item[2].get("decision") == "approve"]
        last = approving[-1] if approving else None
        closing = f"decision {last[1]} (seq {last[0]})" if last else f"the approval at seq {seq}"

        def violation(decision: str, rule: str, text: str, request_id: str = request_id) -> None:
            violations.append(f"request {request_id}, {decision}: {rule}: {text}")

        if snapshot.get("policy_id") is not None and state.get("policy_snapshot") not in (None, snapshot):
            violation(closing, "policy", f"the policy snapshot changed after submission (seq {submitted_seq})")
        counted: dict[str, tuple[int, str, dict[str, Any]]] = {}
        author = None
        for at, _state_of_version in versions.get(version_id, []):
            if at < seq and _state_of_version.get("created_by") is not None:
                author = _state_of_version.get("created_by")
        for at, decision_id, decision in approving:
            approver = decision.get("approver")
            label = f"decision {decision_id} (seq {at}) by {who(approver)}"
            if str(approver) in counted:
                violation(label, "separation of duties", "this person already decided this request "
                          f"(decision {counted[str(approver)][1]}); one person counts once")
                continue
            counted[str(approver)] = (at, decision_id, decision)
            if approver is not None and str(approver) == str(submitter):
                violation(label, "separation of duties", "the approver submitted the request")
            elif author is not None and str(approver) == str(author):
                violation(label, "separation of duties", "the approver registered the version")
            for role, grant in sorted(grants_at(approver, at).items()):
                if self_granted(approver, grant):
                    violation(label, "separation of duties", f"the approver granted themselves the role {role!r} "
                              f"(seq {grant[0]}); it does not count")
            if not roles_at(approver, at) & set(DECISION_ROLES):
                violation(label, "role", "the approver held no decision role (approver or risk_officer) at the "
                          "time, by the role entries in the bundle")
        quorum = snapshot.get("quorum", 1)
        if isinstance(quorum, int) and len(counted) < quorum:
            violation(closing, "quorum", f"{len(counted)} distinct approver(s), {policy} requires {quorum}")
        required = snapshot.get("required_roles") or []
        for role in required if isinstance(required, list) else []:
            if not any(role in roles_at(item[2].get("approver"), item[0]) for item in counted.values()):
                violation(closing, "required role", f"no approver held the role {role!r} at the time of their "
                          f"decision, which {policy} requires")
        tier_policy = _policy_in_force(models, policies, versions.get(version_id, []), seq)
        if tier_policy is not None:
            stricter = _stricter(tier_policy[2], snapshot)
            if stricter:
                violation(closing, "policy", f"decided under {policy}, but when it was decided the model's risk tier "
                          f"was {tier_policy[1]!r}, whose policy {tier_policy[0]} is stricter: " + "; ".join(stricter))
        violations.extend(_evidence_violations(request_id, closing, seq, document, snapshot, policy,
                                               versions.get(version_id, []), version_id, audits))
    return violations, len(approvals)


def _latest(states: list[tuple[int, dict[str, Any]]], seq: int) -> dict[str, Any] | None:
    found = None
    for at, state in states:
        if at < seq:
            found = state or None  # a deletion records no state
    return found


def _policy_in_force(models: dict[str, list[tuple[int, dict[str, Any]]]],
                     policies: dict[str, list[tuple[int, dict[str, Any]]]],
                     version_states: list[tuple[int, dict[str, Any]]], seq: int
                     ) -> tuple[str, str, dict[str, Any]] | None:
    """(policy id, tier, state) of the policy that applied to the version's model just before `seq`:
    the model's own policy, else its tier's default; None if the bundle does not show it."""
    version = _latest(version_states, seq)
    model_id = str(version.get("model")) if version else None
    model = _latest(models.get(model_id, []), seq) if model_id else None
    if model is None:
        return None
    tier = model.get("risk_tier")
    default = None
    for policy_id, states in sorted(policies.items()):
        state = _latest(states, seq)
        if state is None:
            continue
        if str(state.get("model")) == model_id:
            return policy_id, str(tier), state
        if state.get("model") is None and state.get("risk_tier") == tier:
            default = (policy_id, str(tier), state)
    return default


def _stricter(policy: dict[str, Any], snapshot: dict[str, Any]) -> list[str]:
    """What `policy` asks for beyond the snapshot (empty if it asks for nothing more)."""
    more: list[str] = []
    quorum, frozen = policy.get("quorum"), snapshot.get("quorum", 1)
    if isinstance(quorum, int) and isinstance(frozen, int) and quorum > frozen:
        more.append(f"quorum {quorum} (not {frozen})")
    for key, what in (("required_roles", "roles"), ("required_card_fields", "model-card fields")):
        extra = sorted(set(policy.get(key) or []) - set(snapshot.get(key) or []))
        if extra:
            more.append(f"{what} {', '.join(map(str, extra))}")
    age, frozen_age = policy.get("fairness_audit_max_age_days"), snapshot.get("fairness_audit_max_age_days")
    if isinstance(age, int) and (frozen_age is None or (isinstance(frozen_age, int) and age < frozen_age)):
        more.append(f"a passing fairness audit at most {age} day(s) old")
    return more


def _evidence_violations(request_id: str, closing: str, seq: int, document: dict[str, Any],
                         snapshot: dict[str, Any], policy: str, version_states: list[tuple[int, dict[str, Any]]],
                         version_id: str, audits: list[tuple[int, dict[str, Any]]]) -> list[str]:
    found: list[str] = []
    prefix = f"request {request_id}, {closing}: evidence: "
    version: dict[str, Any] = {}
    for at, state in version_states:
        if at < seq and state:
            version = state
    fields = snapshot.get("required_card_fields") or []
    for name in fields if isinstance(fields, list) else []:
        if not str(version.get(name) or "").strip():
            found.append(prefix + f"the model card field {name!r} was empty, which {policy} requires")
    approved_at = _time(document.get("recorded_at"))
    passing = []
    for at, state in audits:
        if at < seq and str(state.get("model_version")) == version_id and state.get("passed") is True:
            passing.append(state)
    max_age = snapshot.get("fairness_audit_max_age_days")
    if isinstance(max_age, int) and not isinstance(max_age, bool):
        fresh = [state for state in passing if approved_at is not None and _time(state.get("finished_at")) is not None
                 and approved_at - (_time(state.get("finished_at")) or 0) <= max_age * 86400]
        if not fresh:
            found.append(prefix + f"no passing fairness audit of version {version_id} at most {max_age} day(s) old "
                         f"is in the bundle, which {policy} requires")
    for key, value in sorted(snapshot.items()):
        if key in _KNOWN_POLICY_KEYS or not isinstance(value, (list, dict)) or not value:
            continue
        if "evidence" not in key and "metric" not in key:
            continue
        for item in (sorted(value) if isinstance(value, dict) else value):
            wanted = item if isinstance(item, str) else (item.get("metric") or item.get("name")
                                                          if isinstance(item, dict) else None)
            if not isinstance(wanted, str):
                continue
            if not any(wanted in json.dumps(state, sort_keys=True) for state in passing):
                found.append(prefix + f"no passing audit of version {version_id} in the bundle covers {wanted!r} "
                             f"({key} of {policy})")
    return found


# --- Approvals signed by the approver (passkeys, DSSE) ----------------------------------------
# Each decision entry may hold `state.signature`: the approval statement the approver signed and
# the signature material. A statement is the RFC 8785 (JCS) bytes of {type, log, request,
# version_manifest_digest, policy_digest, decision, comment, approver, nonce, time}. It is signed
#   - with a passkey: a WebAuthn assertion (https://www.w3.org/TR/webauthn-3/ §7.2) whose
#     challenge is SHA-256(statement): ES256 or Ed25519 over authenticatorData || SHA-256(clientDataJSON);
#   - from a terminal: a DSSE envelope of STATEMENT_PAYLOAD_TYPE whose payload is the statement,
#     signed with the approver's own Ed25519 key (keyid = hex SHA-256 of the raw key).
# The key is the one of the credential's registration entry (`approver_credential.registered`),
# which must come before the decision in the ledger and belong to the approver.

STATEMENT_TYPE = "governance.approval-statement/v1"
STATEMENT_PAYLOAD_TYPE = "application/vnd.governance.approval-statement+json"
CREDENTIAL_TYPE = "signatures.approvercredential"
COSE_ALG_ES256 = -7
COSE_ALG_EDDSA = -8
WEBAUTHN_FLAG_UP = 0x01


def b64url_decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str) or not _URLSAFE_BASE64.match(text):
        raise ValueError(f"{what} is not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _cbor_item(data: bytes, offset: int, depth: int = 0) -> tuple[Any, int]:
    """One CBOR data item (RFC 8949) of the kinds a COSE key uses: integers, byte and text strings, maps."""
    if depth > 4 or offset >= len(data):
        raise ValueError("COSE key: truncated or too deep")
    major, info = data[offset] >> 5, data[offset] & 0x1F
    offset += 1
    if info < 24:
        argument = info
    elif info in (24, 25, 26, 27):
        size = 1 << (info - 24)
        if offset + size > len(data):
            raise ValueError("COSE key: truncated")
        argument = int.from_bytes(data[offset:offset + size], "big")
        offset += size
    else:
        raise ValueError("COSE key: indefinite lengths are not allowed")
    if major == 0:
        return argument, offset
    if major == 1:
        return -1 - argument, offset
    if major in (2, 3):
        if offset + argument > len(data):
            raise ValueError("COSE key: truncated string")
        raw = data[offset:offset + argument]
        return (raw if major == 2 else raw.decode("utf-8")), offset + argument
    if major == 5:
        result: dict[Any, Any] = {}
        for _ in range(argument):
            key, offset = _cbor_item(data, offset, depth + 1)
            value, offset = _cbor_item(data, offset, depth + 1)
            if key in result:
                raise ValueError("COSE key: duplicate label")
            result[key] = value
        return result, offset
    raise ValueError(f"COSE key: CBOR major type {major} is not expected")


def cose_public_key(cose: bytes) -> tuple[int, Any]:
    """(algorithm, public key) of a COSE_Key (RFC 9053): EC2 P-256 for ES256, OKP Ed25519 for EdDSA."""
    key, end = _cbor_item(cose, 0)
    if not isinstance(key, dict) or end != len(cose):
        raise ValueError("COSE key: not one CBOR map")
    kty, alg, crv = key.get(1), key.get(3), key.get(-1)
    if kty == 2 and alg == COSE_ALG_ES256 and crv == 1:
        x, y = key.get(-2), key.get(-3)
        if not (isinstance(x, bytes) and isinstance(y, bytes) and len(x) == len(y) == 32):
            raise ValueError("COSE key: bad P-256 coordinates")
        return alg, ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                                  ec.SECP256R1()).public_key()
    if kty == 1 and alg == COSE_ALG_EDDSA and crv == 6:
        x = key.get(-2)
        if not isinstance(x, bytes) or len(x) != 32:
            raise ValueError("COSE key: bad Ed25519 key")
        return alg, Ed25519PublicKey.from_public_bytes(x)
    raise ValueError(f"COSE key: unsupported key (kty {kty}, alg {alg}, crv {crv})")


def verify_webauthn_assertion(cose: bytes, *, rp_id: str, origin: str, challenge: bytes,
                              authenticator_data: bytes, client_data_json: bytes, signature: bytes) -> None:
    """Raise ValueError unless the assertion answers `challenge` for `rp_id` at `origin`, signed by the key."""
    if len(authenticator_data) < 37:
        raise ValueError("authenticatorData is shorter than 37 bytes")
    if authenticator_data[:32] != hashlib.sha256(rp_id.encode("utf-8")).digest():
        raise ValueError(f"authenticatorData's rpIdHash is not SHA-256({rp_id!r})")
    if not authenticator_data[32] & WEBAUTHN_FLAG_UP:
        raise ValueError("authenticatorData: the user-present flag is not set")
    client_data = json.loads(client_data_json.decode("utf-8"))
    if not isinstance(client_data, dict) or client_data.get("type") != "webauthn.get":
        raise ValueError("clientDataJSON's type is not webauthn.get")
    if client_data.get("challenge") != base64.urlsafe_b64encode(challenge).rstrip(b"=").decode("ascii"):
        raise ValueError("clientDataJSON's challenge is not SHA-256 of the statement")
    if client_data.get("origin") != origin:
        raise ValueError(f"clientDataJSON's origin {client_data.get('origin')!r} is not {origin!r}")
    signed = authenticator_data + hashlib.sha256(client_data_json).digest()
    algorithm, public_key = cose_public_key(cose)
    try:
        if algorithm == COSE_ALG_ES256:
            public_key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
        else:
            public_key.verify(signature, signed)
    except InvalidSignature:
        raise ValueError("the WebAuthn signature does not verify with the registered key") from None


def _signed_statement(signature: dict[str, Any], credential: dict[str, Any]) -> bytes:
    """The statement bytes, once their signature verifies with the credential's key (ValueError otherwise)."""
    method = signature.get("method")
    if method == "dsse":
        if credential.get("kind") != "ed25519":
            raise ValueError("a DSSE signature by a credential that is not an Ed25519 key")
        envelope = signature.get("envelope")
        if not isinstance(envelope, dict) or envelope.get("payloadType") != STATEMENT_PAYLOAD_TYPE:
            raise ValueError(f"the envelope's payloadType is not {STATEMENT_PAYLOAD_TYPE}")
        signatures = envelope.get("signatures")
        if not isinstance(signatures, list) or len(signatures) != 1 or not isinstance(signatures[0], dict):
            raise ValueError("the envelope must hold exactly one signature")
        if signatures[0].get("keyid") != credential.get("credential_id"):
            raise ValueError("the envelope's keyid is not the credential's")
        payload = b64decode_dsse(envelope.get("payload"), "envelope payload")
        raw = b64decode_dsse(signatures[0].get("sig"), "envelope signature")
        key = Ed25519PublicKey.from_public_bytes(b64url_decode(credential.get("public_key"), "public key"))
        try:
            key.verify(raw, pae(STATEMENT_PAYLOAD_TYPE, payload))
        except InvalidSignature:
            raise ValueError("the DSSE signature does not verify with the registered key") from None
        return payload
    if method == "passkey":
        if credential.get("kind") != "passkey":
            raise ValueError("a passkey signature by a credential that is not a passkey")
        statement = b64decode_strict(signature.get("statement"), "statement")
        rp_id, origin = credential.get("rp_id"), signature.get("origin")
        if not isinstance(rp_id, str) or not isinstance(origin, str):
            raise ValueError("the relying party id or the origin is missing")
        verify_webauthn_assertion(
            b64url_decode(credential.get("public_key"), "COSE key"), rp_id=rp_id, origin=origin,
            challenge=hashlib.sha256(statement).digest(),
            authenticator_data=b64url_decode(signature.get("authenticator_data"), "authenticatorData"),
            client_data_json=b64url_decode(signature.get("client_data_json"), "clientDataJSON"),
            signature=b64url_decode(signature.get("signature"), "signature"))
        return statement
    raise ValueError(f"unknown signing method {method!r}")


# What each `signed_approval` setting accepts; a decision is judged by what both its request's
# snapshot and the policy in force when it was decided accept (passkey-only and DSSE-only share
# nothing: then the policy in force holds), as the service judges it.
SIGNED_APPROVAL_ACCEPTS = {"none": frozenset({"unsigned", "passkey", "dsse"}), "either": frozenset({"passkey", "dsse"}),
                           "passkey": frozenset({"passkey"}), "dsse": frozenset({"dsse"})}


def _accepted(snapshot_setting: Any, in_force_setting: Any) -> frozenset[str]:
    everything = SIGNED_APPROVAL_ACCEPTS["none"]
    frozen = SIGNED_APPROVAL_ACCEPTS.get(str(snapshot_setting), everything)
    now = SIGNED_APPROVAL_ACCEPTS.get(str(in_force_setting), everything)
    return (frozen & now) or now


def _setting_in_force(version_states: list[tuple[int, dict[str, Any]]],
                      model_states: dict[str, list[tuple[int, dict[str, Any]]]],
                      policy_states: dict[str, list[tuple[int, dict[str, Any]]]], seq: int) -> Any:
    """`signed_approval` of the policy that applied to the version's model just before `seq` (its own,
    else its tier's default, the tier being the last one its entries recorded); None if not shown."""
    model_id = next((str(state["model"]) for at, state in reversed(version_states)
                     if at < seq and state.get("model") is not None), None)
    tier = next((state["risk_tier"] for at, state in reversed(model_states.get(model_id or "", []))
                 if at < seq and state.get("risk_tier")), None)
    own = default = None
    for states in policy_states.values():
        state = _latest(states, seq)
        if state is None:
            continue
        if model_id is not None and str(state.get("model")) == model_id:
            own = state
        elif state.get("model") is None and tier is not None and state.get("risk_tier") == tier:
            default = state
    chosen = own or default
    return chosen.get("signed_approval") if chosen else None


def check_signed_approvals(documents: list[tuple[int, dict[str, Any]]], *, log_origin: str,
                           require_signed: bool) -> tuple[list[str], int]:
    """(violations, signed decisions verified): every signed decision's signature, statement and
    credential; an unsigned decision where its policy (or `require_signed`) wants one."""
    credentials: dict[str, tuple[int, dict[str, Any]]] = {}
    revoked: dict[str, int] = {}
    submissions: dict[str, dict[str, Any]] = {}
    versions: dict[str, dict[str, Any]] = {}
    version_states: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    model_states: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    policy_states: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    decisions: list[tuple[int, str, dict[str, Any], dict[str, Any]]] = []
    for seq, document in documents:
        subject = document.get("subject") or {}
        kind, ident = subject.get("type"), str(subject.get("id"))
        payload, state = _payload(document), _state(document)
        if kind == CREDENTIAL_TYPE and isinstance(state.get("credential_id"), str):
            if payload.get("before") is None and state.get("credential_id") not in credentials:
                credentials[state["credential_id"]] = (seq, {**state, "registered_by": document.get("actor")})
            if state.get("revoked_at") and state["credential_id"] not in revoked:
                revoked[state["credential_id"]] = seq
        elif kind == "governance.approvalrequest" and ident not in submissions and state:
            submissions[ident] = state
        elif kind == "governance.modelversion":
            version_states.setdefault(ident, []).append((seq, state))
            if state:
                versions[ident] = state
        elif kind == "governance.registeredmodel":
            model_states.setdefault(ident, []).append((seq, state))
        elif kind == "governance.approvalpolicy":
            policy_states.setdefault(ident, []).append((seq, state))
        elif kind == "governance.approvaldecision" and payload.get("before") is None and state:
            decisions.append((seq, ident, state, document))
    violations: list[str] = []
    verified = 0
    for seq, ident, state, document in decisions:
        where = f"decision {ident} (seq {seq}) on request {state.get('request')}"
        signature = state.get("signature") or {}
        request_state = submissions.get(str(state.get("request"))) or {}
        snapshot = request_state.get("policy_snapshot")
        in_force = _setting_in_force(version_states.get(str(request_state.get("version")), []), model_states,
                                     policy_states, seq)
        accepted = _accepted(snapshot.get("signed_approval") if isinstance(snapshot, dict) else None, in_force)
        wanted = " or ".join(sorted(accepted))
        if not signature:
            if require_signed or "unsigned" not in accepted:
                reason = f"its policy requires {wanted}" if "unsigned" not in accepted else \
                    "--require-signed-approvals"
                violations.append(f"{where}: not signed by the approver ({reason})")
            continue
        if not isinstance(signature, dict):
            violations.append(f"{where}: the signature is not an object")
            continue
        if signature.get("method") not in accepted:
            violations.append(f"{where}: signed with {signature.get('method')}, its policy requires {wanted}")
        credential_id = signature.get("credential_id")
        registered = credentials.get(credential_id) if isinstance(credential_id, str) else None
        if registered is None or not isinstance(credential_id, str):
            violations.append(f"{where}: the bundle holds no registration entry of its credential")
            continue
        registered_seq, credential = registered
        if registered_seq >= seq:
            violations.append(f"{where}: its credential was registered at seq {registered_seq}, after the decision")
            continue
        if revoked.get(credential_id, seq) < seq:
            violations.append(f"{where}: its credential was revoked at seq {revoked[credential_id]}, before")
            continue
        if credential.get("user") != state.get("approver") or credential.get("registered_by") != document.get("actor"):
            violations.append(f"{where}: its credential was registered by {credential.get('registered_by')} for "
                              f"user {credential.get('user')}, not by the approver {document.get('actor')} for themself")
            continue
        try:
            statement = _signed_statement(signature, credential)
            fields = json.loads(statement.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, VerificationError) as exc:
            text = exc.message if isinstance(exc, VerificationError) else str(exc)
            violations.append(f"{where}: {text}")
            continue
        if hashlib.sha256(statement).hexdigest() != signature.get("statement_sha256"):
            violations.append(f"{where}: statement_sha256 is not the SHA-256 of the signed statement")
            continue
        version_state = versions.get(str(request_state.get("version"))) or {}
        expected = {"type": STATEMENT_TYPE, "log": log_origin, "request": state.get("request"),
                    "decision": state.get("decision"), "comment": state.get("comment"),
                    "approver": document.get("actor")}
        if version_state.get("manifest_digest"):
            expected["version_manifest_digest"] = version_state["manifest_digest"]
        wrong = sorted(name for name, value in expected.items()
                       if not isinstance(fields, dict) or fields.get(name) != value)
        if wrong:
            violations.append(f"{where}: the signed statement's {', '.join(wrong)} differ(s) from the decision")
            continue
        verified += 1
    return violations, verified


# --- Witness cosignatures (C2SP tlog-cosignature v1, tlog-policy) ---------------------------
# The bundle's ledger/witnessed.json holds a checkpoint at least as large as the bundle's, with
# the witnesses' cosignature lines appended, and a consistency proof from the bundle's
# checkpoint to it. A cosignature is `— <name> base64(key id || u64 time || Ed25519 signature)`
# over "cosignature/v1\ntime <time>\n" + the checkpoint note text; key id =
# SHA-256(name || 0x0A || 0x04 || key)[:4]. Stock signed-note verifiers (Go's note.NewVerifier)
# refuse type 0x04 keys, hence this code.

COSIGNATURE_TYPE_ED25519 = 0x04
WITNESSED = "ledger/witnessed.json"
MAX_FUTURE_COSIGNATURE_S = 3600


class WitnessKey:
    def __init__(self, name: str, key_id: bytes, raw: bytes, policy_name: str) -> None:
        self.name = name
        self.key_id = key_id
        self.key = Ed25519PublicKey.from_public_bytes(raw)
        self.raw = raw
        self.policy_name = policy_name

    def label(self) -> str:
        return f"{self.name}+{self.key_id.hex()}"


class WitnessPolicy:
    """Logs (checkpoint vkeys), witnesses (policy name -> key), groups and the quorum of a tlog-policy."""

    def __init__(self) -> None:
        self.logs: list[PublicKey] = []
        self.witnesses: dict[str, WitnessKey] = {}
        self.groups: dict[str, tuple[int, list[str]]] = {}
        self.quorum: str | None = None

    def satisfied(self, cosigned: set[str], name: str | None = None) -> bool:
        target = self.quorum if name is None else name
        if target is None:
            return True
        if target in self.witnesses:
            return target in cosigned
        threshold, members = self.groups[target]
        return sum(1 for member in members if self.satisfied(cosigned, member)) >= threshold


def parse_witness_vkey(text: str, policy_name: str) -> WitnessKey:
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or not _HEX8.match(parts[1]):
        raise ValueError("a witness vkey is <name>+<8 hex key id>+<base64 key>")
    name, key_hex, key_b64 = parts
    _check_key_name(name)
    material = b64decode_strict(key_b64, "a witness vkey's key")
    if len(material) != 33 or material[0] != COSIGNATURE_TYPE_ED25519:
        raise ValueError("a witness vkey must be an Ed25519 cosignature/v1 key (signature type 0x04)")
    key_id = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([COSIGNATURE_TYPE_ED25519])
                            + material[1:]).digest()[:4]
    if key_id != bytes.fromhex(key_hex):
        raise ValueError("a witness vkey's key id does not match its name and key")
    return WitnessKey(name, key_id, material[1:], policy_name)


def parse_witness_policy(text: str) -> WitnessPolicy:
    """A C2SP tlog-policy file: log, witness, group and exactly one quorum line; names defined before use."""
    policy = WitnessPolicy()
    quorum_lines = 0
    for number, raw_line in enumerate(text.split("\n"), start=1):
        words = [w for w in re.split(r"[ \t]+", raw_line.strip(" \t")) if w]
        if not words or words[0].startswith("#"):
            continue
        keyword, rest = words[0], words[1:]
        defined = set(policy.witnesses) | set(policy.groups)
        try:
            if keyword == "log" and len(rest) in (1, 2):
                policy.logs.append(parse_vkey(rest[0], source="policy"))
            elif keyword == "witness" and len(rest) in (2, 3):
                if rest[0] == "none" or rest[0] in defined:
                    raise ValueError(f"name {rest[0]!r} is reserved or defined twice")
                key = parse_witness_vkey(rest[1], rest[0])
                if any(w.raw == key.raw for w in policy.witnesses.values()):
                    raise ValueError("duplicate witness key")
                policy.witnesses[rest[0]] = key
            elif keyword == "group" and len(rest) >= 3:
                name, threshold_text, members = rest[0], rest[1], rest[2:]
                if name == "none" or name in defined:
                    raise ValueError(f"name {name!r} is reserved or defined twice")
                if len(set(members)) != len(members) or any(m not in defined for m in members):
                    raise ValueError("a group member is repeated or not defined above")
                if threshold_text == "all":
                    threshold = len(members)
                elif threshold_text == "any":
                    threshold = 1
                elif _DECIMAL.match(threshold_text) and 1 <= int(threshold_text) <= len(members):
                    threshold = int(threshold_text)
                else:
                    raise ValueError(f"group threshold {threshold_text!r} is not all, any or 1..{len(members)}")
                policy.groups[name] = (threshold, members)
            elif keyword == "quorum" and len(rest) == 1:
                quorum_lines += 1
                if rest[0] != "none" and rest[0] not in defined:
                    raise ValueError(f"quorum {rest[0]!r} is not defined above")
                policy.quorum = None if rest[0] == "none" else rest[0]
            else:
                raise ValueError(f"unknown or malformed line starting {keyword!r}")
        except ValueError as exc:
            raise fail("witness-policy", f"line {number}: {exc}") from None
    if quorum_lines != 1:
        raise fail("witness-policy", "a policy needs exactly one quorum line")
    return policy


def witness_policy_from_args(policy_file: str | None, witness_keys: Sequence[str],
                             quorum: int | None) -> WitnessPolicy | None:
    """--policy FILE, or --witness-key VKEY (repeatable) with --witness-quorum K (default: all)."""
    if policy_file and witness_keys:
        raise fail("witness-policy", "give --policy or --witness-key, not both")
    if policy_file:
        try:
            with open(policy_file, encoding="utf-8") as handle:
                return parse_witness_policy(handle.read(1024 * 1024))
        except OSError as exc:
            raise fail("witness-policy", f"cannot read {policy_file}: {exc}") from None
    if not witness_keys:
        return None
    policy = WitnessPolicy()
    for index, value in enumerate(witness_keys):
        try:
            key = parse_witness_vkey(value, f"w{index}")
        except ValueError as exc:
            raise fail("witness-policy", f"--witness-key {value!r}: {exc}") from None
        policy.witnesses[key.policy_name] = key
    k = len(witness_keys) if quorum is None else quorum
    if not 1 <= k <= len(witness_keys):
        raise fail("witness-policy", f"--witness-quorum must be 1..{len(witness_keys)}")
    policy.groups["quorum"] = (k, list(policy.witnesses))
    policy.quorum = "quorum"
    return policy


def verify_cosignatures(note_text: str, policy: WitnessPolicy, now: float,
                        max_age_s: float | None) -> dict[str, int]:
    """{policy witness name: cosignature time} of the valid, fresh-enough cosignatures on a checkpoint note."""
    parsed = parse_note(note_text)
    message_body = parsed.text.encode("utf-8")
    by_id = {(w.name, w.key_id): w for w in policy.witnesses.values()}
    found: dict[str, int] = {}
    for name, key_id, signature in parsed.signatures:
        witness = by_id.get((name, key_id))
        if witness is None:
            continue  # the log's own signature, or a witness this policy does not know
        if len(signature) != 8 + 64:
            raise fail("witness", f"the cosignature by {witness.label()} is not a cosignature/v1")
        (timestamp,) = struct.unpack(">Q", signature[:8])
        message = f"cosignature/v1\ntime {timestamp}\n".encode("ascii") + message_body
        try:
            witness.key.verify(signature[8:], message)
        except InvalidSignature:
            raise fail("witness", f"the cosignature by {witness.label()} does not verify") from None
        if timestamp > now + MAX_FUTURE_COSIGNATURE_S:
            raise fail("witness", f"the cosignature by {witness.label()} is dated in the future")
        if max_age_s is not None and now - timestamp > max_age_s:
            continue
        found[witness.policy_name] = max(timestamp, found.get(witness.policy_name, 0))
    return found


def verify_witnessed(contents: dict[str, bytes], checkpoint_text: str, keys: Sequence[PublicKey],
                     trusted: Sequence[PublicKey], policy: WitnessPolicy, now: float,
                     max_age_s: float | None, report: Report) -> list[str]:
    """Check ledger/witnessed.json against the policy; return the header lines naming who cosigned."""
    checkpoint = parse_checkpoint_body(parse_note(checkpoint_text).text)
    if policy.logs:
        try:
            open_note(checkpoint_text, policy.logs)
        except ValueError as exc:
            raise fail("witness", f"ledger/checkpoint.txt is not signed by a log key of the policy: {exc}") from None
    if WITNESSED not in contents:
        raise fail("witness", f"{WITNESSED} is missing: no witness cosigned a checkpoint covering these entries")
    witnessed = load_json(contents[WITNESSED], WITNESSED, "witness")
    if not isinstance(witnessed, dict) or not isinstance(witnessed.get("checkpoint"), str):
        raise fail("witness", f"{WITNESSED} has no checkpoint")
    log_keys = list(policy.logs) or list(keys)
    body, signers = _open_checkpoint(witnessed["checkpoint"], log_keys, [] if policy.logs else trusted,
                                     "the witnessed checkpoint")
    if policy.logs and not signers:
        raise fail("witness", "the witnessed checkpoint is not signed by a log of the policy")
    if body.origin != checkpoint.origin:
        raise fail("witness", f"the witnessed checkpoint's origin {body.origin!r} is not {checkpoint.origin!r}")
    if witnessed.get("first") != checkpoint.tree_size or witnessed.get("second") != body.tree_size:
        raise fail("witness", "the witnessed consistency proof's sizes do not match the two checkpoints")
    hashes = witnessed.get("hashes")
    if not isinstance(hashes, list):
        raise fail("witness", f"{WITNESSED} has no hash list")
    try:
        verify_consistency(checkpoint.tree_size, body.tree_size,
                           [b64decode_strict(h, "witnessed proof hash") for h in hashes],
                           checkpoint.root_hash, body.root_hash)
    except ValueError as exc:
        raise fail("witness", f"the bundle's checkpoint @{checkpoint.tree_size} is not consistent with the "
                   f"witnessed @{body.tree_size}: {exc}") from None
    try:
        cosigned = verify_cosignatures(witnessed["checkpoint"], policy, now, max_age_s)
    except ValueError as exc:
        raise fail("witness", f"the witnessed checkpoint: {exc}") from None
    if not policy.satisfied(set(cosigned)):
        age = f" younger than {max_age_s:g} s" if max_age_s is not None else ""
        raise fail("witness", f"the witness quorum is not met: valid cosignatures{age} by "
                   f"{', '.join(sorted(cosigned)) or 'no witness of the policy'}")
    utc = datetime.timezone.utc  # noqa: UP017 (Python 3.9)
    when = ", ".join(f"{name} at {datetime.datetime.fromtimestamp(t, utc):%Y-%m-%dT%H:%M:%SZ}"
                     for name, t in sorted(cosigned.items()))
    report.ok(f"witnessed checkpoint @{body.tree_size}: consistent with @{checkpoint.tree_size}; "
              f"cosignature/v1 quorum met ({when})")
    return [f"witnesses:   quorum met at @{body.tree_size}: {when}"]
# --- RFC 3161 time-stamp tokens (ledger/timestamps/) ----------------------------------------
# Each token is a DER TimeStampToken: a CMS SignedData (RFC 5652) whose content is a TSTInfo
# (RFC 3161 §2.4.2). Checked here with a small DER reader and `cryptography`: the message
# imprint is SHA-256 of the named checkpoint's signed note, the signed attributes hold the
# TSTInfo's content type and digest and name the signer's certificate (ESS signingCertificate
# v1 or v2), the signature over them verifies with that certificate, which is marked for time
# stamping and chains to a CA pinned with --tsa-ca, valid at the token's time.

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_CERTIFICATE = "1.2.840.113549.1.9.16.2.12"
OID_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
OID_KP_TIME_STAMPING = "1.3.6.1.5.5.7.3.8"
_TS_HASHES = {"1.3.14.3.2.26": "sha1", "2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384",
              "2.16.840.1.101.3.4.2.3": "sha512"}
_TS_RSA = {"1.2.840.113549.1.1.1": None, "1.2.840.113549.1.1.11": "sha256", "1.2.840.113549.1.1.12": "sha384",
           "1.2.840.113549.1.1.13": "sha512"}
_TS_ECDSA = {"1.2.840.10045.2.1": None, "1.2.840.10045.4.3.2": "sha256", "1.2.840.10045.4.3.3": "sha384",
             "1.2.840.10045.4.3.4": "sha512"}
_TOKEN_NAME = re.compile(r"ledger/timestamps/checkpoint-(0|[1-9][0-9]*)-(0|[1-9][0-9]*)\.tst\Z")


class _Der:
    """One DER element: its tag, its content bytes and its whole encoding."""

    __slots__ = ("tag", "content", "raw")

    def __init__(self, tag: int, content: bytes, raw: bytes) -> None:
        self.tag, self.content, self.raw = tag, content, raw

    def children(self) -> list[_Der]:
        return der_elements(self.content)


def der_elements(data: bytes) -> list[_Der]:
    """The consecutive DER elements of `data` (definite lengths only, single-byte tags)."""
    items: list[_Der] = []
    pos = 0
    while pos < len(data):
        start = pos
        if len(data) - pos < 2:
            raise ValueError("truncated DER element")
        tag = data[pos]
        if tag & 0x1F == 0x1F:
            raise ValueError("multi-byte DER tags are not expected here")
        length = data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4 or pos + count > len(data):
                raise ValueError("bad DER length")
            length = int.from_bytes(data[pos:pos + count], "big")
            pos += count
        if pos + length > len(data):
            raise ValueError("DER element runs past its container")
        items.append(_Der(tag, data[pos:pos + length], data[start:pos + length]))
        pos += length
    return items


def _der_one(data: bytes, tag: int, what: str) -> _Der:
    items = der_elements(data)
    if len(items) != 1 or items[0].tag != tag:
        raise ValueError(f"{what} is not one DER element of tag 0x{tag:02x}")
    return items[0]


def der_oid(element: _Der) -> str:
    if element.tag != 0x06 or not element.content:
        raise ValueError("expected an OBJECT IDENTIFIER")
    first = element.content[0]
    head = min(first // 40, 2)
    parts = [str(head), str(first - 40 * head)]
    value = 0
    for byte in element.content[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(str(value))
            value = 0
    return ".".join(parts)


def _der_int(element: _Der) -> int:
    if element.tag != 0x02 or not element.content:
        raise ValueError("expected an INTEGER")
    return int.from_bytes(element.content, "big", signed=True)


def _ts_hash(name: str) -> Any:
    from cryptography.hazmat.primitives import hashes

    if name == "sha1":
        return hashes.SHA1()  # noqa: S303 - ESS signingCertificate v1 names certificates by SHA-1
    if name == "sha256":
        return hashes.SHA256()
    if name == "sha384":
        return hashes.SHA384()
    return hashes.SHA512()


class TimestampToken:
    """The parts of an RFC 3161 token that the checks need."""

    def __init__(self, der: bytes) -> None:
        from cryptography import x509

        content_info = _der_one(der, 0x30, "the token").children()
        if len(content_info) != 2 or der_oid(content_info[0]) != OID_SIGNED_DATA or content_info[1].tag != 0xA0:
            raise ValueError("not a CMS SignedData")
        fields = _der_one(content_info[1].content, 0x30, "SignedData").children()
        if len(fields) < 4 or fields[1].tag != 0x31 or fields[2].tag != 0x30:
            raise ValueError("malformed SignedData")
        encapsulated = fields[2].children()
        if len(encapsulated) != 2 or der_oid(encapsulated[0]) != OID_TST_INFO or encapsulated[1].tag != 0xA0:
            raise ValueError("the signed content is not a TSTInfo")
        self.tst_info_der = _der_one(encapsulated[1].content, 0x04, "eContent").content
        self.certificates: list[Any] = []
        rest = fields[3:]
        if rest and rest[0].tag == 0xA0:
            self.certificates = [x509.load_der_x509_certificate(item.raw) for item in rest[0].children()
                                 if item.tag == 0x30]
            rest = rest[1:]
        if rest and rest[0].tag == 0xA1:
            rest = rest[1:]
        if len(rest) != 1 or rest[0].tag != 0x31:
            raise ValueError("malformed SignedData signerInfos")
        signers = rest[0].children()
        if len(signers) != 1:
            raise ValueError(f"{len(signers)} signers; a time-stamp token has exactly one")
        signer = signers[0].children()
        if len(signer) < 6 or signer[3].tag != 0xA0 or signer[5].tag != 0x04:
            raise ValueError("malformed SignerInfo (signed attributes are required)")
        self.sid = signer[1]
        self.digest_name = _TS_HASHES.get(der_oid(signer[2].children()[0]))
        # The signature covers the DER of the attributes as a SET (tag 0x31), not as [0].
        self.signed_attributes = b"\x31" + signer[3].raw[1:]
        self.attributes: dict[str, list[_Der]] = {}
        for attribute in signer[3].children():
            parts = attribute.children()
            name = der_oid(parts[0])
            if name in self.attributes:
                raise ValueError(f"signed attribute {name} appears twice")
            self.attributes[name] = parts[1].children()
        self.signature_algorithm = der_oid(signer[4].children()[0])
        self.signature = signer[5].content
        info = _der_one(self.tst_info_der, 0x30, "TSTInfo").children()
        imprint = info[2].children()
        self.policy = der_oid(info[1])
        self.imprint_algorithm = der_oid(imprint[0].children()[0])
        self.imprint = imprint[1].content
        self.serial_number = _der_int(info[3])
        if info[4].tag != 0x18:
            raise ValueError("TSTInfo genTime is not a GeneralizedTime")
        text = info[4].content.decode("ascii")
        match = re.match(r"(\d{14})(?:\.(\d{1,6}))?Z\Z", text)
        if not match:
            raise ValueError(f"genTime {text!r} is not YYYYMMDDHHMMSS[.f]Z")
        moment = datetime.datetime.strptime(match.group(1), "%Y%m%d%H%M%S")
        micros = int((match.group(2) or "0").ljust(6, "0"))
        self.gen_time = moment.replace(microsecond=micros, tzinfo=datetime.timezone.utc)  # noqa: UP017 (Python 3.9)

    def signer_certificate(self) -> Any:
        from cryptography import x509

        for certificate in self.certificates:
            if self.sid.tag == 0x30:
                issuer, serial = self.sid.children()[:2]
                if certificate.serial_number == _der_int(serial) and \
                        certificate.issuer.public_bytes() == issuer.raw:
                    return certificate
            elif self.sid.tag == 0x80:
                try:
                    identifier = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
                except x509.ExtensionNotFound:
                    continue
                if identifier.digest == self.sid.content:
                    return certificate
        raise ValueError("the token does not hold the certificate that signed it")


def _ts_verify_signature(public_key: Any, signature: bytes, data: bytes, algorithm: str, digest_name: str | None) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    if algorithm in _TS_RSA and isinstance(public_key, rsa.RSAPublicKey):
        name = _TS_RSA[algorithm] or digest_name
        if name is None:
            raise ValueError("unknown digest algorithm")
        public_key.verify(signature, data, padding.PKCS1v15(), _ts_hash(name))
    elif algorithm in _TS_ECDSA and isinstance(public_key, ec.EllipticCurvePublicKey):
        name = _TS_ECDSA[algorithm] or digest_name
        if name is None:
            raise ValueError("unknown digest algorithm")
        public_key.verify(signature, data, ec.ECDSA(_ts_hash(name)))
    else:
        raise ValueError(f"signature algorithm {algorithm} with a {type(public_key).__name__} is not supported")


def _cert_signed_by(certificate: Any, issuer: Any) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    key = issuer.public_key()
    try:
        if certificate.issuer != issuer.subject:
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(certificate.signature, certificate.tbs_certificate_bytes, padding.PKCS1v15(),
                       certificate.signature_hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(certificate.signature, certificate.tbs_certificate_bytes,
                       ec.ECDSA(certificate.signature_hash_algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(certificate.signature, certificate.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _valid_at(certificate: Any, moment: datetime.datetime) -> bool:
    before = getattr(certificate, "not_valid_before_utc", None) or \
        certificate.not_valid_before.replace(tzinfo=datetime.timezone.utc)  # noqa: UP017 (Python 3.9)
    after = getattr(certificate, "not_valid_after_utc", None) or \
        certificate.not_valid_after.replace(tzinfo=datetime.timezone.utc)  # noqa: UP017 (Python 3.9)
    return bool(before <= moment <= after)


def _is_ca(certificate: Any) -> bool:
    from cryptography import x509

    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def check_timestamp_token(der: bytes, note: str, tsa_cas: Sequence[Any], what: str) -> str:
    """Check one token over a checkpoint's signed note; return its report text or raise VerificationError."""
    from cryptography import x509

    try:
        token = TimestampToken(der)
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise fail("timestamp", f"{what}: not an RFC 3161 time-stamp token: {exc}") from None
    # 1. The message imprint is SHA-256 of the checkpoint's signed note.
    if token.imprint_algorithm != "2.16.840.1.101.3.4.2.1":
        raise fail("timestamp", f"{what}: the message imprint is not SHA-256 ({token.imprint_algorithm})")
    if token.imprint != hashlib.sha256(note.encode("utf-8")).digest():
        raise fail("timestamp", f"{what}: the message imprint is not SHA-256 of the checkpoint's signed note")
    # 2. The signed attributes: content type, message digest of the TSTInfo, the signer's certificate.
    if token.digest_name is None:
        raise fail("timestamp", f"{what}: unsupported digest algorithm")
    content_type = token.attributes.get(OID_CONTENT_TYPE)
    if not content_type or der_oid(content_type[0]) != OID_TST_INFO:
        raise fail("timestamp", f"{what}: the signed content-type attribute is not TSTInfo")
    digest = token.attributes.get(OID_MESSAGE_DIGEST)
    if not digest or digest[0].tag != 0x04 or \
            digest[0].content != hashlib.new(token.digest_name, token.tst_info_der).digest():
        raise fail("timestamp", f"{what}: the signed messageDigest does not match the TSTInfo")
    try:
        signer = token.signer_certificate()
    except ValueError as exc:
        raise fail("timestamp", f"{what}: {exc}") from None
    signer_der = signer.public_bytes(serialization.Encoding.DER)
    ess = token.attributes.get(OID_SIGNING_CERTIFICATE_V2)
    try:
        if ess:
            cert_id = ess[0].children()[0].children()[0].children()
            algorithm = "sha256"
            if cert_id[0].tag == 0x30:
                algorithm = _TS_HASHES.get(der_oid(cert_id[0].children()[0]), "")
                cert_id = cert_id[1:]
            bound = bool(algorithm) and cert_id[0].content == hashlib.new(algorithm, signer_der).digest()
        elif token.attributes.get(OID_SIGNING_CERTIFICATE):
            cert_id = token.attributes[OID_SIGNING_CERTIFICATE][0].children()[0].children()[0].children()
            bound = cert_id[0].content == hashlib.sha1(signer_der).digest()  # noqa: S324 - ESS v1 is SHA-1 by definition
        else:
            raise fail("timestamp", f"{what}: no signingCertificate attribute names the signer's certificate")
    except (IndexError, ValueError):
        raise fail("timestamp", f"{what}: malformed signingCertificate attribute") from None
    if not bound:
        raise fail("timestamp", f"{what}: the signingCertificate attribute names another certificate")
    # 3. The signature over the signed attributes.
    try:
        _ts_verify_signature(signer.public_key(), token.signature, token.signed_attributes,
                             token.signature_algorithm, token.digest_name)
    except InvalidSignature:
        raise fail("timestamp", f"{what}: the TSA's signature does not verify") from None
    except ValueError as exc:
        raise fail("timestamp", f"{what}: {exc}") from None
    # 4. The signer is a time-stamping certificate, valid at genTime, chained to a pinned CA.
    try:
        usages = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        stamping = any(usage.dotted_string == OID_KP_TIME_STAMPING for usage in usages)
    except x509.ExtensionNotFound:
        stamping = False
    if not stamping:
        raise fail("timestamp", f"{what}: the signing certificate is not for time stamping (extendedKeyUsage)")
    if not _valid_at(signer, token.gen_time):
        raise fail("timestamp", f"{what}: the signing certificate was not valid at {token.gen_time:%Y-%m-%dT%H:%M:%SZ}")
    when = token.gen_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    signer_name = signer.subject.rfc4514_string()
    if not tsa_cas:
        return (f"{what}: RFC 3161 token by {signer_name} at {when}; imprint, signed attributes and signature "
                "hold; the TSA's certificate chain was NOT checked (no --tsa-ca)")
    current, chain_ok = signer, False
    pool = [c for c in token.certificates if c is not signer]
    for _ in range(8):
        anchor = next((ca for ca in tsa_cas if ca == current or _cert_signed_by(current, ca)), None)
        if anchor is not None:
            chain_ok = _valid_at(anchor, token.gen_time)
            break
        parent = next((c for c in pool if _is_ca(c) and _cert_signed_by(current, c)
                       and _valid_at(c, token.gen_time)), None)
        if parent is None:
            break
        current = parent
    if not chain_ok:
        raise fail("timestamp", f"{what}: the TSA's certificate does not chain to a CA pinned with --tsa-ca")
    return (f"{what}: RFC 3161 token by {signer_name} at {when}; imprint = SHA-256 of the signed checkpoint, "
            "signed attributes and signature hold, chain to the pinned TSA CA")


def load_tsa_cas(values: Sequence[str]) -> list[Any]:
    from cryptography import x509

    cas: list[Any] = []
    for value in values:
        try:
            with open(value, "rb") as handle:
                data = handle.read(1024 * 1024)
        except OSError as exc:
            raise fail("tsa-ca", f"cannot read {value}: {exc}") from None
        found = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", data, re.S)
        if not found:
            raise fail("tsa-ca", f"{value} holds no PEM certificate")
        for pem in found:
            try:
                cas.append(x509.load_pem_x509_certificate(pem))
            except ValueError as exc:
                raise fail("tsa-ca", f"{value}: {exc}") from None
    return cas


def check_timestamps(contents: dict[str, bytes], summary: dict[str, Any], tsa_cas: Sequence[Any],
                     report: Report) -> None:
    """Every token in ledger/timestamps/ is over the bundle's checkpoint or its latest one, and holds."""
    notes = {summary["checkpoint_size"]: contents["ledger/checkpoint.txt"].decode("utf-8")}
    consistency = load_json(contents["ledger/consistency.json"], "ledger/consistency.json", "consistency")
    notes.setdefault(summary["latest_size"], consistency["latest_checkpoint"])
    names = sorted(name for name in contents if name.startswith("ledger/timestamps/"))
    if not names:
        if tsa_cas:
            raise fail("timestamp", "--tsa-ca was given, but the bundle holds no timestamp token (ledger/timestamps/)")
        report.ok("timestamps: none in the bundle; the checkpoints' times are the operator's word only")
        return
    stamped = set()
    for name in names:
        match = _TOKEN_NAME.match(name)
        if not match or int(match.group(1)) not in notes:
            raise fail("timestamp", f"{name} does not name the bundle's checkpoint or its latest one")
        size = int(match.group(1))
        report.ok(check_timestamp_token(contents[name], notes[size], tsa_cas, name))
        stamped.add(size)
    if tsa_cas and summary["checkpoint_size"] not in stamped:
        raise fail("timestamp", f"the bundle's checkpoint @{summary['checkpoint_size']} has no timestamp token")


# --- Completeness of each subject's history (subject_prev) ----------------------------------
# From the ledger's cut-over seq (the manifest's `subject_prev_from`) on, every entry's canonical
# bytes name the seq of the previous entry about the same subject (`subject_prev`, null for the
# first). For each subject the bundle includes whole (`subjects`, not the bounded ones, which
# hold only some actions), the included entries must then form one unbroken list: each names
# the one before it in the bundle, and the first names none, so no entry between the subject's
# first entry and its latest one in the bundle can be left out unseen.

SUBJECT_PREV_ABSENT = object()


def check_subject_histories(links: Sequence[tuple[int, Any, Any]], subjects: Any, cut_over: Any) -> str:
    """`links` is (seq, (type, id) or None, subject_prev or SUBJECT_PREV_ABSENT) in seq order.

    Returns the report line; raises VerificationError naming the first gap.
    """
    if cut_over is None:
        return ("subject histories: NOT checked (the bundle predates subject_prev; the manifest names no "
                "subject_prev_from)")
    if isinstance(cut_over, bool) or not isinstance(cut_over, int) or cut_over < 0:
        raise fail("manifest", "subject_prev_from is not a non-negative integer")
    latest: dict[Any, int] = {}
    legacy: set[Any] = set()
    for seq, key, claimed in links:
        if seq < cut_over:
            if claimed is not SUBJECT_PREV_ABSENT:
                raise fail("subject-history", f"entry seq {seq} has subject_prev, but the ledger's cut-over is "
                           f"seq {cut_over}")
            if key in subjects:
                latest[key] = seq
                legacy.add(key)
            continue
        if claimed is SUBJECT_PREV_ABSENT:
            raise fail("subject-history", f"entry seq {seq} lacks subject_prev, though it follows the ledger's "
                       f"cut-over (seq {cut_over})")
        if claimed is not None and (isinstance(claimed, bool) or not isinstance(claimed, int)
                                    or not 0 <= claimed < seq):
            raise fail("subject-history", f"entry seq {seq}: subject_prev is not an earlier seq")
        if key not in subjects:
            continue
        before = latest.get(key)
        if claimed != before:
            name = f"{key[0]}:{key[1]}"
            if claimed is None:
                raise fail("subject-history", f"subject {name}: entry seq {seq} says it is the first entry about "
                           f"it, but the bundle holds seq {before} about it before")
            if before is None:
                raise fail("subject-history", f"subject {name}: gap: seq {claimed}, the entry before seq {seq}, "
                           "is missing from the bundle (its first entry about the subject is not the first one)")
            if claimed > before:
                raise fail("subject-history", f"subject {name}: gap: seq {claimed} is missing between seq {before} "
                           f"and seq {seq}")
            raise fail("subject-history", f"subject {name}: entry seq {seq} names seq {claimed} as the previous "
                       f"entry about it, but the bundle holds seq {before} about it in between")
        latest[key] = seq
    return (f"subject histories: each of the {len(latest)} subject(s) with entries has every entry between its "
            f"first and its latest one in the bundle (subject_prev links, from seq {cut_over})"
            + (f"; {len(legacy)} of them also have entries from before seq {cut_over}, unlinked" if legacy else ""))


# --- The bundle ----------------------------------------------------------------------------

def _safe_member_name(name: str) -> None:
    if not name or len(name) > MAX_PATH_CHARS:
        raise fail("zip", f"member name {name[:60]!r} is empty or too long")
    if "\\" in name or "\x00" in name or name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise fail("zip", f"member name {name!r} is absolute or not a POSIX path")
    if name.endswith("/"):
        raise fail("zip", f"member {name!r} is a directory entry; bundles hold files only")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts) or posixpath.normpath(name) != name:
        raise fail("zip", f"member name {name!r} is not a normalized relative path")
    if unicodedata.normalize("NFC", name) != name:
        raise fail("zip", f"member name {name!r} is not in Unicode NFC")


class Member:
    """One zip member as its central-directory entry describes it (cross-checked with its local header)."""

    def __init__(self, name: str, name_bytes: bytes, flags: int, method: int, crc: int, compress_size: int,
                 file_size: int, header_offset: int) -> None:
        self.name = name
        self.name_bytes = name_bytes
        self.flags = flags
        self.method = method
        self.crc = crc
        self.compress_size = compress_size
        self.file_size = file_size
        self.header_offset = header_offset
        self.data_offset = 0
        self.end = 0  # offset just past the member's data (and its data descriptor, if any)


_LOCAL_SIG = b"PK\x03\x04"
_CENTRAL_SIG = b"PK\x01\x02"
_EOCD_SIG = b"PK\x05\x06"
_ZIP64_EOCD_SIG = b"PK\x06\x06"
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_DESCRIPTOR_SIG = b"PK\x07\x08"
_U32_MAX = 0xFFFFFFFF
_U16_MAX = 0xFFFF
_READ_CHUNK = 1024 * 1024


def _zip64_extra(extra: bytes, wanted: Sequence[str], where: str) -> dict[str, int]:
    """The 64-bit values of the ZIP64 extra field (tag 0x0001), in the order the spec gives them."""
    position = 0
    found: bytes | None = None
    while position + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, position)
        body = extra[position + 4:position + 4 + size]
        if len(body) != size:
            raise fail("zip", f"{where}: an extra field runs past its header")
        if tag == 0x0001:
            if found is not None:
                raise fail("zip", f"{where}: two ZIP64 extra fields")
            found = body
        position += 4 + size
    if position != len(extra):
        raise fail("zip", f"{where}: the extra fields do not parse")
    if not wanted:
        return {}
    if found is None or len(found) < 8 * len(wanted):
        raise fail("zip", f"{where}: a 32-bit field is 0xFFFFFFFF but the ZIP64 extra field lacks its value")
    return {name: struct.unpack_from("<Q", found, 8 * index)[0] for index, name in enumerate(wanted)}


def _has_zip64_field(extra: bytes) -> bool:
    position = 0
    while position + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, position)
        if tag == 0x0001:
            return True
        position += 4 + size
    return False


class Bundle:
    """A zip read strictly, by its own parser (not `zipfile`, whose tolerance is the attack surface).

    The file must be exactly: local header + data of each member, back to back from byte 0, then
    the central directory, then (for ZIP64) the ZIP64 end record and its locator, then the end
    record, which ends the file. Each local header must agree with its central-directory entry
    (name, flags, method, CRC-32, sizes); names are unique; members neither overlap nor leave gaps.
    So every zip reader, streaming or not, sees the same members with the same bytes.
    """

    def __init__(self, path: str) -> None:
        try:
            self.handle = open(path, "rb")  # noqa: SIM115 - kept open for the reads that follow
            self.handle.seek(0, 2)
            self.size = self.handle.tell()
        except OSError as exc:
            raise fail("zip", f"cannot open {path}: {exc}") from None
        try:
            self._index()
        except BaseException:
            self.handle.close()
            raise

    def _index(self) -> None:
        members = self._central_directory()
        if len(members) > MAX_MEMBERS:
            raise fail("zip", f"{len(members)} members exceed the limit of {MAX_MEMBERS}")
        self.infos: dict[str, Member] = {}
        folded: dict[str, str] = {}
        total = 0
        for member in members:
            name = member.name
            _safe_member_name(name)
            if name in self.infos:
                raise fail("zip", f"member {name!r} appears twice")
            if name.casefold() in folded:
                raise fail("zip", f"members {folded[name.casefold()]!r} and {name!r} differ only in case")
            folded[name.casefold()] = name
            if member.file_size > MAX_MEMBER_BYTES:
                raise fail("zip", f"member {name!r} declares {member.file_size} bytes, over the limit")
            if (member.file_size > RATIO_CHECK_MIN_BYTES
                    and member.file_size > MAX_COMPRESSION_RATIO * max(member.compress_size, 1)):
                raise fail("zip", f"member {name!r} has a compression ratio typical of a zip bomb")
            total += member.file_size
            self.infos[name] = member
        if total > MAX_TOTAL_BYTES:
            raise fail("zip", f"members declare {total} bytes in all, over the limit")
        self._local_headers(members)

    def _read_at(self, offset: int, size: int) -> bytes:
        self.handle.seek(offset)
        data = self.handle.read(size)
        if len(data) != size:
            raise fail("zip", f"the file ends inside a structure at offset {offset}")
        return data

    def _central_directory(self) -> list[Member]:
        if self.size < 22:
            raise fail("zip", "not a zip: the file is too short")
        tail = self._read_at(self.size - 22, 22)
        if tail[:4] != _EOCD_SIG or struct.unpack_from("<H", tail, 20)[0] != 0:
            window = self._read_at(max(0, self.size - 65557 - 1024), min(self.size, 65557 + 1024))
            found = window.rfind(_EOCD_SIG)
            if found < 0:
                raise fail("zip", "not a zip: no end-of-central-directory record")
            trailing = len(window) - found - 22
            raise fail("zip", f"{trailing} byte(s) after the end-of-central-directory record "
                       "(a comment or appended data); a bundle ends with its end record")
        eocd_at = self.size - 22
        disk, cd_disk, count_disk, count, cd_size, cd_offset, _ = struct.unpack("<HHHHIIH", tail[4:])
        end_of_cd = eocd_at
        if _U16_MAX in (count_disk, count) or _U32_MAX in (cd_size, cd_offset):
            if eocd_at < 20 + 56:
                raise fail("zip", "the ZIP64 end records are missing")
            locator = self._read_at(eocd_at - 20, 20)
            if locator[:4] != _ZIP64_LOCATOR_SIG:
                raise fail("zip", "the ZIP64 end-record locator is missing")
            locator_disk, record_at, disks = struct.unpack("<IQI", locator[4:])
            if locator_disk != 0 or disks != 1 or record_at != eocd_at - 20 - 56:
                raise fail("zip", "the ZIP64 end record is not right before its locator (or spans disks)")
            record = self._read_at(record_at, 56)
            if record[:4] != _ZIP64_EOCD_SIG or struct.unpack_from("<Q", record, 4)[0] != 44:
                raise fail("zip", "the ZIP64 end record is malformed")
            disk, cd_disk, count_disk, count, cd_size, cd_offset = struct.unpack_from("<IIQQQQ", record, 16)
            end_of_cd = record_at
        if disk != 0 or cd_disk != 0 or count_disk != count:
            raise fail("zip", "multi-disk zips are not bundles")
        if cd_offset + cd_size != end_of_cd:
            gap = end_of_cd - cd_size - cd_offset
            raise fail("zip", f"the central directory is not where the end record puts it: {gap} byte(s) "
                       "before the first local header or between the data and the central directory "
                       "(e.g. a zip prepended to the bundle)")
        if count > MAX_MEMBERS:
            raise fail("zip", f"{count} members exceed the limit of {MAX_MEMBERS}")
        if cd_size > 64 * 1024 * 1024 + 1024 * count:
            raise fail("zip", "the central directory is implausibly large")
        directory = self._read_at(cd_offset, cd_size)
        self.cd_offset = cd_offset
        members: list[Member] = []
        position = 0
        for index in range(count):
            if directory[position:position + 4] != _CENTRAL_SIG or position + 46 > len(directory):
                raise fail("zip", f"central-directory entry {index} is malformed")
            (flags, method, _time, _date, crc, csize, usize, name_len, extra_len, comment_len, entry_disk,
             _internal, _external, offset) = struct.unpack_from("<8xHHHHIIIHHHHHII", directory, position)
            name_at = position + 46
            extra_at = name_at + name_len
            end = extra_at + extra_len + comment_len
            if end > len(directory):
                raise fail("zip", f"central-directory entry {index} runs past the directory")
            name_bytes = directory[name_at:extra_at]
            name = self._decode_name(name_bytes, flags, f"central-directory entry {index}")
            wanted = [field for field, value in (("file_size", usize), ("compress_size", csize),
                                                 ("offset", offset)) if value == _U32_MAX]
            if entry_disk == _U16_MAX:
                raise fail("zip", f"{name!r}: multi-disk zips are not bundles")
            big = _zip64_extra(directory[extra_at:extra_at + extra_len], wanted, repr(name))
            if entry_disk != 0:
                raise fail("zip", f"{name!r}: multi-disk zips are not bundles")
            if flags & 0x41:
                raise fail("zip", f"{name!r} is encrypted")
            if method not in (0, 8):
                raise fail("zip", f"{name!r} uses compression method {method}; bundles use stored or deflate")
            members.append(Member(name, name_bytes, flags, method, crc, big.get("compress_size", csize),
                                  big.get("file_size", usize), big.get("offset", offset)))
            position = end
        if position != len(directory):
            raise fail("zip", f"{len(directory) - position} byte(s) in the central directory that no entry uses")
        return members

    @staticmethod
    def _decode_name(raw: bytes, flags: int, where: str) -> str:
        try:
            return raw.decode("utf-8") if flags & 0x800 else raw.decode("cp437")
        except UnicodeDecodeError:
            raise fail("zip", f"{where}: the name is not UTF-8") from None

    def _local_headers(self, members: list[Member]) -> None:
        expected_at = 0
        previous: Member | None = None
        for member in sorted(members, key=lambda m: m.header_offset):
            name = member.name
            if member.header_offset < expected_at:
                assert previous is not None
                raise fail("zip", f"members {previous.name!r} and {name!r} overlap")
            if member.header_offset > expected_at:
                where = "before the first local header" if previous is None else \
                    f"between members {previous.name!r} and {name!r}"
                raise fail("zip", f"{member.header_offset - expected_at} byte(s) {where} that no entry describes")
            header = self._read_at(member.header_offset, 30)
            if header[:4] != _LOCAL_SIG:
                raise fail("zip", f"{name!r}: no local header where the central directory points")
            (_version, flags, method, _time, _date, crc, csize, usize, name_len,
             extra_len) = struct.unpack_from("<HHHHHIIIHH", header, 4)
            name_bytes = self._read_at(member.header_offset + 30, name_len)
            extra = self._read_at(member.header_offset + 30 + name_len, extra_len)
            differs = []
            if name_bytes != member.name_bytes:
                differs.append(f"name {name_bytes[:60]!r}")
            if flags != member.flags:
                differs.append(f"flags {flags:#x}")
            if method != member.method:
                differs.append(f"method {method}")
            wanted = [field for field, value in (("file_size", usize), ("compress_size", csize))
                      if value == _U32_MAX]
            if wanted:
                wanted = ["file_size", "compress_size"]  # the spec: a local ZIP64 field holds both
            big = _zip64_extra(extra, wanted, repr(name))
            usize, csize = big.get("file_size", usize), big.get("compress_size", csize)
            data_at = member.header_offset + 30 + name_len + extra_len
            end = data_at + member.compress_size
            if flags & 0x08:
                # Sizes and CRC follow the data; the local header may hold zeros instead.
                if (crc, csize, usize) != (0, 0, 0) and (crc, csize, usize) != (member.crc, member.compress_size,
                                                                                 member.file_size):
                    differs.append("CRC-32 or sizes")
                descriptor = self._read_at(end, 4)
                if descriptor == _DESCRIPTOR_SIG:
                    end += 4
                width = 8 if _has_zip64_field(extra) else 4
                fields = self._read_at(end, 4 + 2 * width)
                crc, csize, usize = struct.unpack("<I" + ("QQ" if width == 8 else "II"), fields)
                end += 4 + 2 * width
            if crc != member.crc:
                differs.append(f"CRC-32 {crc:08x}")
            if csize != member.compress_size:
                differs.append(f"compressed size {csize}")
            if usize != member.file_size:
                differs.append(f"size {usize}")
            if differs:
                raise fail("zip", f"{name!r}: the local header differs from the central directory: "
                           + ", ".join(differs))
            member.data_offset = data_at
            member.end = end
            expected_at = end
            previous = member
        if expected_at != self.cd_offset:
            if expected_at > self.cd_offset:
                raise fail("zip", "the last member overlaps the central directory")
            raise fail("zip", f"{self.cd_offset - expected_at} byte(s) between the last member and the "
                       "central directory that no entry describes")

    def names(self) -> list[str]:
        return list(self.infos)

    def close(self) -> None:
        self.handle.close()

    def read(self, name: str, limit: int | None = None) -> bytes:
        info = self.infos.get(name)
        if info is None:
            raise fail("manifest", f"{name} is missing from the bundle")
        cap = info.file_size if limit is None else min(info.file_size, limit)
        if info.file_size > cap:
            raise fail("zip", f"{name} is larger than allowed ({info.file_size} bytes)")
        self.handle.seek(info.data_offset)
        remaining = info.compress_size
        parts: list[bytes] = []
        crc = 0
        produced = 0
        inflater = zlib.decompressobj(-15) if info.method == 8 else None
        try:
            while remaining:
                chunk = self.handle.read(min(remaining, _READ_CHUNK))
                if not chunk:
                    raise fail("zip", f"{name} ends early")
                remaining -= len(chunk)
                if inflater is not None:
                    chunk = inflater.decompress(chunk, cap + 1 - produced)
                    if inflater.unconsumed_tail:
                        raise fail("zip", f"{name} is larger than declared")
                produced += len(chunk)
                if produced > cap:
                    raise fail("zip", f"{name} is larger than declared")
                crc = zlib.crc32(chunk, crc)
                parts.append(chunk)
            if inflater is not None:
                if not inflater.eof or inflater.unused_data:
                    raise fail("zip", f"{name}: the deflate stream does not end exactly at the member's end")
        except zlib.error as exc:
            raise fail("zip", f"{name} cannot be inflated: {exc}") from None
        if produced != info.file_size:
            raise fail("zip", f"{name}: {produced} bytes, the central directory says {info.file_size}")
        if crc != info.crc:
            raise fail("zip", f"{name}: CRC-32 differs from the central directory")
        return b"".join(parts)


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def ok(self, text: str) -> None:
        self.lines.append(f"  ok  {text}")


def load_trusted_keys(values: Sequence[str]) -> list[PublicKey]:
    """Each value is a vkey string, or a file holding vkeys (one per line) or one PEM public key."""
    trusted: list[PublicKey] = []
    for value in values:
        text: str | None = None
        if "+" in value and not value.endswith((".vkey", ".pem", ".txt")):
            text = value
        else:
            try:
                with open(value, "rb") as handle:
                    data = handle.read(1024 * 1024)
            except OSError as exc:
                raise fail("trusted-key", f"cannot read {value}: {exc}") from None
            if b"-----BEGIN PUBLIC KEY-----" in data:
                try:
                    trusted.append(parse_pem(data, source=value))
                except ValueError as exc:
                    raise fail("trusted-key", f"{value}: {exc}") from None
                continue
            text = data.decode("utf-8", "replace")
        for line in text.splitlines():
            if line.strip():
                try:
                    trusted.append(parse_vkey(line, source=value))
                except ValueError as exc:
                    raise fail("trusted-key", f"{value}: {exc}") from None
    return trusted


def _is_trusted(key: PublicKey, trusted: Sequence[PublicKey]) -> bool:
    return any(t.raw == key.raw and (t.name is None or key.name is None or t.name == key.name) for t in trusted)


def verify_bundle(path: str, trusted_values: Sequence[str] = (), witness_policy: WitnessPolicy | None = None,
                  max_cosignature_age_s: float | None = None, now: float | None = None, *,
                  tsa_ca_values: Sequence[str] = (), require_signed_approvals: bool = False) -> list[str]:
    """Run every check; return the summary lines, or raise VerificationError at the first failure."""
    trusted = load_trusted_keys(trusted_values)
    tsa_cas = load_tsa_cas(tsa_ca_values)
    bundle = Bundle(path)
    try:
        return _verify_open_bundle(bundle, path, trusted, witness_policy, max_cosignature_age_s, now,
                                   tsa_cas=tsa_cas, require_signed_approvals=require_signed_approvals)
    finally:
        bundle.close()


def _verify_open_bundle(bundle: Bundle, path: str, trusted: Sequence[PublicKey],
                        witness_policy: WitnessPolicy | None = None, max_cosignature_age_s: float | None = None,
                        now: float | None = None, *, tsa_cas: Sequence[Any] = (),
                        require_signed_approvals: bool = False) -> list[str]:
    report = Report()

    # 1. The manifest and its signature.
    manifest_bytes = bundle.read(MANIFEST, limit=256 * 1024 * 1024)
    envelope_bytes = bundle.read(MANIFEST_ENVELOPE, limit=1024 * 1024)
    manifest = load_json(manifest_bytes, MANIFEST, "manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise fail("manifest", f"{MANIFEST} is not a {BUNDLE_FORMAT} manifest")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise fail("manifest", "the manifest has no file list")
    declared: dict[str, tuple[int, str]] = {}
    for item in files:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise fail("manifest", "a manifest file record has no path")
        name, size, digest = item["path"], item.get("size"), item.get("sha256")
        _safe_member_name(name)
        if name in declared:
            raise fail("manifest", f"{name} is listed twice")
        if name in (MANIFEST, MANIFEST_ENVELOPE):
            raise fail("manifest", f"the manifest must not list {name}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise fail("manifest", f"{name}: size is not a non-negative integer")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise fail("manifest", f"{name}: sha256 is not 64 lowercase hex digits")
        declared[name] = (size, digest)

    # 2. The member list is exactly the manifest, nothing added, nothing removed.
    present = set(bundle.names()) - {MANIFEST, MANIFEST_ENVELOPE}
    added = sorted(present - set(declared))
    removed = sorted(set(declared) - present)
    if added:
        more = f" (+{len(added) - 1} more)" if len(added) > 1 else ""
        raise fail("manifest", f"file not in the manifest: {added[0]}{more}")
    if removed:
        more = f" (+{len(removed) - 1} more)" if len(removed) > 1 else ""
        raise fail("manifest", f"file in the manifest but missing: {removed[0]}{more}")

    # 3. Keys shipped in keys/ (a .vkey and its .pem must be the same key).
    keys: list[PublicKey] = []
    by_stem: dict[str, PublicKey] = {}
    for name in sorted(declared):
        if not name.startswith("keys/"):
            continue
        data = _read_declared(bundle, name, declared)
        stem, ext = posixpath.splitext(name)
        try:
            if ext == ".vkey":
                key = parse_vkey(data.decode("utf-8"), source=name)
            elif ext == ".pem":
                key = parse_pem(data, source=name)
            else:
                raise fail("keys", f"{name} is neither .vkey nor .pem")
        except (ValueError, UnicodeDecodeError) as exc:
            raise fail("keys", f"{name}: {exc}") from None
        other = by_stem.get(stem)
        if other is not None and other.raw != key.raw:
            raise fail("keys", f"{stem}.vkey and {stem}.pem are different keys")
        if other is None or key.name is not None:
            by_stem[stem] = key
    keys = list(by_stem.values())
    if not keys:
        raise fail("keys", "the bundle holds no keys")
    report.ok(f"{len(keys)} public key(s) in keys/ parse, and each .vkey matches its .pem")

    # 4. The manifest's DSSE signature covers exactly manifest.json.
    payload_type, payload, signers = verify_dsse(envelope_bytes, keys, MANIFEST_ENVELOPE)
    if payload_type != MANIFEST_PAYLOAD_TYPE:
        raise fail("manifest-signature", f"payloadType is {payload_type!r}, expected {MANIFEST_PAYLOAD_TYPE!r}")
    if payload != manifest_bytes:
        raise fail("manifest-signature", "the signed payload is not byte-for-byte manifest.json")
    if trusted and not any(_is_trusted(k, trusted) for k in signers):
        raise fail("trust", "manifest.dsse.json is not signed by a trusted key: signed by "
                   + ", ".join(k.label() for k in signers))
    report.ok(f"manifest.dsse.json: DSSE signature over manifest.json by {', '.join(k.label() for k in signers)}"
              + (" (trusted)" if trusted else ""))

    # 5. Every file's size and SHA-256.
    contents: dict[str, bytes] = {}
    for name in sorted(declared):
        contents[name] = _read_declared(bundle, name, declared)
    report.ok(f"{len(declared)} file(s): sizes and SHA-256 digests match the manifest; no file added or removed")

    # 6. Ledger entries, checkpoint, proofs, consistency.
    summary = _verify_ledger(contents, manifest, keys, trusted, report)
    check_timestamps(contents, summary, tsa_cas, report)  # RFC 3161 tokens, if any

    # 6b. Witness cosignatures on a checkpoint that extends the bundle's (see that section).
    witness_lines = ["witnesses:   none checked: history is vouched for by the operator only "
                     "(give --policy or --witness-key)"]
    if witness_policy is not None:
        witness_lines = verify_witnessed(contents, contents["ledger/checkpoint.txt"].decode("utf-8"), keys,
                                         trusted, witness_policy, time.time() if now is None else now,
                                         max_cosignature_age_s, report)

    # 7. Attestations.
    attestations = sorted(n for n in declared if n.startswith("attestations/"))
    for name in attestations:
        _, _, attestation_signers = verify_dsse(contents[name], keys, name)
        if trusted and not any(_is_trusted(k, trusted) for k in attestation_signers):
            raise fail("trust", f"{name} is not signed by a trusted key: signed by "
                       + ", ".join(k.label() for k in attestation_signers))
        # A valid signature is not enough: the signed log must have recorded this very envelope.
        if sha256_hex(contents[name]) not in summary["recorded_digests"]:
            raise fail("attestations", f"{name} is not recorded (by its SHA-256) in any ledger entry of the bundle")
    if attestations:
        report.ok(f"{len(attestations)} attestation envelope(s): DSSE signatures by keys in keys/, each recorded "
                  "by its SHA-256 in an included ledger entry")

    # 8. Every approval decision, replayed from the entries against the policy it was decided under.
    replayed_documents = [(seq, json.loads(canonical.decode("utf-8"))) for seq, canonical in summary["replayed"]]
    violations, replayed_count = replay_approvals(replayed_documents)
    if violations:
        raise ApprovalViolations(violations)
    report.ok(f"{replayed_count} approval(s) replayed from the entries: quorum, required roles held at the "
              "time, separation of duties and the evidence the policy asked for all hold")
    # 8b. Approvals signed by the approver (see its section).
    violations, signed_count = check_signed_approvals(replayed_documents, log_origin=summary["origin"],
                                                      require_signed=require_signed_approvals)
    if violations:
        raise ApprovalViolations(violations)
    report.ok(f"{signed_count} decision(s) signed by the approver: passkey or DSSE signature over the statement, "
              "credential registered earlier by the approver" + ("; every decision signed" if require_signed_approvals
                                                                 else ""))

    audits = sorted(n for n in declared if n.startswith("audits/"))
    for name in audits:
        if name.endswith(".json"):
            load_json(contents[name], name, "audits")
    reports = sorted(n for n in declared if n.startswith("report/"))
    if audits or reports:
        report.ok(f"{len(audits)} audit result(s) and {len(reports)} report file(s): digests match the signed manifest")
    for line in _erased_input_lines(contents, audits, summary["erased_digests"]):
        report.ok(line)
    verify_monitoring(contents, report)  # 9. monitoring runs (own section)

    header = [
        f"bundle:      {path}",
        f"subjects:    {', '.join(f'{s[0]}:{s[1]}' for s in summary['subjects'][:6])}"
        + (f" (+{len(summary['subjects']) - 6} more)" if len(summary["subjects"]) > 6 else ""),
        f"entries:     {summary['entries']} (seq {summary['first_seq']}..{summary['last_seq']})",
        f"checkpoint:  {summary['origin']} @ {summary['checkpoint_size']}; latest @ {summary['latest_size']}",
        "trust:       " + ("keys pinned with --trusted-key" if trusted else
                           "keys taken from the bundle itself: consistent with itself only "
                           "(pin the service's keys with --trusted-key)"),
        *witness_lines,
    ]
    return header + report.lines


def _read_declared(bundle: Bundle, name: str, declared: dict[str, tuple[int, str]]) -> bytes:
    size, digest = declared[name]
    info = bundle.infos[name]
    if info.file_size != size:
        raise fail("digest", f"{name}: size {info.file_size} differs from the manifest's {size}")
    data = bundle.read(name)
    if len(data) != size:
        raise fail("digest", f"{name}: size {len(data)} differs from the manifest's {size}")
    if sha256_hex(data) != digest:
        raise fail("digest", f"{name}: SHA-256 differs from the manifest")
    return data


def _open_checkpoint(note_text: str, keys: Sequence[PublicKey], trusted: Sequence[PublicKey],
                     what: str) -> tuple[CheckpointBody, list[PublicKey]]:
    try:
        text, signers = open_note(note_text, keys)
        body = parse_checkpoint_body(text)
    except ValueError as exc:
        raise fail("checkpoint", f"{what}: {exc}") from None
    if trusted and not any(_is_trusted(k, trusted) for k in signers):
        names = ", ".join(k.label() for k in signers)
        raise fail("trust", f"{what} is not signed by a trusted key: signed by {names}")
    return body, signers


def _verify_ledger(contents: dict[str, bytes], manifest: dict[str, Any], keys: Sequence[PublicKey],
                   trusted: Sequence[PublicKey], report: Report) -> dict[str, Any]:
    for required in ("ledger/entries.jsonl", "ledger/checkpoint.txt", "ledger/proofs.json", "ledger/consistency.json"):
        if required not in contents:
            raise fail("ledger", f"{required} is missing")
    subjects_raw = manifest.get("subjects")
    if not isinstance(subjects_raw, list):
        raise fail("manifest", "the manifest has no subject list")
    subjects = set()
    for item in subjects_raw:
        if not (isinstance(item, dict) and isinstance(item.get("type"), str) and isinstance(item.get("id"), str)):
            raise fail("manifest", "a subject is not {type, id}")
        subjects.add((item["type"], item["id"]))
    bounded = _bounded_subjects(manifest.get("bounded_subjects", []))

    # The checkpoint the proofs are against.
    try:
        checkpoint_text = contents["ledger/checkpoint.txt"].decode("utf-8")
    except UnicodeDecodeError:
        raise fail("checkpoint", "ledger/checkpoint.txt is not UTF-8") from None
    checkpoint, cp_signers = _open_checkpoint(checkpoint_text, keys, trusted, "ledger/checkpoint.txt")
    report.ok(f"ledger/checkpoint.txt: C2SP signed note by {', '.join(k.label() for k in cp_signers)}; "
              f"tree size {checkpoint.tree_size}")
    origin = manifest.get("origin")
    if origin is not None and origin != checkpoint.origin:
        raise fail("checkpoint", f"origin {checkpoint.origin!r} differs from the manifest's {origin!r}")

    # Entries: hash, JSON, seq, order, subject, chain links.
    entries: list[tuple[int, bytes]] = []
    # Raw bytes, parsed again only if there is an approval request to replay: keeping 100,000
    # parsed documents alive would make the garbage collector scan them over and over.
    replayed: list[tuple[int, bytes]] = []
    has_requests = False
    recorded_digests: set[str] = set()
    erased_digests: set[str] = set()
    previous_seq = -1
    previous_hash: bytes | None = None
    subject_links: list[tuple[int, Any, Any]] = []
    data = contents["ledger/entries.jsonl"]
    if data and not data.endswith(b"\n"):
        raise fail("entries", "ledger/entries.jsonl does not end with a newline")
    lines = data.split(b"\n")[:-1] if data else []
    root_hex_zero = ZERO_HASH.hex()
    for line_number, line in enumerate(lines, start=1):
        seq, canonical_text, entry_hash_hex = _parse_entry_line(line, line_number)
        canonical = b64decode_fast(canonical_text, f"entry seq {seq} canonical")
        entry_hash = hashlib.sha256(canonical).digest()
        if entry_hash.hex() != entry_hash_hex:
            raise fail("entries", f"entry seq {seq}: entry_hash is not SHA-256 of its canonical bytes")
        try:
            document = json.loads(canonical.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise fail("entries", f"entry seq {seq}: canonical bytes are not valid JSON") from None
        if not isinstance(document, dict) or document.get("seq") != seq:
            said = document.get("seq") if isinstance(document, dict) else None
            raise fail("entries", f"entry seq {seq}: the canonical document says seq {said}")
        if seq <= previous_seq:
            raise fail("entries", f"entry seq {seq} follows seq {previous_seq}: entries are not in ledger order")
        prev_hash_hex = document.get("prev_hash")
        if not isinstance(prev_hash_hex, str) or not _HEX64.match(prev_hash_hex):
            raise fail("entries", f"entry seq {seq}: prev_hash is not 64 hex digits")
        if seq == 0 and prev_hash_hex != root_hex_zero:
            raise fail("entries", "entry seq 0 must have a prev_hash of 32 zero bytes")
        if previous_hash is not None and seq == previous_seq + 1 and prev_hash_hex != previous_hash.hex():
            raise fail("entries", f"entry seq {seq}: prev_hash does not link to entry seq {previous_seq}")
        subject = document.get("subject")
        key: tuple[str, str] | None = None
        if isinstance(subject, dict) and isinstance(subject.get("type"), str) and isinstance(subject.get("id"), str):
            key = (subject["type"], subject["id"])
        if key not in subjects:
            limit = bounded.get(key) if key is not None else None
            action = document.get("action")
            if (limit is None or seq > limit[0] or not isinstance(action, str)
                    or not action.startswith(limit[1])):
                raise fail("entries", f"entry seq {seq}: its subject is not one of the bundle's subjects "
                           "(nor a bounded subject within its actions and seq)")
        if key is not None and key[0] in REPLAYED_TYPES:
            replayed.append((seq, canonical))
            has_requests = has_requests or key[0] == "governance.approvalrequest"
        if seq >= checkpoint.tree_size:
            raise fail("entries", f"entry seq {seq} is not covered by the checkpoint of size {checkpoint.tree_size}")
        entries.append((seq, canonical))
        subject_links.append((seq, key, document.get("subject_prev", SUBJECT_PREV_ABSENT)))
        if b"envelope_sha256" in canonical:
            recorded_digests.update(_digests_named(document.get("payload"), "envelope_sha256"))
        if b"digests_erased" in canonical:  # sensitive data erased (see _erased_input_lines)
            erased_digests.update(_erased_digests(document))
        previous_seq, previous_hash = seq, entry_hash
    expected_count = manifest.get("entry_count")
    if expected_count is not None and expected_count != len(entries):
        raise fail("entries", f"{len(entries)} entries, but the manifest says {expected_count}")
    report.ok(f"{len(entries)} ledger entr{'y' if len(entries) == 1 else 'ies'}: entry_hash = SHA-256(canonical), "
              "seq matches, strictly increasing, chain links hold where seqs are consecutive, subjects match")

    # Inclusion proofs, one per entry, in the same order.
    proofs = load_json(contents["ledger/proofs.json"], "ledger/proofs.json", "proofs") \
        if len(contents["ledger/proofs.json"]) < 4096 else _load_json_fast(contents["ledger/proofs.json"])
    if not isinstance(proofs, dict) or not isinstance(proofs.get("proofs"), list):
        raise fail("proofs", "ledger/proofs.json has no proof list")
    if proofs.get("tree_size") != checkpoint.tree_size:
        raise fail("proofs", f"proofs are against tree size {proofs.get('tree_size')}, "
                   f"the checkpoint's is {checkpoint.tree_size}")
    proof_list = proofs["proofs"]
    if len(proof_list) != len(entries):
        raise fail("proofs", f"{len(proof_list)} proofs for {len(entries)} entries")
    decoded: dict[str, bytes] = {}

    def decode(text: Any) -> bytes:
        value = decoded.get(text) if isinstance(text, str) else None
        if value is None:
            value = b64decode_fast(text, "a proof hash")
            decoded[text] = value
        return value

    verifier = InclusionVerifier(checkpoint.tree_size, checkpoint.root_hash)
    for (seq, canonical), proof in zip(entries, proof_list):  # noqa: B905 (lengths checked; Python 3.9)
        if not isinstance(proof, dict):
            raise fail("proofs", f"the proof for entry seq {seq} is not an object")
        if proof.get("seq") != seq or proof.get("leaf_index") != seq:
            raise fail("proofs", f"the proof for entry seq {seq} names seq {proof.get('seq')} "
                       f"and leaf {proof.get('leaf_index')}")
        if proof.get("tree_size") != checkpoint.tree_size:
            raise fail("proofs", f"the proof for entry seq {seq} is against tree size {proof.get('tree_size')}")
        hashes = proof.get("hashes")
        if not isinstance(hashes, list):
            raise fail("proofs", f"the proof for entry seq {seq} has no hash list")
        try:
            verifier.verify(leaf_hash(canonical), seq, hashes, decode)
        except ValueError as exc:
            raise fail("inclusion", f"entry seq {seq}: {exc}") from None
    report.ok(f"{len(entries)} RFC 9162 inclusion proof(s) lead to the checkpoint root")
    report.ok(check_subject_histories(subject_links, subjects, manifest.get("subject_prev_from")))

    # Consistency with the latest checkpoint.
    consistency = load_json(contents["ledger/consistency.json"], "ledger/consistency.json", "consistency")
    if not isinstance(consistency, dict):
        raise fail("consistency", "ledger/consistency.json is not an object")
    latest_note = consistency.get("latest_checkpoint")
    if not isinstance(latest_note, str):
        raise fail("consistency", "ledger/consistency.json has no latest_checkpoint")
    latest, latest_signers = _open_checkpoint(latest_note, keys, trusted, "the latest checkpoint")
    if latest.origin != checkpoint.origin:
        raise fail("consistency", f"the latest checkpoint's origin {latest.origin!r} "
                   f"differs from {checkpoint.origin!r}")
    if consistency.get("first") != checkpoint.tree_size or consistency.get("second") != latest.tree_size:
        raise fail("consistency", "the proof's first/second sizes do not match the two checkpoints")
    hashes = consistency.get("hashes")
    if not isinstance(hashes, list):
        raise fail("consistency", "ledger/consistency.json has no hash list")
    path = [b64decode_strict(h, "consistency proof hash") for h in hashes]
    try:
        verify_consistency(checkpoint.tree_size, latest.tree_size, path, checkpoint.root_hash, latest.root_hash)
    except ValueError as exc:
        raise fail("consistency", f"checkpoint @{checkpoint.tree_size} is not consistent with the latest "
                   f"@{latest.tree_size}: {exc}") from None
    report.ok(f"latest checkpoint @{latest.tree_size} signed by {', '.join(k.label() for k in latest_signers)}; "
              f"RFC 9162 consistency proof from @{checkpoint.tree_size} holds")

    return {
        "subjects": sorted(subjects),
        "recorded_digests": recorded_digests,
        "erased_digests": erased_digests,
        "replayed": replayed if has_requests else [],
        "entries": len(entries),
        "first_seq": entries[0][0] if entries else "-",
        "last_seq": entries[-1][0] if entries else "-",
        "origin": checkpoint.origin,
        "checkpoint_size": checkpoint.tree_size,
        "latest_size": latest.tree_size,
    }


# --- Sensitive data: audits whose input was erased (issue 18) ------------------------------------
# An audit result keeps its digests after its input data is crypto-shredded (retention ended, or an
# erasure request). That is not a failure: the result says "input erased under retention policy",
# and the bundle's ledger holds the `sealed_file.erased` / `sealed_file.rows_erased` entry naming
# the digests that are gone. A note that no erasure entry backs is refused.

ERASURE_ACTIONS = ("sealed_file.erased", "sealed_file.rows_erased")


def _erased_digests(document: dict[str, Any]) -> set[str]:
    if document.get("action") not in ERASURE_ACTIONS:
        return set()
    digests = _payload(document).get("digests_erased")
    return {d for d in digests if isinstance(d, str)} if isinstance(digests, list) else set()


def _erased_input_lines(contents: dict[str, bytes], audits: list[str], erased: set[str]) -> list[str]:
    lines = []
    for name in audits:
        if not name.endswith(".json"):
            continue
        view = load_json(contents[name], name, "audits")
        note = view.get("input_erasure") if isinstance(view, dict) else None
        if not isinstance(note, dict):
            continue
        digests = note.get("input_sha256")
        if not isinstance(digests, list) or not digests:
            raise fail("audits", f"{name}: its input erasure note names no digest")
        unbacked = [d for d in digests if d not in erased]
        if unbacked:
            raise fail("audits", f"{name} says its input was erased, but no erasure entry in the bundle names "
                       f"{', '.join(map(str, unbacked))}")
        lines.append(f"{name}: {note.get('note', 'input erased')} on {note.get('erased_at')} "
                     f"({', '.join(map(str, note.get('reasons') or []))}); the erasure is in the ledger, "
                     "and the result and its digests remain")
    return lines


def _digests_named(value: Any, key: str) -> set[str]:
    """Every string under `key` anywhere in a JSON value (entries record attestations by digest)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for name, child in item.items():
                if name == key and isinstance(child, str):
                    found.add(child)
                else:
                    stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _load_json_fast(data: bytes) -> Any:
    # Large files: the standard parser (duplicate-member checks would double the time); the
    # file's bytes are already pinned by the signed manifest.
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise fail("proofs", f"ledger/proofs.json is not valid JSON: {type(exc).__name__}") from None


# --- Monitoring runs, recomputed from their stored counts (issue 16) -------------------------
# A bundle carries monitoring/run-<id>.json: a drift run's result, the canonical JSON whose SHA-256
# its `monitor_run.completed` ledger entry records. For every column the verifier recomputes PSI and
# Jensen-Shannon from the stored bin counts (reference and current), and for categorical columns the
# chi-square test of homogeneity (Yates' correction where the run recorded it), and compares them
# with the stored values. The same formulas as governance/monitoring/drift.py, in the stdlib.

MONITORING_SHARE_FLOOR = 1e-4
MONITORING_TOLERANCE = 1e-9


def _mon_pairs(reference: Sequence[float], current: Sequence[float]) -> list[tuple[float, float]]:
    """The bins side by side; unequal lengths are a malformed result (zip(strict=True) needs Python 3.10)."""
    if len(reference) != len(current):
        raise ValueError("reference and current bin counts differ in length")
    return list(zip(reference, current))  # noqa: B905 (lengths checked above; Python 3.9)


def _mon_shares(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    return [max(c / total if total else 0.0, MONITORING_SHARE_FLOOR) for c in counts]


def monitoring_psi(reference: Sequence[float], current: Sequence[float]) -> float:
    ref, cur = _mon_shares(reference), _mon_shares(current)
    return math.fsum((c - r) * math.log(c / r) for r, c in _mon_pairs(ref, cur))


def monitoring_js(reference: Sequence[float], current: Sequence[float]) -> float:
    """Jensen-Shannon distance, base 2, of the bin shares (no floor)."""
    ref_total, cur_total = float(sum(reference)), float(sum(current))
    divergence = 0.0
    for r, c in _mon_pairs(reference, current):
        p, q = r / ref_total, c / cur_total
        middle = (p + q) / 2.0
        divergence += (p * math.log(p / middle) if p > 0 else 0.0) + (q * math.log(q / middle) if q > 0 else 0.0)
    return math.sqrt(max(divergence / 2.0 / math.log(2.0), 0.0))


def _mon_gammaincc(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x): series below a + 1, Lentz's continued fraction above."""
    if x <= 0:
        return 1.0
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        while abs(term) > abs(total) * 1e-17:
            n += 1
            term *= x / n
            total += term
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-16:
            break
    return math.exp(log_prefix) * h


def monitoring_chi2(reference: Sequence[float], current: Sequence[float], corrected: bool) -> tuple[float, int, float]:
    """Chi-square test of homogeneity of the 2 x K table (empty categories dropped): statistic, dof, p."""
    pairs = [(r, c) for r, c in _mon_pairs(reference, current) if r + c > 0]
    rows = [float(sum(r for r, _ in pairs)), float(sum(c for _, c in pairs))]
    total = rows[0] + rows[1]
    dof = len(pairs) - 1
    if dof <= 0:
        return 0.0, 0, 1.0
    statistic = 0.0
    for r, c in pairs:
        for observed, row in ((r, rows[0]), (c, rows[1])):
            expected = row * (r + c) / total
            if corrected:
                difference = expected - observed
                observed = observed + min(0.5, abs(difference)) * (1 if difference > 0 else -1 if difference < 0 else 0)
            statistic += (observed - expected) ** 2 / expected
    return statistic, dof, _mon_gammaincc(dof / 2.0, statistic / 2.0)


def _mon_close(got: float, want: Any) -> bool:
    return isinstance(want, (int, float)) and abs(got - want) <= MONITORING_TOLERANCE * max(1.0, abs(want))


def verify_monitoring(contents: dict[str, bytes], report: Report) -> None:
    """Each monitoring/run-*.json is recorded by its SHA-256, and its statistics follow from its counts."""
    names = sorted(n for n in contents if n.startswith("monitoring/run-") and n.endswith(".json"))
    if not names:
        return
    recorded: set[str] = set()
    for line in contents["ledger/entries.jsonl"].splitlines():
        if line.strip():
            document = json.loads(base64.b64decode(json.loads(line)["canonical"]))
            # A restatement (late outcomes) records its result the same way, as `monitor_run.restated`.
            if document.get("action") in ("monitor_run.completed", "monitor_run.restated"):
                recorded.update(_digests_named(document.get("payload"), "result_sha256"))
    columns = 0
    for name in names:
        if sha256_hex(contents[name]) not in recorded:
            raise fail("monitoring", f"{name} is not recorded (as result_sha256) in any monitor_run.completed entry")
        result = load_json(contents[name], name, "monitoring")
        drift = result.get("drift") if isinstance(result, dict) else None
        for column in (drift or {}).get("columns") or []:
            label = f"{name}: column {column.get('column')!r}"
            bins = column.get("bins") or {}
            reference, current = bins.get("reference"), bins.get("current")
            if not isinstance(reference, list) or not isinstance(current, list) or len(reference) != len(current):
                raise fail("monitoring", f"{label} has no stored counts")
            if not _mon_close(monitoring_psi(reference, current), column.get("psi")):
                raise fail("monitoring", f"{label}: PSI {column.get('psi')} does not follow from the counts")
            if not _mon_close(monitoring_js(reference, current), column.get("js")):
                raise fail("monitoring", f"{label}: Jensen-Shannon {column.get('js')} does not follow from the counts")
            if column.get("kind") == "categorical":
                chi2 = column.get("chi2") or {}
                statistic, dof, pvalue = monitoring_chi2(reference, current, bool(chi2.get("correction")))
                if (dof != chi2.get("dof") or not _mon_close(statistic, chi2.get("statistic"))
                        or not _mon_close(pvalue, chi2.get("pvalue"))):
                    raise fail("monitoring", f"{label}: chi-square {chi2} does not follow from the counts "
                                             f"(recomputed {statistic}, dof {dof}, p {pvalue})")
            columns += 1
    report.ok(f"{len(names)} monitoring run(s): each result recorded by its SHA-256 in a monitor_run.completed entry; "
              f"PSI, Jensen-Shannon and chi-square of {columns} column(s) recomputed from the stored counts")


EXIT_VERIFIED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SELF_CONSISTENT_ONLY = 3
EXIT_CODES_HELP = """exit codes:
  0  verified: every check holds, and the manifest, checkpoints and attestations are signed by keys
     you pinned with --trusted-key
  1  failed: a check failed, or an approval did not meet its policy (each named on a FAIL line)
  2  usage error, or the cryptography package is missing
  3  consistent with itself only: every check holds, but nothing was pinned (no --trusted-key), so
     the keys came from the bundle itself and anyone could have made it; pin the service's keys
"""


def own_sha256() -> str:
    """SHA-256 of this very file, so that you can compare it with the one the service publishes."""
    with open(__file__, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def parse_age(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    if not _DECIMAL.match(number):
        raise fail("usage", f"--max-cosignature-age {text!r} is not a whole number with an optional s, m, h or d")
    return float(int(number) * units[unit])


def main(argv: Sequence[str] | None = None) -> int:
    print(f"verify.py sha256 {own_sha256()}", flush=True)
    parser = argparse.ArgumentParser(
        description="Verify a governance audit bundle offline. Get this file from the service's /verify.py "
                    "(or the project's repository) and compare its SHA-256 with the published one; "
                    "never run a verifier taken from a bundle.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="the bundle .zip")
    parser.add_argument("--trusted-key", action="append", default=[], metavar="VKEY_OR_FILE",
                        help="a vkey string, or a file of vkeys or a PEM public key; repeatable. "
                             "The manifest, checkpoints and attestations must then be signed by these keys. "
                             "Without any, the best result is exit code 3.")
    parser.add_argument("--policy", metavar="FILE", help="a C2SP tlog-policy file: the witnesses whose "
                        "cosignatures are required (its quorum) and, if it lists any, the log keys")
    parser.add_argument("--witness-key", action="append", default=[], metavar="VKEY",
                        help="a witness vkey (cosignature/v1, type 0x04); repeatable; instead of --policy")
    parser.add_argument("--witness-quorum", type=int, metavar="K", help="how many --witness-key must cosign "
                        "(default: all)")
    parser.add_argument("--max-cosignature-age", metavar="AGE", help="ignore cosignatures older than AGE "
                        "(seconds, or with a unit: 90m, 36h, 7d): catches a ledger rolled back or frozen")
    parser.add_argument("--require-signed-approvals", action="store_true",
                        help="fail unless every approval decision is signed by its approver (passkey or DSSE)")
    parser.add_argument("--tsa-ca", action="append", default=[], metavar="PEM_FILE",
                        help="the CA certificate(s) of the RFC 3161 time-stamp authority you trust; repeatable. "
                             "Then the bundle's checkpoint must carry a token that chains to one of them.")
    args = parser.parse_args(argv)
    try:
        policy = witness_policy_from_args(args.policy, args.witness_key, args.witness_quorum)
        max_age_s = parse_age(args.max_cosignature_age) if args.max_cosignature_age else None
        lines = verify_bundle(args.bundle, args.trusted_key, policy, max_age_s, tsa_ca_values=args.tsa_ca,
                              require_signed_approvals=args.require_signed_approvals)
    except ApprovalViolations as exc:
        for line in exc.lines:
            print(f"FAIL [approval] {line}")
        return EXIT_FAILED
    except VerificationError as exc:
        print(f"FAIL [{exc.check}] {exc.message}")
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - any other surprise is a failure too, never a pass
        print(f"FAIL [malformed] the bundle could not be checked: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    print("\n".join(lines))
    if policy is None:
        print("NOTE: no witness key given: the history is vouched for by the operator only, who holds the "
              "log key and could have rebuilt it. Give --policy or --witness-key to check witness cosignatures.")
    if not args.trusted_key:
        print("NOT VERIFIED: every check holds, but the bundle is only consistent with itself: no key was "
              "pinned with --trusted-key, so its keys came from the bundle. Exit code 3.")
        return EXIT_SELF_CONSISTENT_ONLY
    print("OK: every check holds, against the pinned keys.")
    return EXIT_VERIFIED


if __name__ == "__main__":
    sys.exit(main())
