"""Recompute the whole ledger and say whether it is intact, and if not, where it first breaks.

Checks, in one streaming pass from entry 0 (or from a trusted checkpoint):
- `seq` continuity; each entry's `prev_hash` is the previous `entry_hash` (32 zero bytes first);
- `entry_hash` = SHA-256(canonical) and `leaf_hash` = SHA-256(0x00 || canonical);
- the indexed columns (seq, actor, action, subject, time, prev_hash) equal what the
  canonical bytes say, so an edit to a column alone is caught;
- every stored complete-subtree hash equals the recomputed one;
- every stored checkpoint: its root equals the recomputed root at its size, its body says
  so, and its signature verifies with a key that was valid when it was made;
- `subject_prev`: from the cut-over seq on (`LedgerHead.subject_prev_from`), each entry names
  the seq of the previous entry about the same subject (null for the first), and that is the
  true previous one; entries before the cut-over lack the field;
- optional trusted checkpoints (published copies kept outside the database): a ledger that
  is shorter than one, or disagrees with it, has been truncated or rolled back.
Governed apps register state checks (`register_state_check`) that compare live rows with
the state their last ledger entry recorded; `--state` runs them.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction

from audit import jcs, merkle, note
from audit.models import NODE_LEVEL_SHIFT, Checkpoint, LedgerEntry, LedgerHead, MerkleNode, SigningKey

ZERO_HASH = bytes(32)
_ABSENT = object()
_MALFORMED = object()
# Strings whose RFC 8785 form is the string in quotes: printable ASCII but `"` and `\`.
_PLAIN_STRING = re.compile(r"[ !#-\[\]-~]*")
_RAW_DECODE = json.JSONDecoder().raw_decode  # canonical bytes hold no whitespace to skip


def _format_time(value: Any) -> str:
    """A time column as the canonical bytes spell it (SQLite hands back datetimes or strings)."""
    moment = _as_datetime(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _columns_by_json(seq: int, canonical: bytes) -> tuple[bool, Any]:
    """The slow path: parse the canonical bytes and compare each field with the stored columns;
    (consistent, subject_prev)."""
    row = LedgerEntry.objects.filter(seq=seq).values_list(
        "recorded_at", "actor", "action", "subject_type", "subject_id", "prev_hash").first()
    if row is None:
        return False, _ABSENT
    recorded_at, actor, action, subject_type, subject_id, prev_hash = row
    try:
        text = canonical.decode()
        document, end = _RAW_DECODE(text)
        subject = document["subject"]
        consistent = (
            end == len(text) and document["seq"] == seq and type(document["seq"]) is int
            and document["actor"] == actor and document["action"] == action and len(subject) == 2
            and subject["type"] == subject_type and subject["id"] == subject_id
            and document["prev_hash"] == bytes(prev_hash).hex()
            and _parse_time(document["recorded_at"]) == _as_datetime(recorded_at)
        )
        return consistent, document.get("subject_prev", _ABSENT)
    except (ValueError, KeyError, TypeError, AttributeError):
        return False, _ABSENT


@dataclass
class Problem:
    seq: int | None
    code: str
    message: str


@dataclass
class VerificationResult:
    ok: bool = True
    entries_checked: int = 0
    tree_size: int = 0
    root_hash: str = ""
    checkpoints_checked: int = 0
    started_from: int = 0
    elapsed_s: float = 0.0
    first_bad_seq: int | None = None
    problems: list[Problem] = field(default_factory=list)
    state_problems: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, seq: int | None, code: str, message: str) -> None:
        if self.ok:
            self.first_bad_seq = seq
        self.ok = False
        self.problems.append(Problem(seq, code, message))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


StateCheck = Callable[[], Iterable[dict[str, Any]]]
_state_checks: list[StateCheck] = []


def register_state_check(check: StateCheck) -> None:
    """Register a callable yielding `{"subject_type", "subject_id", "message"}` for rows that drifted."""
    if check not in _state_checks:
        _state_checks.append(check)


def _frontier_at(size: int) -> list[tuple[int, bytes]]:
    """The stored complete subtrees covering [0, size), largest first."""
    subtrees = merkle.complete_subtrees(0, size) if size else []
    leaves = [index for level, index in subtrees if level == 0]
    keys = [(level << NODE_LEVEL_SHIFT) | index for level, index in subtrees if level > 0]
    found: dict[tuple[int, int], bytes] = {}
    for seq, leaf in LedgerEntry.objects.filter(seq__in=leaves).values_list("seq", "leaf_hash"):
        found[(0, seq)] = bytes(leaf)
    for key, node in MerkleNode.objects.filter(node_id__in=keys).values_list("node_id", "hash"):
        found[(key >> NODE_LEVEL_SHIFT, key & ((1 << NODE_LEVEL_SHIFT) - 1))] = bytes(node)
    return [(level, found[(level, index)]) for level, index in subtrees]


class _CheckpointVerifier:
    def __init__(self, result: VerificationResult) -> None:
        self.result = result
        self.keys = list(SigningKey.objects.all())
        self.verifiers = {key.pk: note.parse_vkey(key.vkey) for key in self.keys}
        self.by_pk = {key.pk: key for key in self.keys}

    def check_stored(self, checkpoint: Checkpoint, root: bytes) -> None:
        seq = checkpoint.tree_size - 1 if checkpoint.tree_size else None
        key = self.by_pk.get(checkpoint.key_id)
        if key is None:
            self.result.fail(seq, "checkpoint_unknown_key", f"checkpoint @{checkpoint.tree_size} names no known key")
            return
        if checkpoint.created_at < key.valid_from or (key.valid_until and checkpoint.created_at > key.valid_until):
            self.result.fail(seq, "checkpoint_key_not_valid",
                             f"checkpoint @{checkpoint.tree_size} was made outside its key's validity window")
            return
        self._check_note(checkpoint.note, checkpoint.tree_size, root, [self.verifiers[key.pk]])
        if bytes(checkpoint.root_hash) != root:
            self.result.fail(seq, "checkpoint_root_mismatch",
                             f"checkpoint @{checkpoint.tree_size} root column differs from the recomputed root")

    def check_trusted(self, text: str, roots: Callable[[int], bytes | None], ledger_size: int) -> None:
        try:
            body, _ = note.open_note(text, list(self.verifiers.values()))
            parsed = note.parse_checkpoint(body)
        except note.NoteError as exc:
            self.result.fail(None, "trusted_checkpoint_invalid", f"trusted checkpoint does not verify: {exc}")
            return
        if parsed.tree_size > ledger_size:
            self.result.fail(ledger_size, "ledger_truncated",
                             f"a trusted checkpoint covers {parsed.tree_size} entries but the ledger ends at "
                             f"seq {ledger_size - 1}: entries from seq {ledger_size} are missing (rollback or truncation)")
            return
        root = roots(parsed.tree_size)
        if root != parsed.root_hash:
            self.result.fail(parsed.tree_size - 1, "trusted_checkpoint_mismatch",
                             f"the ledger's first {parsed.tree_size} entries do not match a trusted checkpoint")
        self.result.checkpoints_checked += 1

    def _check_note(self, text: str, tree_size: int, root: bytes, verifiers: list[note.Verifier]) -> None:
        seq = tree_size - 1 if tree_size else None
        try:
            body, _ = note.open_note(text, verifiers)
            parsed = note.parse_checkpoint(body)
        except note.NoteError as exc:
            self.result.fail(seq, "checkpoint_signature_invalid", f"checkpoint @{tree_size}: {exc}")
            return
        if parsed.origin != settings.LEDGER_ORIGIN:
            self.result.fail(seq, "checkpoint_origin_mismatch", f"checkpoint @{tree_size} names origin {parsed.origin}")
        elif parsed.tree_size != tree_size or parsed.root_hash != root:
            self.result.fail(seq, "checkpoint_root_mismatch",
                             f"checkpoint @{tree_size} does not match the recomputed Merkle root")
        self.result.checkpoints_checked += 1


def verify_ledger(*, from_tree_size: int | None = None, trusted_checkpoints: Iterable[str] = (),
                  check_state: bool = False, chunk_size: int = 10_000) -> VerificationResult:
    """Verify the ledger; see the module docstring for what is checked."""
    started = time.perf_counter()
    result = VerificationResult()
    checker = _CheckpointVerifier(result)
    checkpoints = list(Checkpoint.objects.order_by("tree_size"))
    start = 0
    frontier: list[tuple[int, bytes]] = []
    prev_hash = ZERO_HASH
    if from_tree_size:
        # Start from a stored checkpoint whose signature and stored subtrees agree.
        base = next((c for c in checkpoints if c.tree_size == from_tree_size), None)
        if base is None:
            result.fail(None, "checkpoint_not_found", f"no stored checkpoint at tree size {from_tree_size}")
            return _finish(result, started)
        frontier = _frontier_at(base.tree_size)
        checker.check_stored(base, merkle.frontier_root(frontier))
        if not result.ok:
            return _finish(result, started)
        prev_hash = bytes(LedgerEntry.objects.values_list("entry_hash", flat=True).get(seq=base.tree_size - 1))
        start = base.tree_size
        checkpoints = [c for c in checkpoints if c.tree_size > start]
    result.started_from = start

    pending = iter(checkpoints)
    next_checkpoint = next(pending, None)
    roots_seen: dict[int, bytes] = {start: merkle.frontier_root(frontier)}
    wanted_roots = {c.tree_size for c in checkpoints}
    trusted = list(trusted_checkpoints)
    for text in trusted:
        try:
            wanted_roots.add(note.parse_checkpoint(text.split("\n\n", 1)[0] + "\n").tree_size)
        except note.NoteError:
            pass
    cut_over = LedgerHead.objects.filter(pk=1).values_list("subject_prev_from", flat=True).first() or 0
    last_about: dict[tuple[str, str], int] = {}  # the latest seq seen about each subject
    unseen_before_start: dict[tuple[str, str], tuple[int, Any]] = {}  # incremental runs: checked at the end
    computed_levels: list[bytearray] = []  # recomputed complete-subtree hashes, per level >= 1
    stack: list[bytes] = [node for _, node in frontier]
    expected_seq = start
    sha256 = hashlib.sha256
    for seq, subject_type, subject_id, head, middle, canonical, stored_prev, entry_hash, leaf in \
            _stream_entries(start, chunk_size):
        if seq != expected_seq:
            result.fail(expected_seq, "seq_gap", f"seq {expected_seq} is missing (next entry is seq {seq})")
            break
        if stored_prev != prev_hash:
            result.fail(seq, "chain_broken", f"seq {seq}: prev_hash does not equal the entry_hash of seq {seq - 1}")
            break
        if sha256(canonical).digest() != entry_hash:
            result.fail(seq, "entry_hash_mismatch", f"seq {seq}: entry_hash is not SHA-256 of its canonical bytes")
            break
        node = sha256(b"\x00" + canonical).digest()
        if node != leaf:
            result.fail(seq, "leaf_hash_mismatch", f"seq {seq}: stored leaf hash is wrong")
            break
        # The stored columns against the hashed bytes, without parsing JSON: `head` and `middle` are
        # the bytes the append spliced around the payload (RFC 8785 key order), rendered from the
        # columns (by the server on PostgreSQL); `middle` holds the stored prev_hash, checked above
        # against the chain. Anything else (another valid spelling, a tampered column) takes the
        # JSON path, which decides.
        at = canonical.rfind(b',"prev_hash":"')  # never inside a string: quotes there are escaped
        claimed: Any = _MALFORMED
        if at > len(head) and canonical.startswith(head) and canonical.startswith(middle, at):
            rest = canonical[at + len(middle):]
            if rest == b"}":
                claimed = _ABSENT
            elif rest[:16] == b',"subject_prev":' and rest[-1:] == b"}":
                value = rest[16:-1]
                if value == b"null":
                    claimed = None
                elif value.isdigit() and (len(value) == 1 or value[:1] != b"0"):
                    claimed = int(value)
        if claimed is _MALFORMED:
            consistent, claimed = _columns_by_json(seq, canonical)
            if not consistent:
                result.fail(seq, "columns_mismatch", f"seq {seq}: stored columns (actor, action, subject, time or "
                            "seq) differ from the hashed entry")
                break
        subject_key = (subject_type, subject_id)
        if seq >= cut_over:
            known = last_about.get(subject_key, _ABSENT)
            if known is _ABSENT and start and subject_key not in unseen_before_start:
                unseen_before_start[subject_key] = (seq, claimed)
            elif claimed is _ABSENT or not (claimed is None or type(claimed) is int) \
                    or claimed != (None if known is _ABSENT else known):
                _subject_prev_problem(result, seq, subject_key, claimed, None if known is _ABSENT else known)
                break
        elif claimed is not _ABSENT:
            result.fail(seq, "subject_prev_before_cut_over",
                        f"seq {seq}: has subject_prev, but the ledger's cut-over is seq {cut_over}")
            break
        last_about[subject_key] = seq
        # Merkle frontier, inlined: each leaf completes one subtree per trailing 1-bit of its index.
        stack.append(node)
        index, level = seq, 0
        while index & 1:
            right = stack.pop()
            node = sha256(b"\x01" + stack.pop() + right).digest()
            stack.append(node)
            level += 1
            index >>= 1
            if len(computed_levels) < level:
                computed_levels.append(bytearray())
            computed_levels[level - 1] += node
        prev_hash = entry_hash
        expected_seq = seq + 1
        size = expected_seq
        if size in wanted_roots:
            roots_seen[size] = merkle.fold_subtrees(stack)
        while next_checkpoint is not None and next_checkpoint.tree_size == size:
            checker.check_stored(next_checkpoint, roots_seen[size])
            next_checkpoint = next(pending, None)
        result.entries_checked += 1
        if not result.ok:
            break
    frontier = _stack_to_frontier(stack, expected_seq)
    if result.ok and unseen_before_start:
        _check_subject_prev_before(result, start, unseen_before_start)

    result.tree_size = expected_seq
    result.root_hash = merkle.frontier_root(frontier).hex()
    if result.ok and next_checkpoint is not None:
        result.fail(expected_seq, "ledger_truncated",
                    f"checkpoint @{next_checkpoint.tree_size} covers entries up to seq "
                    f"{next_checkpoint.tree_size - 1} but the ledger ends at seq {expected_seq - 1}: "
                    f"entries from seq {expected_seq} are missing")
    if result.ok:
        _check_nodes(result, computed_levels, start)
    if result.ok:
        for text in trusted:
            checker.check_trusted(text, roots_seen.get, expected_seq)
    if check_state:
        for check in _state_checks:
            result.state_problems.extend(check())
        if result.state_problems:
            result.ok = False
            result.problems.append(Problem(None, "state_drift",
                                           f"{len(result.state_problems)} governed rows differ from their last ledger entry"))
    return _finish(result, started)


def _subject_prev_problem(result: VerificationResult, seq: int, subject: tuple[str, str], claimed: Any,
                          actual: int | None) -> None:
    name = f"{subject[0]}:{subject[1]}"
    if claimed is _ABSENT:
        result.fail(seq, "subject_prev_missing", f"seq {seq}: lacks subject_prev (the ledger's cut-over is earlier)")
    elif actual is None:
        result.fail(seq, "subject_prev_mismatch",
                    f"seq {seq}: names seq {claimed} as the previous entry about {name}, "
                    "but the ledger holds no earlier entry about it")
    else:
        result.fail(seq, "subject_prev_mismatch",
                    f"seq {seq}: names {'no entry' if claimed is None else f'seq {claimed}'} as the previous "
                    f"entry about {name}, but the previous entry about it is seq {actual}")


def _check_subject_prev_before(result: VerificationResult, start: int,
                               pending: dict[tuple[str, str], tuple[int, Any]]) -> None:
    """An incremental run: the first entry after `start` about each subject names its latest one before."""
    items = sorted(pending.items(), key=lambda item: item[1][0])
    for position in range(0, len(items), 500):
        chunk = items[position:position + 500]
        latest: dict[tuple[str, str], int] = {}
        query = models.Q(pk__in=[])
        for (subject_type, subject_id), _ in chunk:
            query |= models.Q(subject_type=subject_type, subject_id=subject_id)
        rows = (LedgerEntry.objects.filter(query, seq__lt=start).values("subject_type", "subject_id")
                .annotate(latest=models.Max("seq")).values_list("subject_type", "subject_id", "latest"))
        for subject_type, subject_id, seq in rows:
            latest[(subject_type, subject_id)] = seq
        for subject, (seq, claimed) in chunk:
            actual = latest.get(subject)
            if claimed is _ABSENT or not (claimed is None or type(claimed) is int) or claimed != actual:
                _subject_prev_problem(result, seq, subject, claimed, actual)
                return


def _check_nodes(result: VerificationResult, computed_levels: list[bytearray], start: int) -> None:
    """Every stored subtree hash made after `start` must equal the recomputed one, and none may be missing."""
    if start == 0 and _nodes_equal_in_bulk(computed_levels):
        return
    # Subtrees finished before `start` were not recomputed in an incremental run; at each level
    # the first recomputed one is the subtree that contains leaf `start`.
    first_index = [start >> level for level in range(1, len(computed_levels) + 1)]
    expected_count = sum(len(hashes) // 32 for hashes in computed_levels)
    seen = 0
    for node_id, stored in _stream_nodes(start):
        level, index = node_id >> NODE_LEVEL_SHIFT, node_id & ((1 << NODE_LEVEL_SHIFT) - 1)
        last_leaf = ((index + 1) << level) - 1
        if level < 1 or level > len(computed_levels) or index < first_index[level - 1]:
            if (index + 1) << level <= start:
                continue
            result.fail(last_leaf, "merkle_node_unexpected",
                        f"stored Merkle node (level {level}, index {index}) covers entries beyond the ledger")
            return
        offset = (index - first_index[level - 1]) * 32
        expected = bytes(computed_levels[level - 1][offset:offset + 32])
        if len(expected) != 32:
            result.fail(last_leaf, "merkle_node_unexpected",
                        f"stored Merkle node (level {level}, index {index}) covers entries beyond the ledger")
            return
        if bytes(stored) != expected:
            result.fail(last_leaf, "merkle_node_mismatch",
                        f"stored Merkle node (level {level}, index {index}) is wrong; entries "
                        f"{index << level}..{last_leaf}")
            return
        seen += 1
    if seen != expected_count:
        result.fail(None, "merkle_node_missing",
                    f"{expected_count - seen} recomputed Merkle nodes are missing from storage")


def _nodes_equal_in_bulk(computed_levels: list[bytearray]) -> bool:
    """PostgreSQL, a run from entry 0: each level's stored hashes, concatenated in index order by
    the server, equal the recomputed ones, with indices exactly 0..n-1 and no other level. False
    when anything differs (or on SQLite): then the node-by-node comparison names the bad node."""
    if connection.vendor != "postgresql":
        return False
    mask = (1 << NODE_LEVEL_SHIFT) - 1
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT node_id >> {NODE_LEVEL_SHIFT}, count(*), min(node_id & {mask}), "
                       f"max(node_id & {mask}), string_agg(hash, ''::bytea ORDER BY node_id) "
                       "FROM audit_merklenode GROUP BY 1 ORDER BY 1")
        stored = cursor.fetchall()
    expected = [(level, len(hashes) // 32) for level, hashes in enumerate(computed_levels, start=1) if hashes]
    if [(int(level), int(count)) for level, count, *_ in stored] != expected:
        return False
    for level, count, low, high, joined in stored:
        if low != 0 or high != count - 1 or bytes(joined) != computed_levels[level - 1]:
            return False
    return True


def _stream_nodes(start: int) -> Iterator[tuple[int, bytes]]:
    nodes = MerkleNode.objects.order_by("node_id").values_list("node_id", "hash")
    yield from nodes.iterator(chunk_size=20_000)


_ENTRY_SQL = ("SELECT seq, recorded_at, actor, action, subject_type, subject_id, canonical, prev_hash, "
              "entry_hash, leaf_hash FROM audit_ledgerentry WHERE seq >= %s ORDER BY seq")
# On PostgreSQL the server renders the bytes around the payload from the columns (to_json is a
# JSON string encoding, RFC 8785's for every string; the time as the canonical bytes spell it),
# and rows come in binary, so nothing is hex-decoded, date-parsed or re-encoded in Python.
_PG_ENTRY_SQL = """
SELECT seq, subject_type, subject_id,
       convert_to('{"action":' || to_json(action)::text || ',"actor":' || to_json(actor)::text || ',"payload":',
                  'UTF8'),
       convert_to(',"prev_hash":"' || encode(prev_hash, 'hex') || '","recorded_at":"'
                  || to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '","seq":'
                  || seq::text || ',"subject":{"id":' || to_json(subject_id)::text || ',"type":'
                  || to_json(subject_type)::text || '}', 'UTF8'),
       canonical, prev_hash, entry_hash, leaf_hash
  FROM audit_ledgerentry WHERE seq >= %s ORDER BY seq"""


def _prefetched(cursor: Any, chunk_size: int) -> Iterator[tuple[Any, ...]]:
    """Rows of a server-side cursor, the next chunk fetched by a thread while this one hashes.

    The thread waits on the network with the GIL released, so the server renders and sends
    chunk n+1 while Python checks chunk n (two cores busy instead of taking turns).
    """
    chunks: queue.Queue[list[tuple[Any, ...]] | BaseException | None] = queue.Queue(maxsize=3)
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                rows = cursor.fetchmany(chunk_size)
                chunks.put(rows if rows else None)
                if not rows:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            chunks.put(exc)

    worker = threading.Thread(target=fetch, name="verify_ledger_fetch", daemon=True)
    worker.start()
    try:
        while True:
            item = chunks.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                chunks.get_nowait()
            except queue.Empty:
                worker.join(0.05)


def _stream_entries(start: int, chunk_size: int) -> Iterator[tuple[Any, ...]]:
    """(seq, subject_type, subject_id, head, middle, canonical, prev_hash, entry_hash, leaf_hash) in
    seq order, streamed: a server-side cursor in binary on PostgreSQL, fetchmany on SQLite."""
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        with transaction.atomic(), connection.connection.cursor(name="verify_ledger_entries") as cursor:
            cursor.execute(_PG_ENTRY_SQL, [start], binary=True)
            yield from _prefetched(cursor, chunk_size)
        return
    heads: dict[tuple[str, str], bytes] = {}
    plain = _PLAIN_STRING.fullmatch
    with connection.cursor() as cursor:
        cursor.execute(_ENTRY_SQL, [start])
        while rows := cursor.fetchmany(chunk_size):
            for seq, recorded_at, actor, action, subject_type, subject_id, canonical, prev, entry, leaf in rows:
                head = heads.get((action, actor))
                if head is None:
                    head = heads[(action, actor)] = (b'{"action":' + jcs.canonicalize(action) + b',"actor":'
                                                      + jcs.canonicalize(actor) + b',"payload":')
                middle = b"".join((
                    b',"prev_hash":"', bytes(prev).hex().encode(), b'","recorded_at":"',
                    (recorded_at if type(recorded_at) is str else _format_time(recorded_at)).encode(),
                    b'","seq":', str(seq).encode(), b',"subject":{"id":',
                    b'"' + subject_id.encode() + b'"' if plain(subject_id) else jcs.canonicalize(subject_id),
                    b',"type":', jcs.canonicalize(subject_type), b"}"))
                yield (seq, subject_type, subject_id, head, middle, bytes(canonical), bytes(prev), bytes(entry),
                       bytes(leaf))


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _stack_to_frontier(stack: list[bytes], tree_size: int) -> list[tuple[int, bytes]]:
    levels = [bit for bit in range(tree_size.bit_length() - 1, -1, -1) if tree_size >> bit & 1]
    return list(zip(levels, stack, strict=True))


def _finish(result: VerificationResult, started: float) -> VerificationResult:
    result.elapsed_s = round(time.perf_counter() - started, 4)
    return result
