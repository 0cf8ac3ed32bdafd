"""Build an audit bundle: a zip a regulator checks offline with `verify.py`, which the service
publishes at `/verify.py` (and the README by its SHA-256); the bundle does not carry it, so that
no one runs a verifier that came with the evidence.

Layout (every path is listed with its size and SHA-256 in `manifest.json`; `manifest.dsse.json`
is a DSSE envelope over the exact bytes of `manifest.json`, signed with the attestation key):

    ledger/entries.jsonl      {"seq", "canonical" (base64 of the exact leaf bytes), "entry_hash" (hex)} per line
    ledger/checkpoint.txt     a signed C2SP checkpoint whose tree covers every entry
    ledger/proofs.json        {"tree_size", "proofs": [{"seq", "leaf_index", "tree_size", "hashes": [base64]}]}
    ledger/consistency.json   {"first", "second", "hashes": [base64], "latest_checkpoint": signed note}
    ledger/timestamps/checkpoint-<tree_size>-<n>.tst   RFC 3161 tokens (DER) over the signed note of
                              the bundle's checkpoint and of the latest one (with TSA_URL set)
    keys/<purpose>-<id>.vkey|.pem   every public key that signed something in the bundle
    attestations/, audits/, report/  given by the caller, stored byte for byte
    VERIFY.md                 the guide to checking the bundle (it says where to get verify.py)

Which entries: every entry about the `subjects`, and, for each `BoundedSubject`, the entries
about it whose action starts with one of its prefixes, up to its `through_seq`. The manifest
states that rule in words (`selection_rule`) and lists both kinds of subject.

The ledger part streams: entries are read in `seq` order with an iterator, and all inclusion
proofs against one tree size are computed from one batched read of the needed subtree hashes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from audit import dsse, ledger, merkle, witnesses
from audit.keys import active_key, public_pem
from audit.models import Checkpoint, LedgerEntry, LedgerHead, MerkleNode, SigningKey, node_key

BUNDLE_FORMAT = "governance-bundle/v1"
MANIFEST_PAYLOAD_TYPE = "application/vnd.governance.bundle-manifest+json"
VERIFIER_DIR = Path(__file__).resolve().parent / "verifier"
_ENTRY_BATCH = 5000
_IN_CHUNK = 5000

ProgressCallback = Callable[[int, str], None]


@dataclass(frozen=True)
class BundleSummary:
    manifest_sha256: str
    entry_count: int
    checkpoint_tree_size: int
    latest_tree_size: int
    file_count: int
    files: dict[str, str] = field(default_factory=dict)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _safe_name(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return cleaned[:120] or "item"


class _HashingWriter:
    """Writes one zip member, counting its size and hashing it on the way."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)


class _BundleWriter:
    def __init__(self, out: BinaryIO | str | Path) -> None:
        self.zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True)
        self.files: list[dict[str, Any]] = []
        self.paths: set[str] = set()

    def _info(self, path: str) -> zipfile.ZipInfo:
        # A fixed timestamp and mode: the same content gives the same member headers.
        info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        return info

    def add(self, path: str, data: bytes) -> None:
        self._record(path, len(data), hashlib.sha256(data).hexdigest())
        self.zip.writestr(self._info(path), data, compresslevel=1)

    def add_stream(self, path: str, chunks: Iterable[bytes]) -> None:
        with self.zip.open(self._info(path), "w", force_zip64=True) as handle:
            writer = _HashingWriter(handle)
            for chunk in chunks:
                writer.write(chunk)
        self._record(path, writer.size, writer.digest.hexdigest())

    def _record(self, path: str, size: int, sha256: str) -> None:
        if path in self.paths:
            raise ValueError(f"duplicate bundle path {path}")
        self.paths.add(path)
        self.files.append({"path": path, "size": size, "sha256": sha256})

    def add_unlisted(self, path: str, data: bytes) -> None:
        self.zip.writestr(self._info(path), data, compresslevel=1)

    def close(self) -> None:
        self.zip.close()


# --- Ledger selection and proofs -----------------------------------------------------------

