"""Witness cosignatures (C2SP tlog-cosignature v1, Ed25519) and witness policies (C2SP tlog-policy). Pure.

A cosignature is a signed-note signature line `— <witness name> base64(key id || u64 time ||
Ed25519 signature)` over `cosignature/v1\\ntime <time>\\n` followed by the checkpoint note text.
Key id = SHA-256(name || 0x0A || 0x04 || public key)[:4]; a witness vkey has signature type 0x04.

A policy file lists `log <vkey> [url]`, `witness <name> <vkey> [url]`, `group <name> <k|all|any>
<member>...` and exactly one `quorum <name|none>`; names must be defined before use.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import note

COSIGNATURE_TYPE_ED25519 = 0x04
_HEX8 = re.compile(r"[0-9a-fA-F]{8}\Z")
_DECIMAL = re.compile(r"[1-9][0-9]*\Z")


class CosignatureError(ValueError):
    """A witness vkey, cosignature line or policy file is malformed, or a cosignature does not verify."""


@dataclass(frozen=True)
class WitnessKey:
    name: str
    key_id: bytes
    public_key: bytes
    vkey: str


@dataclass(frozen=True)
class Cosignature:
    witness: WitnessKey
    timestamp: int
    line: str


def witness_key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([COSIGNATURE_TYPE_ED25519]) + public_key).digest()[:4]


def parse_witness_vkey(text: str) -> WitnessKey:
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or not parts[0] or not _HEX8.match(parts[1]):
        raise CosignatureError("a witness vkey is <name>+<8 hex key id>+<base64 key>")
    name, key_hex, key_b64 = parts
    try:
        material = base64.b64decode(key_b64, validate=True)
    except ValueError:
        raise CosignatureError("the witness vkey's key is not base64") from None
    if len(material) != 33 or material[0] != COSIGNATURE_TYPE_ED25519:
        raise CosignatureError("the witness vkey is not an Ed25519 cosignature/v1 key (type 0x04)")
    if bytes.fromhex(key_hex) != witness_key_id(name, material[1:]):
        raise CosignatureError("the witness vkey's key id does not match its name and key")
    return WitnessKey(name=name, key_id=bytes.fromhex(key_hex), public_key=material[1:], vkey=text.strip())


def cosigned_message(checkpoint_text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode("ascii") + checkpoint_text.encode("utf-8")


def verify_cosignature_line(line: str, checkpoint_text: str, witness: WitnessKey) -> Cosignature:
    """Check one signature line as `witness`'s cosignature over the checkpoint note text."""
    line = line.rstrip("\n")
    prefix = f"\u2014 {witness.name} "
    if not line.startswith(prefix):
        raise CosignatureError(f"not a signature line by {witness.name!r}")
    try:
        raw = base64.b64decode(line[len(prefix):], validate=True)
    except ValueError:
        raise CosignatureError("the cosignature is not base64") from None
    if len(raw) != 4 + 8 + 64 or raw[:4] != witness.key_id:
        raise CosignatureError(f"not a cosignature/v1 by {witness.name}+{witness.key_id.hex()}")
    (timestamp,) = struct.unpack(">Q", raw[4:12])
    if timestamp >= 2**63:
        raise CosignatureError("the cosignature's time is out of range")
    try:
        Ed25519PublicKey.from_public_bytes(witness.public_key).verify(raw[12:],
                                                                      cosigned_message(checkpoint_text, timestamp))
    except InvalidSignature:
        raise CosignatureError(f"the cosignature by {witness.name} does not verify") from None
    return Cosignature(witness=witness, timestamp=timestamp, line=line)


@dataclass(frozen=True)
class PolicyWitness:
    name: str
    key: WitnessKey
    url: str | None


@dataclass
class Policy:
    logs: list[note.Verifier] = field(default_factory=list)
    witnesses: dict[str, PolicyWitness] = field(default_factory=dict)
    groups: dict[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)
    quorum: str | None = None

    def satisfied(self, cosigned: set[str], name: str | None = None) -> bool:
        """Whether the witnesses named in `cosigned` (policy names) meet the quorum (or group `name`)."""
        target = self.quorum if name is None else name
        if target is None:
            return True
        if target in self.witnesses:
            return target in cosigned
        threshold, members = self.groups[target]
        return sum(1 for member in members if self.satisfied(cosigned, member)) >= threshold


def parse_policy(text: str) -> Policy:
    """Parse a C2SP tlog-policy file; CosignatureError names the line that is wrong."""
    policy = Policy()
    quorum_seen = False
    for number, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.strip(" \t")
        if not line or line.startswith("#"):
            continue
        words = [word for word in re.split(r"[ \t]+", line) if word]
        keyword, rest = words[0], words[1:]
        try:
            if keyword == "log" and len(rest) in (1, 2):
                policy.logs.append(note.parse_vkey(rest[0]))
            elif keyword == "witness" and len(rest) in (2, 3):
                name = rest[0]
                if name == "none" or name in policy.witnesses or name in policy.groups:
                    raise CosignatureError(f"name {name!r} is reserved or defined twice")
                key = parse_witness_vkey(rest[1])
                if any(w.key.public_key == key.public_key for w in policy.witnesses.values()):
                    raise CosignatureError("duplicate witness key")
                policy.witnesses[name] = PolicyWitness(name=name, key=key, url=rest[2] if len(rest) == 3 else None)
            elif keyword == "group" and len(rest) >= 3:
                name, threshold_text, members = rest[0], rest[1], tuple(rest[2:])
                if name == "none" or name in policy.witnesses or name in policy.groups:
                    raise CosignatureError(f"name {name!r} is reserved or defined twice")
                if len(set(members)) != len(members):
                    raise CosignatureError("a group lists a member twice")
                for member in members:
                    if member not in policy.witnesses and member not in policy.groups:
                        raise CosignatureError(f"group member {member!r} is not defined above")
                if threshold_text == "all":
                    threshold = len(members)
                elif threshold_text == "any":
                    threshold = 1
                elif _DECIMAL.match(threshold_text) and int(threshold_text) <= len(members):
                    threshold = int(threshold_text)
                else:
                    raise CosignatureError(f"group threshold {threshold_text!r} is not all, any or 1..{len(members)}")
                policy.groups[name] = (threshold, members)
            elif keyword == "quorum" and len(rest) == 1:
                if quorum_seen:
                    raise CosignatureError("more than one quorum line")
                quorum_seen = True
                if rest[0] != "none" and rest[0] not in policy.witnesses and rest[0] not in policy.groups:
                    raise CosignatureError(f"quorum {rest[0]!r} is not defined above")
                policy.quorum = None if rest[0] == "none" else rest[0]
            else:
                raise CosignatureError(f"unknown or malformed line {keyword!r}")
        except (CosignatureError, note.NoteError) as exc:
            raise CosignatureError(f"policy line {number}: {exc}") from None
    if not quorum_seen:
        raise CosignatureError("the policy has no quorum line")
    return policy


def add_checkpoint_body(*, old_size: int, proof: list[bytes], signed_checkpoint: str) -> bytes:
    """The tlog-witness add-checkpoint request body: `old N`, proof lines, a blank line, the checkpoint."""
    lines = [f"old {old_size}"] + [base64.b64encode(node).decode("ascii") for node in proof]
    return ("\n".join(lines) + "\n\n" + signed_checkpoint).encode("utf-8")
