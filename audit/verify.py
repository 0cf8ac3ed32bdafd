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
On PostgreSQL the entries come a chunk at a time as a few long byte strings. Python hashes every
entry's canonical bytes itself, compares whole concatenations (hashes, chain, seqs), builds the
Merkle levels a level at a time, and checks each entry's prev_hash, time and subject_prev bytes
as matrices; the server renders each entry's head and `seq`/subject part from its columns and
reports whether the canonical bytes hold them where they belong (a comparison of two things it
stores, as the rendering of the columns was already the server's). Any difference sends the
chunk through the entry-by-entry path, which names the first bad seq.
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
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
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
                  check_state: bool = False, chunk_size: int = 20_000, bulk: bool = True) -> VerificationResult:
    """Verify the ledger; see the module docstring for what is checked.

    On PostgreSQL the entries are checked a chunk at a time (`_Walk.bulk`); a chunk in which
    anything differs is checked again entry by entry (`_Walk.entries`), which names the first
    bad seq. `bulk=False` checks every entry one by one (tests compare the two; the benchmark
    measures one against the other).
    """
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

    wanted_roots = {c.tree_size for c in checkpoints}
    trusted = list(trusted_checkpoints)
    for text in trusted:
        try:
            wanted_roots.add(note.parse_checkpoint(text.split("\n\n", 1)[0] + "\n").tree_size)
        except note.NoteError:
            pass
    cut_over = LedgerHead.objects.filter(pk=1).values_list("subject_prev_from", flat=True).first() or 0
    walk = _Walk(result, checker, checkpoints, wanted_roots, start=start, cut_over=cut_over, prev_hash=prev_hash,
                 stack=[node for _, node in frontier])
    if bulk and connection.vendor == "postgresql":
        walk.bulk(chunk_size)
    else:
        walk.entries(_stream_entries(start, None, chunk_size))
    expected_seq = walk.expected_seq
    frontier = _stack_to_frontier(walk.stack, expected_seq)
    if result.ok and walk.unseen_before_start:
        _check_subject_prev_before(result, start, {walk.subject_of(key): value
                                                   for key, value in walk.unseen_before_start.items()})

    result.tree_size = expected_seq
    result.root_hash = merkle.frontier_root(frontier).hex()
    if result.ok and walk.next_checkpoint is not None:
        result.fail(expected_seq, "ledger_truncated",
                    f"checkpoint @{walk.next_checkpoint.tree_size} covers entries up to seq "
                    f"{walk.next_checkpoint.tree_size - 1} but the ledger ends at seq {expected_seq - 1}: "
                    f"entries from seq {expected_seq} are missing")
    if result.ok:
        _check_nodes(result, walk.computed_levels, start)
    if result.ok:
        for text in trusted:
            checker.check_trusted(text, walk.roots_seen.get, expected_seq)
    if check_state:
        for check in _state_checks:
            result.state_problems.extend(check())
        if result.state_problems:
            result.ok = False
            result.problems.append(Problem(None, "state_drift",
                                           f"{len(result.state_problems)} governed rows differ from their last ledger entry"))
    return _finish(result, started)


def _hashes(data: bytes, starts: Iterable[int], ends: Iterable[int]) -> bytes:
    """SHA-256 of each `data[start:end]`, concatenated."""
    sha256 = hashlib.sha256
    return b"".join([sha256(data[start:end]).digest() for start, end in zip(starts, ends, strict=True)])


def _parents(nodes: bytes) -> bytes:
    """RFC 6962 interior hashes of consecutive pairs of 32-byte nodes, concatenated."""
    pairs = len(nodes) // 64
    framed = np.empty((pairs, 65), dtype=np.uint8)
    framed[:, 0] = 1
    framed[:, 1:] = np.frombuffer(nodes, dtype=np.uint8, count=pairs * 64).reshape(pairs, 64)
    data = framed.tobytes()
    return _hashes(data, range(0, 65 * pairs, 65), range(65, 65 * pairs + 1, 65))