# The entries of a submitter's or approver's account that say what they could do.
PEOPLE_ACTION_PREFIXES = ("user.", "role.", "group.", "permission.")
SELECTION_RULE = (
    "Every ledger entry whose subject is listed in `subjects`: the model, its versions, their approval "
    "requests and decisions, every approval policy any of those requests was decided under (the model's own "
    "and tier defaults, with their whole history) and the default policy of every risk tier the model has had, "
    "its deployments, fairness specs, audits and prediction "
    "batches, and through lineage everything upstream (datasets and their versions, runs, nodes, "
    "attestations, pipeline keys). Besides, for each entry of `bounded_subjects`, the entries about that "
    "subject whose action starts with one of its `action_prefixes` and whose seq is at most its "
    "`through_seq`: each submitter's and approver's account (auth.user: user.*, role.*, group.*, "
    "permission.*) up to their last submission or decision in the bundle, and the permission entries of "
    "the groups they belong or belonged to (auth.group: permission.*) up to the last such seq of their "
    "members. Each included entry has its inclusion proof against the bundle's checkpoint."
)


@dataclass(frozen=True, order=True)
class BoundedSubject:
    """Entries about one subject, only those of some actions, only up to a seq."""

    subject_type: str
    subject_id: str
    through_seq: int
    action_prefixes: tuple[str, ...]

    def query(self) -> Q:
        actions = Q(pk__in=[])
        for prefix in self.action_prefixes:
            actions |= Q(action__startswith=prefix)
        return Q(subject_type=self.subject_type, subject_id=self.subject_id, seq__lte=self.through_seq) & actions

    def manifest(self) -> dict[str, Any]:
        return {"type": self.subject_type, "id": self.subject_id, "through_seq": self.through_seq,
                "action_prefixes": list(self.action_prefixes)}

def _subject_query(subjects: Iterable[tuple[str, str]]) -> Q:
    by_type: dict[str, list[str]] = {}
    for subject_type, subject_id in subjects:
        by_type.setdefault(str(subject_type), []).append(str(subject_id))
    query = Q(pk__in=[])
    for subject_type, ids in by_type.items():
        query |= Q(subject_type=subject_type, subject_id__in=sorted(set(ids)))
    return query


def _entry_rows(subjects: list[tuple[str, str]],
                bounded: Iterable[BoundedSubject] = ()) -> list[tuple[int, bytes, bytes]]:
    """(seq, canonical, entry_hash) of every entry about the subjects (and the bounded ones), in seq order."""
    query = _subject_query(subjects)
    for item in bounded:
        query |= item.query()
    rows = (LedgerEntry.objects.filter(query).order_by("seq")
            .values_list("seq", "canonical", "entry_hash"))
    return [(seq, bytes(canonical), bytes(entry_hash)) for seq, canonical, entry_hash in rows.iterator(_ENTRY_BATCH)]


def _choose_checkpoint(max_seq: int | None) -> tuple[Checkpoint, Checkpoint]:
    """(the first checkpoint covering every entry, the latest checkpoint), signing one if needed."""
    needed = 0 if max_seq is None else max_seq + 1
    latest = Checkpoint.objects.order_by("-tree_size").first()
    if latest is None or latest.tree_size < needed:
        latest = ledger.checkpoint_create()
    if needed == 0:
        return latest, latest
    # The earliest covering checkpoint, so the consistency proof to the latest one means something.
    covering = Checkpoint.objects.filter(tree_size__gte=needed).order_by("tree_size").first()
    return covering or latest, latest


SubtreeId = tuple[int, int]


