"""A software WebAuthn authenticator for tests without a browser: "none" attestation, ES256 or Ed25519.

It builds exactly the bytes a platform authenticator returns (WebAuthn Level 3 §6.1 authenticator
data, §5.8.1 client data), so the server's `webauthn` checks and verify.py see real responses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

FLAG_UP, FLAG_UV, FLAG_AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftAuthenticator:
    def __init__(self, *, rp_id: str = "localhost", origin: str = "http://localhost:8000",
                 algorithm: int = -7) -> None:
        self.rp_id, self.origin, self.algorithm = rp_id, origin, algorithm
        self.credential_id = os.urandom(16)
        self.aaguid = bytes(16)
        self.sign_count = 0
        self.key: Any = ec.generate_private_key(ec.SECP256R1()) if algorithm == -7 else Ed25519PrivateKey.generate()

    def cose_key(self) -> bytes:
        if self.algorithm == -7:
            numbers = self.key.public_key().public_numbers()
            return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                                -3: numbers.y.to_bytes(32, "big")})
        return cbor2.dumps({1: 1, 3: -8, -1: 6, -2: self.key.public_key().public_bytes_raw()})

    def _client_data(self, kind: str, challenge: bytes, origin: str | None = None) -> bytes:
        return json.dumps({"type": kind, "challenge": b64url(challenge), "origin": origin or self.origin,
                           "crossOrigin": False}, separators=(",", ":")).encode()

    def _auth_data(self, flags: int, extra: bytes = b"") -> bytes:
        return hashlib.sha256(self.rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", self.sign_count) + extra

    def create(self, options: dict[str, Any]) -> dict[str, Any]:
        """The PublicKeyCredential JSON of navigator.credentials.create for `options`."""
        challenge = b64url_decode(options["challenge"])
        attested = self.aaguid + struct.pack(">H", len(self.credential_id)) + self.credential_id + self.cose_key()
        auth_data = self._auth_data(FLAG_UP | FLAG_UV | FLAG_AT, attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {"id": b64url(self.credential_id), "rawId": b64url(self.credential_id), "type": "public-key",
                "response": {"clientDataJSON": b64url(self._client_data("webauthn.create", challenge)),
                             "attestationObject": b64url(attestation)},
                "clientExtensionResults": {}}

    def get(self, challenge: bytes, *, origin: str | None = None) -> dict[str, Any]:
        """The PublicKeyCredential JSON of navigator.credentials.get answering `challenge`."""
        self.sign_count += 1
        auth_data = self._auth_data(FLAG_UP | FLAG_UV)
        client_data = self._client_data("webauthn.get", challenge, origin)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = (self.key.sign(signed, ec.ECDSA(hashes.SHA256())) if self.algorithm == -7
                     else self.key.sign(signed))
        return {"id": b64url(self.credential_id), "rawId": b64url(self.credential_id), "type": "public-key",
                "response": {"clientDataJSON": b64url(client_data), "authenticatorData": b64url(auth_data),
                             "signature": b64url(signature), "userHandle": None},
                "clientExtensionResults": {}}
