"""C2SP signed notes (Ed25519) and tlog-checkpoint v1.0.0 bodies, byte-compatible with Go's sumdb/note.

A signed note is the note text (ending in a newline), a blank line, then one line per
signature: em dash U+2014, space, key name, space, base64(4-byte key id || Ed25519 signature
over the UTF-8 note text), newline. Key id = SHA-256(name || 0x0A || 0x01 || 32-byte public
key)[:4]. A verifier key ("vkey") is `<name>+<8 hex key id>+<base64(0x01 || public key)>`.

Specs: https://c2sp.org/signed-note and https://c2sp.org/tlog-checkpoint@v1.0.0.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

SIGNATURE_TYPE_ED25519 = 0x01
ED25519_PUBLIC_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
KEY_ID_BYTES = 4
ROOT_HASH_BYTES = 32
# Same cap as the Go reference; the spec only requires accepting at least 16.
MAX_SIGNATURES = 100
MAX_TREE_SIZE = 2**64 - 1

_SIGNATURE_PREFIX = "\u2014 "
_STD_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_HEX_KEY_ID = re.compile(r"[0-9a-fA-F]{8}")
_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")


class NoteError(ValueError):
    """A note, verifier key or checkpoint is malformed, or its signatures do not verify."""


@dataclass(frozen=True)
class Verifier:
    """A trusted Ed25519 note key; construction refuses a key id that does not match name and key."""

    name: str
    key_id: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        if self.key_id != key_id(self.name, self.public_key):
            raise NoteError(f"key id {self.key_id.hex()} does not match key {self.name!r}")

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Verifier:
        """Build the verifier for a raw 32-byte Ed25519 public key, deriving its key id."""
        return cls(name=name, key_id=key_id(name, public_key), public_key=public_key)

    @property
    def vkey(self) -> str:
        """The published verifier key string for this key."""
        return vkey(self.name, self.public_key)

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Whether `sig` is this key's Ed25519 signature over `msg` (the note text, key id stripped)."""
        if len(sig) != ED25519_SIGNATURE_BYTES:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(sig, msg)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Checkpoint:
    """The three mandatory lines of a tlog checkpoint, plus its opaque extension lines."""

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        """The note text of this checkpoint, ready for `sign_note`."""
        return checkpoint_body(self.origin, self.tree_size, self.root_hash, self.extensions)


@dataclass(frozen=True)
class _SignatureLine:
    name: str
    key_id: bytes
    signature: bytes
    line: str


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError(f"{what} is not valid UTF-8") from None


def _check_no_controls(text: str, what: str) -> None:
    # The spec forbids ASCII control characters other than newline anywhere in a note.
    for char in text:
        if char < " " and char != "\n":
            raise NoteError(f"{what} contains control character {char!r}")


def _check_name(name: str) -> None:
    if not name:
        raise NoteError("key name is empty")
    _utf8(name, "key name")
    for char in name:
        if char == "+" or char.isspace() or unicodedata.category(char) in ("Zs", "Zl", "Zp", "Cc"):
            raise NoteError(f"key name {name!r} contains {char!r}")