class InclusionProofs:
    """RFC 9162 inclusion proofs of many leaves against one tree size, from one batched read.

    The proof of leaf i lists, from the leaf up, the sibling of i's ancestor at each level l:
    the node covering [s * 2**l, (s + 1) * 2**l) clipped to the tree, s = (i >> l) ^ 1. A sibling
    that starts past the end of the tree does not exist (the RFC tree collapses that level), and
    a clipped one lies on the right border: a fold of complete subtrees. Neighbouring leaves share
    their upper path, so each proof's JSON text is built from a memoized suffix per ancestor.
    """

    def __init__(self, leaf_indices: list[int], tree_size: int) -> None:
        self.tree_size = tree_size
        self.top = max(tree_size - 1, 0).bit_length()
        siblings: set[tuple[int, int]] = set()
        ancestors = set(leaf_indices)
        for level in range(self.top):
            siblings.update((level, ancestor ^ 1) for ancestor in ancestors if (ancestor ^ 1) << level < tree_size)
            ancestors = {ancestor >> 1 for ancestor in ancestors}
        needed: set[SubtreeId] = set()
        border: dict[tuple[int, int], list[SubtreeId]] = {}
        for level, sibling in siblings:
            start = sibling << level
            if start + (1 << level) <= tree_size:
                needed.add((level, sibling))
            else:
                parts = merkle.complete_subtrees(start, tree_size)
                border[(level, sibling)] = parts
                needed.update(parts)
        found = _fetch_subtrees(needed) if needed else {}
        self.node_text: dict[tuple[int, int], str] = {}
        for level, sibling in siblings:
            parts = border.get((level, sibling))
            value = found[(level, sibling)] if parts is None else merkle.fold_subtrees([found[p] for p in parts])
            self.node_text[(level, sibling)] = '"' + _b64(value) + '"'
        self._suffix: dict[tuple[int, int], str] = {}

    def json_hashes(self, leaf_index: int) -> str:
        """The proof's hashes as the inside of a JSON array: `"b64","b64",...`."""
        return self._path_text(0, leaf_index)

    def hashes(self, leaf_index: int) -> list[bytes]:
        return [base64.b64decode(text) for text in json.loads("[" + self.json_hashes(leaf_index) + "]")]

    def _path_text(self, level: int, ancestor: int) -> str:
        stack: list[tuple[int, int]] = []
        while level < self.top and (level, ancestor) not in self._suffix:
            stack.append((level, ancestor))
            ancestor >>= 1
            level += 1
        text = self._suffix.get((level, ancestor), "")
        for lv, an in reversed(stack):
            own = self.node_text.get((lv, an ^ 1))
            if own is not None:
                text = own + "," + text if text else own
            if lv:  # leaves are asked for once; memoize only shared ancestors
                self._suffix[(lv, an)] = text
        return text


