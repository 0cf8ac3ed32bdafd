"""Server signing keys: Ed25519 private keys in files, public keys in the database.

The private key is read from the file named by settings each time it is needed; it is
never stored in the database, logged or returned by the API. This module stores and looks up
keys; creating and rotating them (ledger entries) are services in `audit.services`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.utils import timezone

from audit import note
from audit.models import SigningKey
from core.errors import Unavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedKey:
    record: SigningKey
    private_key: Ed25519PrivateKey


def key_file_for(purpose: str) -> Path:
    if purpose == SigningKey.Purpose.CHECKPOINT:
        return Path(settings.LEDGER_SIGNING_KEY_FILE)
    return Path(settings.ATTESTATION_SIGNING_KEY_FILE)


def key_name_for(purpose: str) -> str:
    # The checkpoint key is named after the log's origin, as C2SP tlog-checkpoint expects.
    origin = settings.LEDGER_ORIGIN
    return origin if purpose == SigningKey.Purpose.CHECKPOINT else f"{origin}/attestations"


def public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_pem(public_key_raw: bytes) -> str:
    key = Ed25519PublicKey.from_public_bytes(public_key_raw)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def dsse_keyid(public_key_raw: bytes) -> str:
    return hashlib.sha256(public_key_raw).hexdigest()


def write_private_key(path: Path, private_key: Ed25519PrivateKey) -> None:
    """Write the key with mode 0600 via a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise Unavailable("No signing key file; run `python manage.py signing_key create`.",
                          code="signing_key_missing") from exc
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise Unavailable("The signing key file does not hold an Ed25519 key.", code="signing_key_invalid")
    return key


def register_public_key(private_key: Ed25519PrivateKey, *, purpose: str) -> SigningKey:
    raw = public_bytes(private_key.public_key())
    existing = SigningKey.objects.filter(public_key=raw).first()
    if existing is not None:
        return existing
    name = key_name_for(purpose)
    return SigningKey.objects.create(
        name=name, purpose=purpose, public_key=raw, key_id=note.key_id(name, raw).hex(),
        dsse_keyid=dsse_keyid(raw), vkey=note.vkey(name, raw), valid_from=timezone.now(),
    )


def active_key(purpose: str) -> LoadedKey:
    """The key to sign with now. Raises `Unavailable` if its file is missing."""
    private_key = read_private_key(key_file_for(purpose))
    raw = public_bytes(private_key.public_key())
    record = SigningKey.objects.filter(public_key=raw).first()
    if record is None:
        record = register_public_key(private_key, purpose=purpose)
    if record.valid_until is not None:
        raise Unavailable("The key in the signing key file has been retired.", code="signing_key_retired")
    return LoadedKey(record=record, private_key=private_key)


def verifiers() -> list[note.Verifier]:
    """Every key the log has ever signed with, as signed-note verifiers."""
    return [note.parse_vkey(vkey) for vkey in SigningKey.objects.values_list("vkey", flat=True)]