# Between the payload and the rest: `,"prev_hash":"`, 64 hex digits, `","recorded_at":"`, the time
# (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), `"`.
_FIXED_WIDTH = 14 + 64 + 17 + 27 + 1
_MICROS_1970_TO_2000 = 946_684_800_000_000
_REST_KEY = len(b',"seq":') + len(b',"subject":')  # the rest, less the seq's digits and the subject
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)

# A chunk's fixed-width record per entry, as `_PG_CHUNK_SQL` sends it.
_RECORD = np.dtype([("seq", ">i8"), ("length", ">i4"), ("rest", ">i4"), ("tail", ">i4"), ("time", ">i8"),
                    ("hashes", np.uint8, (3, 32))])


@dataclass
class _Received:
    """One chunk as received: the canonical bytes (each after a NUL) with where each entry starts
    and ends, where its rest starts and how long its tail is, its time, and the seqs and hashes."""
    canonical: bytes
    view: np.ndarray
    starts: list[int]
    ends: np.ndarray
    rests: np.ndarray
    tails: np.ndarray
    times: np.ndarray
    seqs: bytes
    prevs: bytes
    entry_hashes: bytes
    leaves: bytes
    keys: list[bytes]


def _fixed_fields_spell(view: np.ndarray, rests: np.ndarray, prevs: bytes, times: np.ndarray) -> bool:
    """Whether the bytes before each entry's rest spell its prev_hash and time (UTC, microseconds,
    `Z`) as the append wrote them; compared as one matrix."""
    count = len(rests)
    received = np.lib.stride_tricks.sliding_window_view(view, _FIXED_WIDTH)[rests - _FIXED_WIDTH]
    spelled = np.empty((count, _FIXED_WIDTH), dtype=np.uint8)
    spelled[:, :14] = np.frombuffer(b',"prev_hash":"', dtype=np.uint8)
    prev = np.frombuffer(prevs, dtype=np.uint8).reshape(count, 32)
    spelled[:, 14:78:2] = _HEX_DIGITS[prev >> 4]
    spelled[:, 15:78:2] = _HEX_DIGITS[prev & 15]
    spelled[:, 78:95] = np.frombuffer(b'","recorded_at":"', dtype=np.uint8)
    # The time's fields from microseconds since 1970 (H. Hinnant's civil_from_days), as digits.
    micros = times.astype(np.int64) + _MICROS_1970_TO_2000
    days, micros = np.divmod(micros, 86_400_000_000)
    era, day_of_era = np.divmod(days + 719_468, 146_097)
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    month = np.where(shifted_month < 10, shifted_month + 3, shifted_month - 9)
    year = year_of_era + era * 400 + (month <= 2)
    if ((year < 0) | (year > 9999)).any():
        return False  # to_char and the append spell such years otherwise; entry by entry decides
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    seconds, fraction = np.divmod(micros, 1_000_000)
    for column, width, value in ((95, 4, year), (100, 2, month), (103, 2, day), (106, 2, seconds // 3600),
                                 (109, 2, seconds // 60 % 60), (112, 2, seconds % 60), (115, 6, fraction)):
        for place in range(width):
            spelled[:, column + width - 1 - place] = value // 10 ** place % 10 + ord("0")
    spelled[:, [99, 102]] = ord("-")
    spelled[:, 105] = ord("T")
    spelled[:, [108, 111]] = ord(":")
    spelled[:, 114] = ord(".")
    spelled[:, 121] = ord("Z")
    spelled[:, 122] = ord('"')
    return bool(np.array_equal(received, spelled))


# The subject_prev an entry spells after its middle, as `_tails_spell` takes it: a seq, or these.
_NONE_CLAIMED, _NULL_CLAIMED, _UNREADABLE = -2, -1, -3
_TAIL_KEY = b',"subject_prev":'
_TAIL_WIDTH = 36  # the longest: `,"subject_prev":`, 18 digits, `}`


def _claim_in(tail: bytes) -> Any:
    """The subject_prev that `tail` (what follows an entry's middle) spells: _ABSENT, None, an int,
    or _MALFORMED."""
    if tail == b"}":
        return _ABSENT
    if tail.startswith(_TAIL_KEY) and tail.endswith(b"}"):
        value = tail[len(_TAIL_KEY):-1]
        if value == b"null":
            return None
        if value.isdigit() and len(value) <= 18 and (len(value) == 1 or value[:1] != b"0"):
            return int(value)
    return _MALFORMED


def _tails_spell(bytes_view: np.ndarray, ends: np.ndarray, tails: np.ndarray, expected: np.ndarray) -> bool:
    """Whether each entry (ending at `ends[i]` in the chunk's bytes) ends with exactly `tails[i]`
    bytes that spell `expected[i]`: `}` for none, `,"subject_prev":null}`, or the seq. Compared
    as a matrix of every entry's last 36 bytes, right-aligned."""
    digits = np.ones(len(expected), dtype=np.int64)
    for power in range(1, 19):
        digits += expected >= 10 ** power
    wanted = np.where(expected == _NONE_CLAIMED, 1,
                      np.where(expected == _NULL_CLAIMED, len(_TAIL_KEY) + 5, len(_TAIL_KEY) + 1 + digits))
    if (expected == _UNREADABLE).any() or not np.array_equal(wanted, tails):
        return False
    width = _TAIL_WIDTH
    columns = np.arange(width)
    received = np.lib.stride_tricks.sliding_window_view(bytes_view, width)[np.maximum(ends - width, 0)]
    spelled = np.zeros((len(expected), width), dtype=np.uint8)
    spelled[:, -1] = ord("}")
    key = np.frombuffer(_TAIL_KEY, dtype=np.uint8)
    null = expected == _NULL_CLAIMED
    spelled[null, width - 21:width - 1] = np.frombuffer(_TAIL_KEY + b"null", dtype=np.uint8)
    for count in np.unique(digits[expected >= 0]).tolist():
        rows = (expected >= 0) & (digits == count)
        spelled[rows, width - 1 - count - len(key):width - 1 - count] = key
        values = expected[rows]
        for place in range(count):
            spelled[rows, width - 2 - place] = values // 10 ** place % 10 + ord("0")
    relevant = columns >= width - wanted[:, None]
    return bool(((received == spelled) | ~relevant).all())



class _Walk:
    """One verification run's position: the chain head, the Merkle frontier, the latest seq about
    each subject, the checkpoints still ahead. Two ways move it forward over the same state:
    `bulk` (PostgreSQL, a chunk at a time) and `entries` (one entry at a time, the one that names
    what is wrong), so a chunk the bulk way finds anything odd in is handed to the other."""

    def __init__(self, result: VerificationResult, checker: _CheckpointVerifier, checkpoints: list[Checkpoint],
                 wanted_roots: set[int], *, start: int, cut_over: int, prev_hash: bytes, stack: list[bytes]) -> None:
        self.result = result
        self.checker = checker
        self.pending = iter(checkpoints)
        self.next_checkpoint = next(self.pending, None)
        self.wanted_roots = wanted_roots
        self.start = start
        self.cut_over = cut_over
        self.prev_hash = prev_hash
        self.expected_seq = start
        self.stack = stack  # the Merkle frontier: one complete subtree per 1-bit of the size, largest first
        self.roots_seen: dict[int, bytes] = {start: merkle.frontier_root(_stack_to_frontier(stack, start))}
        self.computed_levels: list[bytearray] = []  # recomputed complete-subtree hashes, per level >= 1
        # The latest seq about each subject. Keys are the subject's RFC 8785 bytes as the server
        # renders them from the columns on PostgreSQL (what the bulk path reads), the pair elsewhere.
        self.last_about: dict[Any, int] = {}
        self.unseen_before_start: dict[Any, tuple[int, Any]] = {}  # incremental runs: checked at the end
        self.pg = connection.vendor == "postgresql"

    def key_of(self, subject_type: str, subject_id: str, middle: bytes) -> Any:
        # `,"subject":` is in the middle once: strings in it have their quotes escaped.
        return middle[middle.rindex(b',"subject":') + len(b',"subject":'):] if self.pg else (subject_type, subject_id)

    def subject_of(self, key: Any) -> tuple[str, str]:
        if self.pg:
            subject = json.loads(key)
            return subject["type"], subject["id"]
        return key

    def reached(self, size: int) -> None:
        """The walk has checked entries up to `size`: note the root if wanted, check checkpoints there."""
        if size in self.wanted_roots:
            self.roots_seen[size] = merkle.fold_subtrees(self.stack)
        while self.next_checkpoint is not None and self.next_checkpoint.tree_size == size:
            self.checker.check_stored(self.next_checkpoint, self.roots_seen[size])
            self.next_checkpoint = next(self.pending, None)

    # -- entry by entry ---------------------------------------------------------------------------

    def entries(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Check entries one at a time until the first problem."""
        result = self.result
        last_about = self.last_about
        computed_levels = self.computed_levels
        stack = self.stack
        sha256 = hashlib.sha256
        for seq, subject_type, subject_id, head, middle, canonical, stored_prev, entry_hash, leaf in rows:
            if seq != self.expected_seq:
                result.fail(self.expected_seq, "seq_gap",
                            f"seq {self.expected_seq} is missing (next entry is seq {seq})")
                return
            if stored_prev != self.prev_hash:
                result.fail(seq, "chain_broken", f"seq {seq}: prev_hash does not equal the entry_hash of seq {seq - 1}")
                return
            if sha256(canonical).digest() != entry_hash:
                result.fail(seq, "entry_hash_mismatch", f"seq {seq}: entry_hash is not SHA-256 of its canonical bytes")
                return
            node = sha256(b"\x00" + canonical).digest()
            if node != leaf:
                result.fail(seq, "leaf_hash_mismatch", f"seq {seq}: stored leaf hash is wrong")
                return
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
                    result.fail(seq, "columns_mismatch", f"seq {seq}: stored columns (actor, action, subject, time "
                                "or seq) differ from the hashed entry")
                    return
            subject_key = self.key_of(subject_type, subject_id, middle)
            if seq >= self.cut_over:
                known = last_about.get(subject_key, _ABSENT)
                if known is _ABSENT and self.start and subject_key not in self.unseen_before_start:
                    self.unseen_before_start[subject_key] = (seq, claimed)
                elif claimed is _ABSENT or not (claimed is None or type(claimed) is int) \
                        or claimed != (None if known is _ABSENT else known):
                    _subject_prev_problem(result, seq, (subject_type, subject_id), claimed,
                                          None if known is _ABSENT else known)
                    return
            elif claimed is not _ABSENT:
                result.fail(seq, "subject_prev_before_cut_over",
                            f"seq {seq}: has subject_prev, but the ledger's cut-over is seq {self.cut_over}")
                return
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
            self.prev_hash = entry_hash
            self.expected_seq = seq + 1
            self.reached(self.expected_seq)
            result.entries_checked += 1
            if not result.ok:
                return

    # -- a chunk at a time (PostgreSQL) -------------------------------------------------------------

    def bulk(self, chunk_size: int) -> None:
        """Check the ledger a chunk at a time. The server sends each chunk as a few long byte
        strings (`_PG_CHUNK_SQL`); Python hashes every entry's bytes itself and compares whole
        concatenations at once. A chunk where anything differs goes to `entries`."""
        with transaction.atomic(), _ordered_scans():
            self._bulk(chunk_size)

    def _bulk(self, chunk_size: int) -> None:
        raw = connection.connection
        while self.result.ok:
            resume: tuple[int, int | None] | None = None  # where `entries` takes over, and up to
            chunks = _in_background(_chunks(raw, self.expected_seq, chunk_size))
            try:
                for low, high, chunk in chunks:
                    if chunk is None:  # nothing in [low, high): the end, or a gap `entries` names
                        resume = (self.expected_seq, None)
                        break
                    if not self.chunk(low, high, chunk):
                        resume = (self.expected_seq, high)
                        break
                    if not self.result.ok:  # a checkpoint inside the chunk did not verify
                        break
            finally:
                chunks.close()  # the fetching thread has stopped: the connection is free
            if resume is None:
                return
            self.entries(_stream_entries(resume[0], resume[1], chunk_size))
            if resume[1] is None:
                return

    def chunk(self, low: int, high: int, chunk: tuple[Any, ...]) -> bool:
        """Check one chunk (the entries with seq in [low, high)), in parts that end where a root
        is wanted and at the cut-over. False, with the walk at the start of the part that failed,
        when anything differs."""
        count, records, canonical, framed = chunk
        if count == 0 or framed is not True or self.expected_seq != low or len(records) != _RECORD.itemsize * count:
            return False
        fields = np.frombuffer(records, dtype=_RECORD)
        sizes = fields["length"].astype(np.int64)
        ends = np.cumsum(sizes + 1)
        if int(ends[-1]) != len(canonical):
            return False
        starts = ends - sizes  # entry i's bytes are canonical[starts[i]:ends[i]], after a NUL
        rests = starts + fields["rest"]
        tails = fields["tail"].astype(np.int64)
        # Each entry's subject as its bytes spell it after `,"seq":N,"subject":` (where the server
        # found the rest it rendered from the columns), up to the tail: the key `last_about` uses.
        digits = np.ones(count, dtype=np.int64)
        for power in range(1, 19):
            digits += fields["seq"] >= 10 ** power
        subject_keys = [canonical[first:last] for first, last in
                        zip((rests + _REST_KEY + digits).tolist(), (ends - tails).tolist(), strict=True)]
        hashes = np.ascontiguousarray(fields["hashes"])
        received = _Received(canonical, np.frombuffer(canonical, dtype=np.uint8), starts.tolist(), ends, rests,
                             tails, fields["time"], fields["seq"].tobytes(), hashes[:, 0].tobytes(),
                             hashes[:, 1].tobytes(), hashes[:, 2].tobytes(), subject_keys)
        cuts = sorted({size - low for size in self.wanted_roots if low < size < low + count}
                      | ({self.cut_over - low} if low < self.cut_over < low + count else set()) | {count})
        first = 0
        for last in cuts:
            if not self._part(received, first, last):
                return False
            self.reached(self.expected_seq)
            if not self.result.ok:
                return True
            first = last
        return True

    def _part(self, chunk: _Received, first: int, last: int) -> bool:
        """Entries first..last-1 of a chunk, every check in bulk; the walk moves only if all pass."""
        seq = self.expected_seq
        count = last - first
        if chunk.seqs[8 * first:8 * last] != np.arange(seq, seq + count, dtype=">i8").tobytes():
            return False
        # The chain: each prev_hash is the entry_hash before it (the walk's head for the first).
        entry_hashes = chunk.entry_hashes[32 * first:32 * last]
        prevs = chunk.prevs[32 * first:32 * last]
        if prevs != self.prev_hash + entry_hashes[:-32]:
            return False
        # The hashes, of the bytes received: entry_hash of the canonical bytes, leaf of NUL + them.
        starts = chunk.starts[first:last]
        ends = chunk.ends[first:last].tolist()
        if _hashes(chunk.canonical, starts, ends) != entry_hashes:
            return False
        node_bytes = chunk.leaves[32 * first:32 * last]
        if _hashes(chunk.canonical, [position - 1 for position in starts], ends) != node_bytes:
            return False
        # The prev_hash and time the bytes spell before the rest (the server matched head and rest).
        if not _fixed_fields_spell(chunk.view, chunk.rests[first:last], prevs, chunk.times[first:last]):
            return False
        if not self._subject_prev(seq, chunk.keys[first:last], chunk.view, chunk.ends[first:last],
                                  chunk.tails[first:last], chunk.canonical):
            return False
        self._merkle(seq, node_bytes)
        self.prev_hash = entry_hashes[-32:]
        self.expected_seq = seq + count
        self.result.entries_checked += count
        return True

    def _subject_prev(self, seq: int, keys: list[bytes], bytes_view: np.ndarray, ends: np.ndarray,
                      tails: np.ndarray, canonical: bytes) -> bool:
        """What follows each entry's middle spells the subject_prev the chain says (nothing before
        the cut-over); updates `last_about`, or leaves it as it was and returns False."""
        last_about = self.last_about
        if seq < self.cut_over:  # a part lies wholly before or after the cut-over
            if not _tails_spell(bytes_view, ends, tails, np.full(len(keys), _NONE_CLAIMED, dtype=np.int64)):
                return False
            last_about.update(zip(keys, range(seq, seq + len(keys)), strict=True))
            return True
        get = last_about.get
        known: list[int] = []
        record = known.append
        for position, key in enumerate(keys, seq):
            record(get(key, _NULL_CLAIMED))
            last_about[key] = position
        expected = np.array(known, dtype=np.int64)
        unseen: dict[bytes, tuple[int, Any]] = {}
        if self.start:  # the first entry about a subject since the start is checked at the end
            for index in np.flatnonzero(expected == _NULL_CLAIMED).tolist():
                key = keys[index]
                if key in unseen or key in self.unseen_before_start:
                    continue
                end = int(ends[index])
                claim = _claim_in(canonical[end - int(tails[index]):end])
                if claim is _MALFORMED:
                    expected[index] = _UNREADABLE  # matches no tail: the chunk goes entry by entry
                else:
                    unseen[key] = (seq + index, claim)
                    expected[index] = (_NONE_CLAIMED if claim is _ABSENT else _NULL_CLAIMED if claim is None
                                       else claim)
        if not _tails_spell(bytes_view, ends, tails, expected):
            for key, value in zip(reversed(keys), reversed(known), strict=True):
                if value == _NULL_CLAIMED:
                    del last_about[key]
                else:
                    last_about[key] = value
            return False
        self.unseen_before_start.update(unseen)
        return True

    def _merkle(self, seq: int, leaves: bytes) -> None:
        """Add leaves seq.. to the frontier, level by level, recording every subtree they complete."""
        pending = dict(_stack_to_frontier(self.stack, seq))  # level -> a left subtree awaiting its sibling
        nodes, index, level = leaves, seq, 0
        while nodes:
            if index & 1:
                nodes = pending.pop(level) + nodes
                index -= 1
            if len(nodes) // 32 & 1:
                pending[level] = nodes[-32:]
                nodes = nodes[:-32]
            if not nodes:
                break
            nodes = _parents(nodes)
            level += 1
            index >>= 1
            if len(self.computed_levels) < level:
                self.computed_levels.append(bytearray())
            self.computed_levels[level - 1] += nodes
        self.stack = [pending[level] for level in sorted(pending, reverse=True)]


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
    when anything differs (or on SQLite): then the node-by-node comparison names the bad node.

    One range of the primary key per level, read in key order and sent in binary: no sort of
    every node and no hex (a GROUP BY of the whole table took twice as long at 1,000,000 entries).
    """
    if connection.vendor != "postgresql":
        return False
    import psycopg  # the PostgreSQL backend's driver

    top = (len(computed_levels) + 1) << NODE_LEVEL_SHIFT
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(_NODES_OUTSIDE_SQL, [1 << NODE_LEVEL_SHIFT, top], binary=True)
        if cursor.fetchone()[0]:
            return False  # a node at level 0 or above the highest level the ledger has
        for level, computed in enumerate(computed_levels, start=1):
            low = level << NODE_LEVEL_SHIFT
            count = len(computed) // 32
            cursor.execute(_NODES_LEVEL_SQL, [low, (level + 1) << NODE_LEVEL_SHIFT], binary=True)
            stored_count, first, last, joined = cursor.fetchone()
            if stored_count != count or (count and (first != low or last != low + count - 1
                                                    or bytes(joined) != computed)):
                return False
    return True


# Within one level the node ids are its indices in order: a range of the primary key, read in
# key order (OFFSET 0 keeps the subquery's order into the aggregate, as in _PG_CHUNK_SQL).
_NODES_LEVEL_SQL = """SELECT count(*), min(node_id), max(node_id), string_agg(hash, ''::bytea)
  FROM (SELECT node_id, hash FROM audit_merklenode WHERE node_id >= %s AND node_id < %s
         ORDER BY node_id OFFSET 0) AS level"""
_NODES_OUTSIDE_SQL = """SELECT EXISTS (SELECT 1 FROM audit_merklenode WHERE node_id < %s)
    OR EXISTS (SELECT 1 FROM audit_merklenode WHERE node_id >= %s)"""


@contextmanager
def _ordered_scans() -> Iterator[None]:
    """In the caller's transaction: read ranges of seq through the primary key in order, never as
    a bitmap scan and a sort. Without statistics (a ledger filled since the last ANALYZE) the
    planner guessed a few thousand rows per chunk, chose a bitmap scan and sorted each chunk's
    11 MB on disk: 92 ms a chunk against 61 ms. The setting is the transaction's only, and put
    back as it was on the way out (an error rolls it back with the transaction)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_bitmapscan'), set_config('enable_bitmapscan', 'off', true)")
        previous = cursor.fetchone()[0]
    yield
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('enable_bitmapscan', %s, true)", [previous])


def _stream_nodes(start: int) -> Iterator[tuple[int, bytes]]:
    nodes = MerkleNode.objects.order_by("node_id").values_list("node_id", "hash")
    yield from nodes.iterator(chunk_size=20_000)


_ENTRY_SQL = ("SELECT seq, recorded_at, actor, action, subject_type, subject_id, canonical, prev_hash, "
              "entry_hash, leaf_hash FROM audit_ledgerentry WHERE seq >= %s AND seq < %s ORDER BY seq")
# On PostgreSQL the server renders the bytes around the payload from the columns (to_json is a
# JSON string encoding, RFC 8785's for every string; the time as the canonical bytes spell it),
# and rows come in binary, so nothing is hex-decoded, date-parsed or re-encoded in Python.
_PG_HEAD = """convert_to('{"action":' || to_json(action)::text || ',"actor":' || to_json(actor)::text
                  || ',"payload":', 'UTF8')"""
_PG_MIDDLE = """',"prev_hash":"' || encode(prev_hash, 'hex') || '","recorded_at":"'
                  || to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '","seq":'
                  || seq::text || ',"subject":{"id":' || to_json(subject_id)::text || ',"type":'
                  || to_json(subject_type)::text || '}'"""
_PG_ENTRY_SQL = f"""
SELECT seq, subject_type, subject_id, {_PG_HEAD}, convert_to({_PG_MIDDLE}, 'UTF8'),
       canonical, prev_hash, entry_hash, leaf_hash
  FROM audit_ledgerentry WHERE seq >= %s AND seq < %s ORDER BY seq"""
# One chunk as one row of long byte strings, in seq order:
# - a 124-byte record per entry: seq, the length of its canonical bytes, where its `rest`
#   (below) starts in them, the length of what follows the rest, and the time in microseconds
#   since 2000 (its binary form; all big-endian), then its prev, entry and leaf hashes;
# - the canonical bytes, each after a NUL;
# - whether every entry starts with its head and holds its rest, both rendered from its columns,
#   with room between them for the payload and for the prev_hash and time (checked by Python,
#   with what follows the rest: the subject_prev). The rest is looked for in the last bytes only:
#   what follows it is at most 36 bytes (`,"subject_prev":`, 18 digits, `}`).
_PG_REST = """',"seq":' || seq::text || ',"subject":{"id":' || to_json(subject_id)::text || ',"type":'
                  || to_json(subject_type)::text || '}'"""
_PG_CHUNK_SQL = rf"""
SELECT count(*),
       string_agg(int8send(seq) || int4send(length(canonical))
                  || int4send(window_start + found - 2)
                  || int4send(length(canonical) - (window_start + found - 2 + length(rest)))
                  || timestamptz_send(recorded_at)
                  || prev_hash || entry_hash || leaf_hash, ''::bytea),
       string_agg('\x00'::bytea || canonical, ''::bytea),
       bool_and(coalesce(found > 0 AND window_start + found - 2 > length(head) + {_FIXED_WIDTH}
                         AND substring(canonical FOR length(head)) = head, false))
  FROM (SELECT *, greatest(length(canonical) - length(rest) - 35, 1) AS window_start,
               position(rest IN substring(canonical FROM greatest(length(canonical) - length(rest) - 35, 1)))
                   AS found
          FROM (SELECT seq, recorded_at, canonical, prev_hash, entry_hash, leaf_hash, subject_type, subject_id,
                       {_PG_HEAD} AS head, convert_to({_PG_REST}, 'UTF8') AS rest
                  FROM audit_ledgerentry WHERE seq >= %s AND seq < %s ORDER BY seq OFFSET 0) AS rendered
         OFFSET 0) AS found"""
_NO_END = (1 << 63) - 1  # past every seq (a bigint)

_T = TypeVar("_T")
_DONE = object()


def _in_background(items: Iterator[_T]) -> Generator[_T, None, None]:
    """`items`, produced by a thread a few ahead of the consumer.

    The thread waits on the database with the GIL released, so the server renders and sends the
    next chunk while Python checks this one (two cores busy instead of taking turns). Closing the
    returned generator stops the thread before it returns, so the connection is free again.
    """
    ready: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                ready.put(item)
                if stop.is_set():
                    return
            ready.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            ready.put(exc)

    worker = threading.Thread(target=produce, name="verify_ledger_fetch", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                ready.get_nowait()
            except queue.Empty:
                worker.join(0.05)


def _chunks(raw: Any, position: int, chunk_size: int) -> Iterator[tuple[int, int, tuple[Any, ...] | None]]:
    """(low, high, the `_PG_CHUNK_SQL` row for seq in [low, high), None when it holds no entry)."""
    import psycopg  # the PostgreSQL backend's driver; its plain cursor binds on the server, so binary works

    while True:
        with psycopg.Cursor(raw) as cursor:
            cursor.execute(_PG_CHUNK_SQL, [position, position + chunk_size], binary=True)
            row = cursor.fetchone()
        if not row[0]:
            yield position, position + chunk_size, None
            return
        yield position, position + chunk_size, tuple(bytes(value) if isinstance(value, memoryview) else value
                                                     for value in row)
        position += chunk_size


def _stream_entries(start: int, end: int | None, chunk_size: int) -> Iterator[tuple[Any, ...]]:
    """(seq, subject_type, subject_id, head, middle, canonical, prev_hash, entry_hash, leaf_hash) for
    seq in [start, end) in seq order, streamed: a server-side cursor in binary on PostgreSQL,
    fetchmany on SQLite."""
    end = _NO_END if end is None else end
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        with transaction.atomic(), connection.connection.cursor(name="verify_ledger_entries") as cursor:
            cursor.execute(_PG_ENTRY_SQL, [start, end], binary=True)
            for rows in _in_background(iter(lambda: cursor.fetchmany(chunk_size), [])):
                yield from rows
        return
    heads: dict[tuple[str, str], bytes] = {}
    plain = _PLAIN_STRING.fullmatch
    with connection.cursor() as cursor:
        cursor.execute(_ENTRY_SQL, [start, end])
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