def _fetch_subtrees(needed: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Hashes of complete subtrees: leaves from entries, higher levels from MerkleNode; batched by level."""
    found: dict[tuple[int, int], bytes] = {}
    by_level: dict[int, list[int]] = {}
    for level, index in needed:
        by_level.setdefault(level, []).append(index)
    for level, indices in by_level.items():
        indices.sort()
        low, high = indices[0], indices[-1]
        dense = len(indices) * 3 >= high - low + 1
        if level == 0:
            if dense:
                rows = LedgerEntry.objects.filter(seq__gte=low, seq__lte=high).values_list("seq", "leaf_hash")
                wanted = set(indices)
                for seq, leaf in rows.iterator(_ENTRY_BATCH):
                    if seq in wanted:
                        found[(0, seq)] = bytes(leaf)
            else:
                for position in range(0, len(indices), _IN_CHUNK):
                    chunk = indices[position:position + _IN_CHUNK]
                    for seq, leaf in LedgerEntry.objects.filter(seq__in=chunk).values_list("seq", "leaf_hash"):
                        found[(0, seq)] = bytes(leaf)
            continue
        if dense:
            rows = MerkleNode.objects.filter(node_id__gte=node_key(level, low),
                                             node_id__lte=node_key(level, high)).values_list("node_id", "hash")
            wanted = set(indices)
            mask = (1 << 56) - 1
            for node_id, node in rows.iterator(_ENTRY_BATCH):
                if node_id & mask in wanted:
                    found[(level, node_id & mask)] = bytes(node)
        else:
            for position in range(0, len(indices), _IN_CHUNK):
                keys = {node_key(level, index): index for index in indices[position:position + _IN_CHUNK]}
                for node_id, node in MerkleNode.objects.filter(node_id__in=list(keys)).values_list("node_id", "hash"):
                    found[(level, keys[node_id])] = bytes(node)
    missing = needed - found.keys()
    if missing:
        raise merkle.ProofError(f"{len(missing)} subtree hashes are not stored, e.g. {sorted(missing)[0]}")
    return found


# --- RFC 3161 timestamps --------------------------------------------------------------------

def _timestamp_tokens(checkpoints: list[Checkpoint]) -> list[tuple[str, bytes]]:
    """Every stored token of these checkpoints; with a TSA configured, each gets one first if it has none."""
    from audit.services import checkpoint_timestamp

    files: list[tuple[str, bytes]] = []
    for checkpoint in {item.tree_size: item for item in checkpoints}.values():
        checkpoint_timestamp(checkpoint=checkpoint, actor="system:bundle_export")
        for index, token in enumerate(checkpoint.timestamps.order_by("gen_time", "pk").values_list("token", flat=True)):
            files.append((f"ledger/timestamps/checkpoint-{checkpoint.tree_size}-{index}.tst", bytes(token)))
    return files


# --- Keys ----------------------------------------------------------------------------------

def _key_files(records: Iterable[SigningKey], extra_public_keys: dict[str, bytes]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for record in records:
        stem = f"keys/{record.purpose}-{record.key_id}"
        raw = bytes(record.public_key)
        files[f"{stem}.vkey"] = (record.vkey + "\n").encode("utf-8")
        files[f"{stem}.pem"] = public_pem(raw).encode("ascii")
    for label, raw in extra_public_keys.items():
        files[f"keys/{_safe_name(label)}.pem"] = public_pem(raw).encode("ascii")
    return files


def _envelope_keyids(envelopes: Iterable[bytes]) -> set[str]:
    keyids: set[str] = set()
    for raw in envelopes:
        try:
            document = json.loads(raw)
            keyids.update(str(sig.get("keyid", "")) for sig in document.get("signatures", []))
        except (ValueError, AttributeError):
            continue
    keyids.discard("")
    return keyids


# --- The bundle ----------------------------------------------------------------------------

def _noop_progress(_percent: int, _stage: str) -> None:
    return None


def build_bundle(
    *,
    subjects: list[tuple[str, str]],
    out: BinaryIO | str | Path,
    extra_files: dict[str, bytes] | None = None,
    attestations: list[bytes] | dict[str, bytes] | None = None,
    audits: dict[str, bytes] | None = None,
    report: dict[str, bytes] | None = None,
    attestation_public_keys: dict[str, bytes] | None = None,
    bounded_subjects: Iterable[BoundedSubject] = (),
    progress: ProgressCallback | None = None,
) -> BundleSummary:
    """Write the bundle for `subjects` to `out` and return what it holds.

    `attestations` are DSSE envelopes exactly as stored (bytes); `audits` and `report` map a
    file name to its bytes; `attestation_public_keys` maps a label to a raw Ed25519 key that
    signed an attestation but is not one of the server's keys (a pipeline's own key);
    `bounded_subjects` adds some entries of further subjects (see the module docstring).
    """
    report_progress = progress or _noop_progress
    subjects = sorted({(str(t), str(i)) for t, i in subjects})
    bounded = sorted(set(bounded_subjects))
    writer = _BundleWriter(out)
    try:
        report_progress(5, "reading ledger entries")
        rows = _entry_rows(subjects, bounded)
        checkpoint, latest = _choose_checkpoint(rows[-1][0] if rows else None)
        report_progress(20, "computing inclusion proofs")
        proofs = InclusionProofs([seq for seq, _, _ in rows], checkpoint.tree_size) if rows else None
        report_progress(45, "writing ledger files")

        def entry_lines() -> Iterator[bytes]:
            batch: list[str] = []
            for seq, canonical, entry_hash in rows:
                batch.append(f'{{"seq":{seq},"canonical":"{_b64(canonical)}","entry_hash":"{entry_hash.hex()}"}}\n')
                if len(batch) >= _ENTRY_BATCH:
                    yield "".join(batch).encode("ascii")
                    batch = []
            if batch:
                yield "".join(batch).encode("ascii")

        writer.add_stream("ledger/entries.jsonl", entry_lines())
        writer.add("ledger/checkpoint.txt", checkpoint.note.encode("utf-8"))

        tree_size = checkpoint.tree_size

        def proof_chunks() -> Iterator[bytes]:
            yield f'{{"tree_size":{tree_size},"proofs":['.encode("ascii")
            batch: list[str] = []
            for position, (seq, _, _) in enumerate(rows):
                assert proofs is not None
                separator = "," if position else ""
                batch.append(f'{separator}\n{{"seq":{seq},"leaf_index":{seq},"tree_size":{tree_size},'
                             f'"hashes":[{proofs.json_hashes(seq)}]}}')
                if len(batch) >= _ENTRY_BATCH:
                    yield "".join(batch).encode("ascii")
                    batch = []
            yield ("".join(batch) + "\n]}\n").encode("ascii")

        writer.add_stream("ledger/proofs.json", proof_chunks())
        report_progress(70, "consistency proof")
        consistency_hashes: list[bytes] = []
        if checkpoint.tree_size and latest.tree_size != checkpoint.tree_size:
            consistency_hashes = ledger.consistency_proof(first_size=checkpoint.tree_size,
                                                          second_size=latest.tree_size)
        consistency = {
            "first": checkpoint.tree_size,
            "second": latest.tree_size,
            "hashes": [_b64(node) for node in consistency_hashes],
            "latest_checkpoint": latest.note,
        }
        writer.add("ledger/consistency.json", _json_bytes(consistency))
        witnessed = _witnessed_document(checkpoint)
        if witnessed is not None:
            writer.add("ledger/witnessed.json", _json_bytes(witnessed))
        for path, token in _timestamp_tokens([checkpoint, latest]):
            writer.add(path, token)

        report_progress(75, "attestations, audits and report")
        envelope_items = (sorted(attestations.items()) if isinstance(attestations, dict)
                          else [(f"{index:04d}.dsse.json", raw) for index, raw in enumerate(attestations or [])])
        for name, raw in envelope_items:
            writer.add(f"attestations/{_safe_name(name)}", raw)
        for name, raw in sorted((audits or {}).items()):
            writer.add(f"audits/{_safe_name(name)}", raw)
        for name, raw in sorted((report or {}).items()):
            writer.add(f"report/{_safe_name(name)}", raw)
        for path, raw in sorted((extra_files or {}).items()):
            writer.add(path, raw)

        signing = active_key(SigningKey.Purpose.ATTESTATION)
        needed_keyids = _envelope_keyids(raw for _, raw in envelope_items) | {signing.record.dsse_keyid}
        key_records = {checkpoint.key_id: checkpoint.key, latest.key_id: latest.key}
        for record in SigningKey.objects.filter(dsse_keyid__in=needed_keyids):
            key_records[record.pk] = record
        for path, raw in _key_files(sorted(key_records.values(), key=lambda r: r.pk),
                                    attestation_public_keys or {}).items():
            writer.add(path, raw)

        writer.add("VERIFY.md", (VERIFIER_DIR / "VERIFY.md").read_bytes())

        report_progress(90, "signing the manifest")
        manifest = {
            "format": BUNDLE_FORMAT,
            "created_at": ledger.format_time(timezone.now()),
            "origin": settings.LEDGER_ORIGIN,
            "subjects": [{"type": t, "id": i} for t, i in subjects],
            "bounded_subjects": [item.manifest() for item in bounded],
            "selection_rule": SELECTION_RULE,
            "entry_count": len(rows),
            # Entries from this seq on name the previous entry about their subject (subject_prev),
            # so verify.py proves each subject's history in the bundle has no gap.
            "subject_prev_from": LedgerHead.objects.filter(pk=1).values_list(
                "subject_prev_from", flat=True).first() or 0,
            "checkpoint_tree_size": checkpoint.tree_size,
            "latest_tree_size": latest.tree_size,
            "files": sorted(writer.files, key=lambda item: item["path"]),
        }
        manifest_bytes = _json_bytes(manifest)
        envelope = dsse.sign_envelope(manifest_bytes, payload_type=MANIFEST_PAYLOAD_TYPE,
                                      private_key=signing.private_key, keyid=signing.record.dsse_keyid)
        writer.add_unlisted("manifest.json", manifest_bytes)
        writer.add_unlisted("manifest.dsse.json", _json_bytes(envelope))
    finally:
        writer.close()
    report_progress(100, "done")
    return BundleSummary(
        manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
        entry_count=len(rows),
        checkpoint_tree_size=checkpoint.tree_size,
        latest_tree_size=latest.tree_size,
        file_count=len(writer.files) + 2,
        files={item["path"]: item["sha256"] for item in writer.files},
    )


def _witnessed_document(checkpoint: Checkpoint) -> dict[str, Any] | None:
    """The largest witness-cosigned checkpoint covering the bundle's, with the proof that it extends it."""
    witnessed = witnesses.latest_cosigned_checkpoint(checkpoint.tree_size)
    if witnessed is None:
        return None
    hashes: list[bytes] = []
    if checkpoint.tree_size and witnessed.tree_size != checkpoint.tree_size:
        hashes = ledger.consistency_proof(first_size=checkpoint.tree_size, second_size=witnessed.tree_size)
    return {"first": checkpoint.tree_size, "second": witnessed.tree_size,
            "hashes": [_b64(node) for node in hashes], "checkpoint": witnesses.cosigned_note(witnessed)}


def _json_bytes(document: Any) -> bytes:
    return (json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
