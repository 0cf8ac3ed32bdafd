"""DSSE v1 JSON envelopes signed with Ed25519, for attestations we issue and ones pipelines submit.

Each signature is Ed25519 over PAE(payloadType, payload) =
b"DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload, where type is UTF-8 and LEN is the
ASCII decimal byte length. Specs: https://github.com/secure-systems-lab/dsse (protocol.md,
envelope.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from typing import TypedDict

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

PAYLOAD_TYPE_IN_TOTO = "application/vnd.in-toto+json"
ED25519_PUBLIC_KEY_BYTES = 32

_STD_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URLSAFE_BASE64 = re.compile(r"[A-Za-z0-9_-]*={0,2}")


class DSSEError(ValueError):
    """An envelope is malformed or its signatures do not verify."""


class EnvelopeSignature(TypedDict):
    """One entry of an envelope's `signatures` list."""

    keyid: str
    sig: str


class Envelope(TypedDict):
    """The DSSE JSON envelope, as `json.dumps` will write it."""

    payloadType: str
    payload: str
    signatures: list[EnvelopeSignature]


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise DSSEError(f"{what} is not valid UTF-8") from None


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding that signatures cover."""
    type_bytes = _utf8(payload_type, "payloadType")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def envelope_keyid(public_key: bytes) -> str:
    """Our keyid for an Ed25519 key: lowercase hex SHA-256 of its raw 32-byte public key."""
    if len(public_key) != ED25519_PUBLIC_KEY_BYTES:
        raise DSSEError(f"Ed25519 public key must be {ED25519_PUBLIC_KEY_BYTES} bytes")
    return hashlib.sha256(public_key).hexdigest()


def sign_envelope(payload: bytes, *, payload_type: str, private_key: Ed25519PrivateKey, keyid: str) -> Envelope:
    """Sign `payload` into a one-signature envelope (padded standard base64, `keyid` always set)."""
    if not keyid:
        raise DSSEError("keyid must be set")
    signature = private_key.sign(pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(signature).decode("ascii")}],
    }


def _b64decode(text: str, what: str) -> bytes:
    # The spec makes verifiers accept standard and URL-safe base64; padding may be omitted,
    # but whatever is there must be the canonical spelling of the decoded bytes.
    if _STD_BASE64.fullmatch(text):
        std_text = text
    elif _URLSAFE_BASE64.fullmatch(text):
        std_text = text.replace("-", "+").replace("_", "/")
    else:
        raise DSSEError(f"{what} is not base64")
    unpadded = std_text.rstrip("=")
    try:
        raw = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except binascii.Error:
        raise DSSEError(f"{what} is not base64") from None
    canonical = base64.b64encode(raw).decode("ascii")
    if std_text not in (canonical, canonical.rstrip("=")):
        raise DSSEError(f"{what} is not canonical base64")
    return raw


def _reject_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Two parsers could pick different duplicates; refuse rather than guess.
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise DSSEError(f"duplicate JSON member {key!r}")
        result[key] = value
    return result


def _load(envelope: Mapping[str, object] | bytes | str) -> Mapping[str, object]:
    if isinstance(envelope, Mapping):
        return envelope
    try:
        text = envelope.decode("utf-8") if isinstance(envelope, bytes) else envelope
        loaded: object = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except DSSEError:
        raise
    except (ValueError, RecursionError):
        raise DSSEError("envelope is not valid UTF-8 JSON") from None
    if not isinstance(loaded, Mapping):
        raise DSSEError("envelope is not a JSON object")
    return loaded


def verify_envelope(
    envelope: Mapping[str, object] | bytes | str, keys: Mapping[str, Ed25519PublicKey]
) -> tuple[str, bytes]:
    """Return (payloadType, payload) if a known key signed it and no known key's signature fails.

    `keys` maps keyid to trusted key; signatures whose keyid is missing or not in `keys` are
    ignored. Checking the payload type is the caller's job.
    """
    fields = _load(envelope)
    payload_type = fields.get("payloadType")
    payload_b64 = fields.get("payload")
    signatures = fields.get("signatures")
    if not isinstance(payload_type, str):
        raise DSSEError("payloadType must be a string")
    if not isinstance(payload_b64, str):
        raise DSSEError("payload must be a base64 string")
    if not isinstance(signatures, list) or not signatures:
        raise DSSEError("signatures must be a non-empty list")
    payload = _b64decode(payload_b64, "payload")
    message = pae(payload_type, payload)
    verified = 0
    for entry in signatures:
        if not isinstance(entry, Mapping):
            raise DSSEError("each signature must be an object")
        keyid = entry.get("keyid", "")
        sig_b64 = entry.get("sig")
        if not isinstance(keyid, str):
            raise DSSEError("signature keyid must be a string")
        if not isinstance(sig_b64, str):
            raise DSSEError("signature sig must be a base64 string")
        signature = _b64decode(sig_b64, f"signature by {keyid!r}")
        key = keys.get(keyid) if keyid else None
        if key is None:
            continue
        try:
            key.verify(signature, message)
        except InvalidSignature:
            raise DSSEError(f"invalid signature by keyid {keyid!r}") from None
        verified += 1
    if not verified:
        raise DSSEError("envelope has no signature by a known key")
    return payload_type, payload
