#!/usr/bin/env python3
"""A transparency-log witness (C2SP tlog-witness, tlog-cosignature v1). Stand-alone: Python 3.9+ and `cryptography`.

    python witness.py --state DIR keygen --name witness.example/w1
    python witness.py --state DIR add-log --origin ORIGIN --vkey LOG_VKEY
    python witness.py --state DIR serve --listen 127.0.0.1:7380
    python witness.py --state DIR vkey

A regulator or auditor runs this, on their own machine, with their own key. The log (the
governance service) POSTs `add-checkpoint` to it; the witness cosigns a checkpoint only when it
is signed by the log key it was given and is consistent (RFC 6962 §2.1.2 / RFC 9162 §2.1.4)
with the last checkpoint it cosigned for that origin. So it will never cosign two views of one
log that disagree, nor a smaller tree after a larger one; its state lives in DIR/witness.sqlite,
and the check and the update happen in one SQLite transaction before it answers.

This file imports nothing from the service. It re-implements, from the public specifications:
https://c2sp.org/tlog-witness, https://c2sp.org/tlog-cosignature, https://c2sp.org/signed-note
and https://c2sp.org/tlog-checkpoint.

Answers to `POST /add-checkpoint` (as the spec says):
200 cosignature line(s); 400 malformed request or old size above the checkpoint size;
403 no signature by the log's key; 404 unknown origin; 409 (`text/x.tlog.size` body: the size
this witness last cosigned) when `old` is not that size; 422 the consistency proof does not
verify, or the same size with another root hash (a fork; tlog-witness v1.0.0 said 409 there).
Refused requests whose log signature verified are kept in the `evidence` table: they may be
proof that the log misbehaved.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import http.server
import os
import re
import sqlite3
import struct
import sys
import threading
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
except ImportError:  # pragma: no cover - the one dependency
    sys.stderr.write("witness.py needs the `cryptography` package: pip install cryptography\n")
    sys.exit(2)

NOTE_SIGNATURE_TYPE_ED25519 = 0x01
COSIGNATURE_TYPE_ED25519 = 0x04
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_PROOF_LINES = 63
MAX_BODY_BYTES = 64 * 1024
SIGNATURE_PREFIX = "\u2014 "
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z")
_STD_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}\Z")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}\Z")

SCHEMA = """
CREATE TABLE IF NOT EXISTS config (id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL, vkey TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logs (origin TEXT NOT NULL, vkey TEXT NOT NULL, added_at INTEGER NOT NULL,
    PRIMARY KEY (origin, vkey));
CREATE TABLE IF NOT EXISTS checkpoints (
    origin TEXT PRIMARY KEY, tree_size INTEGER NOT NULL, root_hash BLOB NOT NULL,
    note TEXT NOT NULL, cosigned_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT, origin TEXT NOT NULL, received_at INTEGER NOT NULL,
    status INTEGER NOT NULL, reason TEXT NOT NULL, request TEXT NOT NULL);
"""


class Refusal(Exception):
    """An answer other than 200: the HTTP status, a reason for the log, and an optional body."""

    def __init__(self, status: int, reason: str, body: bytes = b"", content_type: str = "text/plain; charset=utf-8"):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.body = body or (reason + "\n").encode("utf-8")
        self.content_type = content_type


# --- Merkle trees (RFC 9162 §2.1) -----------------------------------------------------------

def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_consistency(first_size: int, second_size: int, proof: Sequence[bytes],
                       first_root: bytes, second_root: bytes) -> None:
    """RFC 9162 §2.1.4.2; raises ValueError unless tree `first_size` is a prefix of tree `second_size`."""
    if not 0 <= first_size <= second_size:
        raise ValueError("tree sizes are not in order")
    if first_size == second_size:
        if proof:
            raise ValueError("a proof between equal sizes must be empty")
        if first_root != second_root:
            raise ValueError("equal sizes with different root hashes")
        return
    if first_size == 0:
        if proof:
            raise ValueError("a proof from the empty tree must be empty")
        return
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        raise ValueError("the proof is empty or holds a hash that is not 32 bytes")
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
    if fr != first_root or sr != second_root:
        raise ValueError("the proof does not lead to both root hashes")


# --- Signed notes, vkeys, checkpoints, cosignatures -----------------------------------------

def b64decode_strict(text: str, what: str) -> bytes:
    if not _STD_BASE64.match(text):
        raise ValueError(f"{what} is not standard base64")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not standard base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError(f"{what} is not canonical base64")
    return raw


def check_key_name(name: str) -> None:
    if not name or any(ch == "+" or ch.isspace() or unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cc")
                       for ch in name):
        raise ValueError(f"invalid key name {name!r}")


def note_key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || signature type || public key)[:4] (signed-note; 0x04 for cosignature/v1)."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([signature_type]) + public_key).digest()[:4]


def make_vkey(name: str, signature_type: int, public_key: bytes) -> str:
    key_id = note_key_id(name, signature_type, public_key).hex()
    return f"{name}+{key_id}+{base64.b64encode(bytes([signature_type]) + public_key).decode('ascii')}"


def parse_vkey(text: str, signature_type: int) -> tuple[str, bytes, bytes]:
    """(name, key id, raw Ed25519 public key) of a vkey of the given signature type."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise ValueError("a vkey is <name>+<key id>+<base64 key>")
    name, key_hex, key_b64 = parts
    check_key_name(name)
    if not _HEX8.match(key_hex):
        raise ValueError("the vkey's key id is not 8 hex digits")
    material = b64decode_strict(key_b64, "the vkey's key")
    if len(material) != 33 or material[0] != signature_type:
        raise ValueError(f"the vkey is not an Ed25519 key of signature type 0x{signature_type:02x}")
    key_id = bytes.fromhex(key_hex)
    if key_id != note_key_id(name, signature_type, material[1:]):
        raise ValueError("the vkey's key id does not match its name and key")
    return name, key_id, material[1:]


def split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """(note text, [(key name, key id, signature)]) of a signed note; ValueError if malformed."""
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
        if not line.startswith(SIGNATURE_PREFIX):
            raise ValueError("not a signature line")
        name, _, sig_b64 = line[len(SIGNATURE_PREFIX):].partition(" ")
        check_key_name(name)
        raw = b64decode_strict(sig_b64, "a signature")
        if len(raw) <= 4:
            raise ValueError("a signature is too short")
        signatures.append((name, raw[:4], raw[4:]))
    return text, signatures


def parse_checkpoint(text: str) -> tuple[str, int, bytes]:
    """(origin, tree size, root hash) of checkpoint note text."""
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not lines[0]:
        raise ValueError("a checkpoint needs origin, tree size and root hash lines")
    if not _DECIMAL.match(lines[1]) or int(lines[1]) >= 2**63:
        raise ValueError("the tree size is not a canonical decimal")
    root = b64decode_strict(lines[2], "the root hash")
    if len(root) != HASH_SIZE:
        raise ValueError("the root hash is not 32 bytes")
    if any(not line for line in lines[3:]):
        raise ValueError("an extension line is empty")
    return lines[0], int(lines[1]), root


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: the header line, the time line, then the checkpoint note text."""
    return f"cosignature/v1\ntime {timestamp}\n".encode("ascii") + checkpoint_text.encode("utf-8")


def cosign(checkpoint_text: str, *, name: str, private_key: Ed25519PrivateKey, timestamp: int) -> str:
    """One cosignature/v1 note signature line: key id (0x04) || 8-byte big-endian time || Ed25519."""
    public_key = private_key.public_key().public_bytes_raw()
    signature = private_key.sign(cosignature_message(checkpoint_text, timestamp))
    raw = note_key_id(name, COSIGNATURE_TYPE_ED25519, public_key) + struct.pack(">Q", timestamp) + signature
    return f"{SIGNATURE_PREFIX}{name} {base64.b64encode(raw).decode('ascii')}\n"


# --- The request ----------------------------------------------------------------------------

def parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    """(old size, consistency proof, checkpoint note) of an add-checkpoint body; Refusal(400) if malformed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(400, "the request body is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise Refusal(400, "the request has no empty line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old ") or not _DECIMAL.match(lines[0][4:]):
        raise Refusal(400, "the first line must be `old <size>` in canonical decimal")
    old_size = int(lines[0][4:])
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise Refusal(400, f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in lines[1:]:
        try:
            node = b64decode_strict(line, "a consistency proof line")
        except ValueError as exc:
            raise Refusal(400, str(exc)) from None
        if len(node) != HASH_SIZE:
            raise Refusal(400, "a consistency proof hash is not 32 bytes")
        proof.append(node)
    return old_size, proof, note


class Witness:
    """The witness state (SQLite) and key; `add_checkpoint` is the whole protocol."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.db_path = state_dir / "witness.sqlite"
        self._local = threading.local()
        with self.connect() as db:
            db.executescript(SCHEMA)
        self.name = ""
        self.private_key: Ed25519PrivateKey | None = None

    def connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
            db = sqlite3.connect(str(self.db_path), isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def load_key(self) -> None:
        row = self.connect().execute("SELECT name FROM config WHERE id = 1").fetchone()
        if row is None:
            raise SystemExit("no witness key: run `witness.py --state DIR keygen --name NAME` first")
        self.name = row[0]
        pem = (self.state_dir / "witness.key").read_bytes()
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise SystemExit("witness.key is not an Ed25519 private key")
        self.private_key = key

    def add_checkpoint(self, body: bytes, now: int | None = None) -> str:
        """Check a request and cosign; the compare-and-set and the update are one transaction."""
        old_size, proof, note = parse_request(body)
        try:
            text, signatures = split_note(note)
            origin, tree_size, root = parse_checkpoint(text)
        except ValueError as exc:
            raise Refusal(400, f"the checkpoint is malformed: {exc}") from None
        db = self.connect()
        rows = db.execute("SELECT vkey FROM logs WHERE origin = ?", (origin,)).fetchall()
        if not rows:
            raise Refusal(404, f"unknown log origin {origin!r}")
        # Every key the witness operator registered for this origin (more than one after a rotation).
        log_keys = {}
        for (vkey,) in rows:
            name, key_id, public_key = parse_vkey(vkey, NOTE_SIGNATURE_TYPE_ED25519)
            log_keys[(name, key_id)] = Ed25519PublicKey.from_public_bytes(public_key)
        verified = False
        for sig_name, sig_key_id, signature in signatures:
            log_key = log_keys.get((sig_name, sig_key_id))
            if log_key is None:
                continue  # signatures by unknown keys are ignored
            try:
                log_key.verify(signature, text.encode("utf-8"))
                verified = True
            except InvalidSignature:
                pass
        if not verified:
            raise Refusal(403, "no signature by the log's key verifies")
        if old_size > tree_size:
            raise Refusal(400, f"old size {old_size} is above the checkpoint size {tree_size}")
        if old_size == 0 and proof:
            raise Refusal(400, "the consistency proof must be empty when the old size is 0")
        timestamp = int(time.time()) if now is None else now
        db.execute("BEGIN IMMEDIATE")
        try:
            stored = db.execute("SELECT tree_size, root_hash FROM checkpoints WHERE origin = ?", (origin,)).fetchone()
            stored_size, stored_root = (stored[0], bytes(stored[1])) if stored else (0, EMPTY_ROOT)
            if old_size != stored_size:
                raise Refusal(409, f"old size {old_size} is not the size last cosigned",
                              body=f"{stored_size}\n".encode("ascii"), content_type=SIZE_CONTENT_TYPE)
            if stored is not None or old_size != 0:
                try:
                    verify_consistency(old_size, tree_size, proof, stored_root, root)
                except ValueError as exc:
                    raise Refusal(422, f"not consistent with the checkpoint cosigned at size {stored_size}: {exc}") \
                        from None
            db.execute("INSERT INTO checkpoints (origin, tree_size, root_hash, note, cosigned_at) "
                       "VALUES (?, ?, ?, ?, ?) ON CONFLICT(origin) DO UPDATE SET tree_size = excluded.tree_size, "
                       "root_hash = excluded.root_hash, note = excluded.note, cosigned_at = excluded.cosigned_at",
                       (origin, tree_size, root, note, timestamp))
            db.execute("COMMIT")
        except Refusal as refusal:
            db.execute("ROLLBACK")
            # The log signed this request: keep it, it may prove that the log forked.
            db.execute("INSERT INTO evidence (origin, received_at, status, reason, request) VALUES (?, ?, ?, ?, ?)",
                       (origin, timestamp, refusal.status, refusal.reason, body.decode("utf-8")))
            raise
        except BaseException:
            db.execute("ROLLBACK")
            raise
        assert self.private_key is not None
        return cosign(text, name=self.name, private_key=self.private_key, timestamp=timestamp)


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "governance-witness/1"
    protocol_version = "HTTP/1.1"
    witness: Witness

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        if self.path.rstrip("/").rsplit("/", 1)[-1] != "add-checkpoint":
            self._answer(404, b"not found\n")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._answer(411, b"Content-Length required\n")
            return
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._answer(413, b"request too large\n")
            return
        body = self.rfile.read(length)
        try:
            cosignature = self.witness.add_checkpoint(body)
        except Refusal as refusal:
            self._answer(refusal.status, refusal.body, refusal.content_type)
            return
        except Exception as exc:  # noqa: BLE001 - never cosign on a surprise; tell the log
            self._answer(500, f"internal error: {type(exc).__name__}\n".encode())
            return
        self._answer(200, cosignature.encode("utf-8"))

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if self.path.rstrip("/") in ("", "/vkey"):
            row = self.witness.connect().execute("SELECT vkey FROM config WHERE id = 1").fetchone()
            self._answer(200, (row[0] + "\n").encode("utf-8"))
            return
        self._answer(404, b"not found\n")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the http.server API
        sys.stderr.write("witness: " + (format % args) + "\n")


# --- Commands -------------------------------------------------------------------------------

def command_keygen(witness: Witness, args: argparse.Namespace) -> int:
    key_path = witness.state_dir / "witness.key"
    if key_path.exists():
        print(f"{key_path} exists already; refusing to replace a witness key", file=sys.stderr)
        return 1
    check_key_name(args.name)
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    fd = os.open(str(key_path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    vkey = make_vkey(args.name, COSIGNATURE_TYPE_ED25519, private_key.public_key().public_bytes_raw())
    witness.connect().execute("INSERT INTO config (id, name, vkey) VALUES (1, ?, ?)", (args.name, vkey))
    print(vkey)
    return 0


def command_add_log(witness: Witness, args: argparse.Namespace) -> int:
    try:
        name, _, _ = parse_vkey(args.vkey, NOTE_SIGNATURE_TYPE_ED25519)
    except ValueError as exc:
        print(f"bad log vkey: {exc}", file=sys.stderr)
        return 1
    if name != args.origin:
        print(f"the log vkey's name {name!r} is not the origin {args.origin!r}", file=sys.stderr)
        return 1
    db = witness.connect()
    known = [row[0] for row in db.execute("SELECT vkey FROM logs WHERE origin = ?", (args.origin,))]
    if args.vkey.strip() in known:
        print(f"log {args.origin!r} is already known with this key")
        return 0
    if known and not args.rotated:
        print(f"log {args.origin!r} is known with another key. Add this one only if the log's operator "
              "announced a key rotation you checked (--rotated); a new key is how a rebuilt log would look.",
              file=sys.stderr)
        return 1
    db.execute("INSERT INTO logs (origin, vkey, added_at) VALUES (?, ?, ?)",
               (args.origin, args.vkey.strip(), int(time.time())))
    print(f"added log {args.origin!r}")
    return 0


def command_vkey(witness: Witness, args: argparse.Namespace) -> int:
    row = witness.connect().execute("SELECT vkey FROM config WHERE id = 1").fetchone()
    if row is None:
        print("no witness key yet: run keygen", file=sys.stderr)
        return 1
    print(row[0])
    return 0


def command_serve(witness: Witness, args: argparse.Namespace) -> int:
    witness.load_key()
    host, _, port = args.listen.rpartition(":")
    handler = type("BoundHandler", (Handler,), {"witness": witness})
    server = http.server.ThreadingHTTPServer((host or "127.0.0.1", int(port)), handler)
    print(f"witness {witness.name} listening on http://{host}:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A C2SP tlog-witness: cosigns checkpoints that extend what it saw.")
    parser.add_argument("--state", default="witness-state", help="the folder holding witness.key and witness.sqlite")
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="create this witness's Ed25519 key; prints its vkey")
    keygen.add_argument("--name", required=True, help="the witness name, e.g. witness.example.org/w1")
    add_log = commands.add_parser("add-log", help="trust a log: its origin and its checkpoint vkey")
    add_log.add_argument("--origin", required=True)
    add_log.add_argument("--vkey", required=True)
    add_log.add_argument("--rotated", action="store_true", help="add a further key for a known origin "
                         "(after a key rotation you checked out of band)")
    commands.add_parser("vkey", help="print this witness's vkey")
    serve = commands.add_parser("serve", help="answer add-checkpoint over HTTP")
    serve.add_argument("--listen", default="127.0.0.1:7380", help="HOST:PORT (port 0 picks a free one)")
    args = parser.parse_args(argv)
    state_dir = Path(args.state)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    witness = Witness(state_dir)
    handlers = {"keygen": command_keygen, "add-log": command_add_log, "vkey": command_vkey, "serve": command_serve}
    return handlers[args.command](witness, args)


if __name__ == "__main__":
    sys.exit(main())