def _b64decode(text: str, what: str) -> bytes:
    # Only canonical padded standard base64, so that every signature has one spelling.
    if not _STD_BASE64.fullmatch(text):
        raise NoteError(f"{what} is not standard base64")
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise NoteError(f"{what} is not standard base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id: SHA-256(name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]."""
    _check_name(name)
    if len(public_key) != ED25519_PUBLIC_KEY_BYTES:
        raise NoteError(f"Ed25519 public key must be {ED25519_PUBLIC_KEY_BYTES} bytes")
    material = name.encode("utf-8") + b"\n" + bytes([SIGNATURE_TYPE_ED25519]) + public_key
    return hashlib.sha256(material).digest()[:KEY_ID_BYTES]


def vkey(name: str, public_key: bytes) -> str:
    """The verifier key string `<name>+<hex key id>+<base64(0x01 || public key)>`."""
    key_hex = key_id(name, public_key).hex()
    return f"{name}+{key_hex}+{_b64encode(bytes([SIGNATURE_TYPE_ED25519]) + public_key)}"


def parse_vkey(text: str) -> Verifier:
    """Parse a verifier key string; the key must be Ed25519 and the key id must match it."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise NoteError("verifier key must be <name>+<key id>+<key>")
    name, key_hex, key_b64 = parts
    _check_name(name)
    if not _HEX_KEY_ID.fullmatch(key_hex):
        raise NoteError("verifier key id must be 8 hex digits")
    key_material = _b64decode(key_b64, "verifier key")
    if len(key_material) != 1 + ED25519_PUBLIC_KEY_BYTES:
        raise NoteError("verifier key has the wrong length for Ed25519")
    if key_material[0] != SIGNATURE_TYPE_ED25519:
        raise NoteError(f"unsupported signature type 0x{key_material[0]:02x}")
    return Verifier(name=name, key_id=bytes.fromhex(key_hex), public_key=key_material[1:])


def _check_text(text: str) -> bytes:
    if not text.endswith("\n"):
        raise NoteError("note text must be non-empty and end with a newline")
    _check_no_controls(text, "note text")
    return _utf8(text, "note text")


def _signature_line(text_bytes: bytes, name: str, private_key: Ed25519PrivateKey) -> _SignatureLine:
    public_key = private_key.public_key().public_bytes_raw()
    signer_key_id = key_id(name, public_key)
    signature = private_key.sign(text_bytes)
    line = f"{_SIGNATURE_PREFIX}{name} {_b64encode(signer_key_id + signature)}"
    return _SignatureLine(name=name, key_id=signer_key_id, signature=signature, line=line)


def _parse(note: str) -> tuple[str, list[_SignatureLine]]:
    _check_no_controls(note, "note")
    _utf8(note, "note")
    # The text is separated from the signatures by the last blank line (the text may have others).
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("note must end with a newline-terminated signature line")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
    parsed = []
    for line in lines:
        if not line.startswith(_SIGNATURE_PREFIX):
            raise NoteError(f"not a signature line: {line!r}")
        name, _, sig_b64 = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        _check_name(name)
        raw = _b64decode(sig_b64, f"signature by {name!r}")
        if len(raw) <= KEY_ID_BYTES:
            raise NoteError(f"signature by {name!r} is too short")
        parsed.append(_SignatureLine(name=name, key_id=raw[:KEY_ID_BYTES], signature=raw[KEY_ID_BYTES:], line=line))
    return text, parsed


def sign_note(text: str, *, name: str, private_key: Ed25519PrivateKey) -> str:
    """Sign `text` (non-empty, newline-terminated, no control characters) as a one-signature note."""
    line = _signature_line(_check_text(text), name, private_key)
    return f"{text}\n{line.line}\n"


def add_signature(note: str, *, name: str, private_key: Ed25519PrivateKey) -> str:
    """Co-sign a note, replacing any earlier signature by the same key; existing ones are not verified."""
    text, existing = _parse(note)
    new = _signature_line(_check_text(text), name, private_key)
    kept = [sig.line for sig in existing if (sig.name, sig.key_id) != (new.name, new.key_id)]
    if len(kept) + 1 > MAX_SIGNATURES:
        raise NoteError(f"note would have more than {MAX_SIGNATURES} signatures")
    return text + "\n" + "".join(line + "\n" for line in [*kept, new.line])


def open_note(note: str, verifiers: Iterable[Verifier]) -> tuple[str, list[Verifier]]:
    """Return the text and the known keys that signed it.

    A signature counts only if both its key name and key id match a known verifier; others are
    ignored, as the spec requires. Every signature by a known key must verify (stricter than Go,
    which checks only the first per key), and at least one must exist, or NoteError is raised.
    """
    known: dict[tuple[str, bytes], Verifier] = {}
    for verifier in verifiers:
        previous = known.setdefault((verifier.name, verifier.key_id), verifier)
        if previous.public_key != verifier.public_key:
            raise NoteError(f"ambiguous key {verifier.name}+{verifier.key_id.hex()}")
    text, signatures = _parse(note)
    text_bytes = text.encode("utf-8")
    signed_by: list[Verifier] = []
    for sig in signatures:
        signer = known.get((sig.name, sig.key_id))
        if signer is None:
            continue
        if not signer.verify(text_bytes, sig.signature):
            raise NoteError(f"invalid signature for key {sig.name}+{sig.key_id.hex()}")
        if signer not in signed_by:
            signed_by.append(signer)
    if not signed_by:
        raise NoteError("note has no signature from a known key")
    return text, signed_by


def _check_checkpoint_line(line: str, what: str) -> None:
    if not line:
        raise NoteError(f"checkpoint {what} is empty")
    if "\n" in line:
        raise NoteError(f"checkpoint {what} contains a newline")
    _check_no_controls(line, f"checkpoint {what}")
    _utf8(line, f"checkpoint {what}")


def checkpoint_body(origin: str, tree_size: int, root_hash: bytes, extensions: Sequence[str] = ()) -> str:
    """The checkpoint note text: origin, decimal tree size, base64 root hash, extension lines."""
    _check_checkpoint_line(origin, "origin")
    if isinstance(tree_size, bool) or not isinstance(tree_size, int):
        raise NoteError("checkpoint tree size must be an int")
    if not 0 <= tree_size <= MAX_TREE_SIZE:
        raise NoteError(f"checkpoint tree size {tree_size} is out of range")
    if len(root_hash) != ROOT_HASH_BYTES:
        raise NoteError(f"checkpoint root hash must be {ROOT_HASH_BYTES} bytes")
    for extension in extensions:
        _check_checkpoint_line(extension, "extension line")
    lines = [origin, str(tree_size), _b64encode(root_hash), *extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse checkpoint note text strictly (canonical decimal size, 32-byte canonical base64 root)."""
    if not body.endswith("\n"):
        raise NoteError("checkpoint must end with a newline")
    _check_no_controls(body, "checkpoint")
    _utf8(body, "checkpoint")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint needs origin, tree size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise NoteError("checkpoint origin is empty")
    if not _TREE_SIZE.fullmatch(size_text):
        raise NoteError(f"checkpoint tree size {size_text!r} is not canonical decimal")
    tree_size = int(size_text)
    if tree_size > MAX_TREE_SIZE:
        raise NoteError(f"checkpoint tree size {tree_size} is out of range")
    root_hash = _b64decode(root_text, "checkpoint root hash")
    if len(root_hash) != ROOT_HASH_BYTES:
        raise NoteError(f"checkpoint root hash must be {ROOT_HASH_BYTES} bytes")
    if any(not extension for extension in extensions):
        raise NoteError("checkpoint extension lines must be non-empty")
    return Checkpoint(origin=origin, tree_size=tree_size, root_hash=root_hash, extensions=tuple(extensions))
