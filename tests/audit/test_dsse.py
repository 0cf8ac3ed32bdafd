"""DSSE envelopes, checked against the spec's vector and against securesystemslib."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from audit.dsse import (
    PAYLOAD_TYPE_IN_TOTO,
    DSSEError,
    Envelope,
    envelope_keyid,
    pae,
    sign_envelope,
    verify_envelope,
)

# protocol.md "Test Vectors": ECDSA P-256/SHA-256 key and signature over the PAE below.
SPEC_PAYLOAD_TYPE = "http://example.com/HelloWorld"
SPEC_PAYLOAD = b"hello world"
SPEC_PAE = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
SPEC_X = 46950820868899156662930047687818585632848591499744589407958293238635476079160
SPEC_Y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
SPEC_SIG = "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="

STATEMENT = json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": [], "predicateType": "x"}).encode()


def raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes_raw()


def sslib_key(private_key: Ed25519PrivateKey, keyid: str) -> SSlibKey:
    return SSlibKey(keyid, "ed25519", "ed25519", {"public": raw_public_key(private_key).hex()})


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def keyid(signing_key: Ed25519PrivateKey) -> str:
    return envelope_keyid(raw_public_key(signing_key))


@pytest.fixture
def envelope(signing_key: Ed25519PrivateKey, keyid: str) -> Envelope:
    return sign_envelope(STATEMENT, payload_type=PAYLOAD_TYPE_IN_TOTO, private_key=signing_key, keyid=keyid)


@pytest.fixture
def trusted(signing_key: Ed25519PrivateKey, keyid: str) -> dict[str, Ed25519PublicKey]:
    return {keyid: signing_key.public_key()}


def reencode(envelope: Envelope, **changes: object) -> dict[str, object]:
    return {**envelope, **changes}


# --- PAE and keyid ---------------------------------------------------------------------------


def test_pae_matches_spec_example() -> None:
    assert pae(SPEC_PAYLOAD_TYPE, SPEC_PAYLOAD) == SPEC_PAE


def test_spec_signature_verifies_over_our_pae() -> None:
    # The spec's own signature over its vector, checked over our bytes: PAE must be exact.
    public_key = ec.EllipticCurvePublicNumbers(SPEC_X, SPEC_Y, ec.SECP256R1()).public_key()
    raw = base64.b64decode(SPEC_SIG)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public_key.verify(der, pae(SPEC_PAYLOAD_TYPE, SPEC_PAYLOAD), ec.ECDSA(hashes.SHA256()))


def test_pae_counts_utf8_bytes_not_characters() -> None:
    assert pae("t\u00e9", b"") == b"DSSEv1 3 t\xc3\xa9 0 "


@pytest.mark.parametrize(
    ("payload_type", "payload"),
    [(SPEC_PAYLOAD_TYPE, SPEC_PAYLOAD), (PAYLOAD_TYPE_IN_TOTO, STATEMENT), ("", b""), ("t\u00e9", bytes(range(256)))],
)
def test_pae_matches_securesystemslib(payload_type: str, payload: bytes) -> None:
    assert pae(payload_type, payload) == SslibEnvelope(payload, payload_type, {}).pae()


def test_envelope_keyid_is_hex_sha256_of_raw_public_key(signing_key: Ed25519PrivateKey) -> None:
    public_key = raw_public_key(signing_key)
    assert envelope_keyid(public_key) == hashlib.sha256(public_key).hexdigest()
    assert envelope_keyid(public_key) != envelope_keyid(raw_public_key(Ed25519PrivateKey.generate()))
    with pytest.raises(DSSEError):
        envelope_keyid(public_key[:31])


# --- signing and round trip --------------------------------------------------------------------


def test_sign_envelope_shape(envelope: Envelope, keyid: str) -> None:
    assert set(envelope) == {"payloadType", "payload", "signatures"}
    assert envelope["payloadType"] == PAYLOAD_TYPE_IN_TOTO
    assert envelope["payload"] == base64.b64encode(STATEMENT).decode()
    assert [signature["keyid"] for signature in envelope["signatures"]] == [keyid]
    assert len(base64.b64decode(envelope["signatures"][0]["sig"], validate=True)) == 64


def test_sign_envelope_requires_keyid(signing_key: Ed25519PrivateKey) -> None:
    with pytest.raises(DSSEError):
        sign_envelope(STATEMENT, payload_type=PAYLOAD_TYPE_IN_TOTO, private_key=signing_key, keyid="")


def test_round_trip_from_mapping_str_and_bytes(envelope: Envelope, trusted: dict[str, Ed25519PublicKey]) -> None:
    expected = (PAYLOAD_TYPE_IN_TOTO, STATEMENT)
    assert verify_envelope(envelope, trusted) == expected
    assert verify_envelope(json.dumps(envelope), trusted) == expected
    assert verify_envelope(json.dumps(envelope).encode(), trusted) == expected


def test_empty_payload_round_trips(
    signing_key: Ed25519PrivateKey, keyid: str, trusted: dict[str, Ed25519PublicKey]
) -> None:
    signed = sign_envelope(b"", payload_type="application/vnd.example", private_key=signing_key, keyid=keyid)
    assert verify_envelope(signed, trusted) == ("application/vnd.example", b"")


def test_url_safe_and_unpadded_base64_are_accepted(envelope: Envelope, trusted: dict[str, Ed25519PublicKey]) -> None:
    # The spec makes verifiers accept URL-safe base64 too.
    payload = base64.urlsafe_b64encode(STATEMENT).decode().rstrip("=")
    signatures = [
        {
            **envelope["signatures"][0],
            "sig": base64.urlsafe_b64encode(base64.b64decode(envelope["signatures"][0]["sig"])).decode(),
        }
    ]
    assert verify_envelope(reencode(envelope, payload=payload, signatures=signatures), trusted) == (
        PAYLOAD_TYPE_IN_TOTO,
        STATEMENT,
    )


def test_unknown_fields_are_ignored(envelope: Envelope, trusted: dict[str, Ed25519PublicKey]) -> None:
    extended = reencode(envelope, extra=1, signatures=[{**envelope["signatures"][0], "note": "x"}])
    assert verify_envelope(extended, trusted) == (PAYLOAD_TYPE_IN_TOTO, STATEMENT)


def test_signatures_by_unknown_or_missing_keyids_are_ignored(
    envelope: Envelope, trusted: dict[str, Ed25519PublicKey]
) -> None:
    stranger = {"keyid": "stranger", "sig": base64.b64encode(bytes(64)).decode()}
    anonymous = {"sig": base64.b64encode(bytes(64)).decode()}
    signatures = [stranger, anonymous, *envelope["signatures"]]
    assert verify_envelope(reencode(envelope, signatures=signatures), trusted) == (PAYLOAD_TYPE_IN_TOTO, STATEMENT)


# --- rejection -----------------------------------------------------------------------------------


def test_tampered_payload_is_rejected(envelope: Envelope, trusted: dict[str, Ed25519PublicKey]) -> None:
    tampered = reencode(envelope, payload=base64.b64encode(STATEMENT + b" ").decode())
    with pytest.raises(DSSEError, match="invalid signature"):
        verify_envelope(tampered, trusted)


def test_tampered_payload_type_is_rejected(envelope: Envelope, trusted: dict[str, Ed25519PublicKey]) -> None:
    with pytest.raises(DSSEError, match="invalid signature"):
        verify_envelope(reencode(envelope, payloadType="application/json"), trusted)


def test_tampered_signature_is_rejected(envelope: Envelope, trusted: dict[str, Ed25519PublicKey]) -> None:
    raw = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    raw[0] ^= 0x01
    signatures = [{**envelope["signatures"][0], "sig": base64.b64encode(bytes(raw)).decode()}]
    with pytest.raises(DSSEError, match="invalid signature"):
        verify_envelope(reencode(envelope, signatures=signatures), trusted)


def test_bad_signature_by_known_key_rejects_even_beside_good_one(
    envelope: Envelope, trusted: dict[str, Ed25519PublicKey], keyid: str
) -> None:
    bad = {"keyid": keyid, "sig": base64.b64encode(bytes(64)).decode()}
    with pytest.raises(DSSEError, match="invalid signature"):
        verify_envelope(reencode(envelope, signatures=[*envelope["signatures"], bad]), trusted)


def test_unknown_key_is_rejected(envelope: Envelope) -> None:
    with pytest.raises(DSSEError, match="no signature by a known key"):
        verify_envelope(envelope, {"someone-else": Ed25519PrivateKey.generate().public_key()})


def test_known_keyid_with_wrong_key_is_rejected(envelope: Envelope, keyid: str) -> None:
    with pytest.raises(DSSEError, match="invalid signature"):
        verify_envelope(envelope, {keyid: Ed25519PrivateKey.generate().public_key()})


def test_missing_keyid_does_not_match_empty_keyid_key(envelope: Envelope, signing_key: Ed25519PrivateKey) -> None:
    anonymous = [{"sig": envelope["signatures"][0]["sig"]}]
    with pytest.raises(DSSEError, match="no signature by a known key"):
        verify_envelope(reencode(envelope, signatures=anonymous), {"": signing_key.public_key()})


def envelope_json(payload_type: str = '"t"', payload: str = '"aGk="', signatures: str = "[]") -> str:
    return f'{{"payloadType": {payload_type}, "payload": {payload}, "signatures": {signatures}}}'


K_EMPTY = '[{"keyid": "k", "sig": ""}]'


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("not json", "not valid UTF-8 JSON"),
        (b"\xff\xfe{}", "not valid UTF-8 JSON"),
        ("[" * 100_000, "not valid UTF-8 JSON"),
        ("[]", "not a JSON object"),
        ("{}", "payloadType must be a string"),
        (envelope_json(signatures="[]"), "signatures must be a non-empty list"),
        (envelope_json(signatures='{"keyid": "k", "sig": ""}'), "signatures must be a non-empty list"),
        (envelope_json(signatures='["sig"]'), "each signature must be an object"),
        (envelope_json(signatures='[{"keyid": 7, "sig": ""}]'), "keyid must be a string"),
        (envelope_json(signatures='[{"keyid": "k"}]'), "sig must be a base64 string"),
        (envelope_json(signatures='[{"keyid": "k", "sig": "@@"}]'), "signature by 'k' is not base64"),
        (envelope_json(payload_type="1", signatures=K_EMPTY), "payloadType must be a string"),
        (envelope_json(payload_type='"\\ud800"', signatures=K_EMPTY), "payloadType is not valid UTF-8"),
        (envelope_json(payload="null", signatures=K_EMPTY), "payload must be a base64 string"),
        (envelope_json(payload='"aGk*"', signatures=K_EMPTY), "payload is not base64"),
        (envelope_json(payload='"a"', signatures=K_EMPTY), "payload is not base64"),
        (envelope_json(payload='"a==="', signatures=K_EMPTY), "payload is not base64"),
        (envelope_json(payload='"aGk= "', signatures=K_EMPTY), "payload is not base64"),
        (envelope_json(payload='"aG+_"', signatures=K_EMPTY), "payload is not base64"),
        (envelope_json(payload='"aGl="', signatures=K_EMPTY), "payload is not canonical base64"),
        (
            '{"payloadType": "t", "payloadType": "u", "payload": "", "signatures": ' + K_EMPTY + "}",
            "duplicate JSON member",
        ),
    ],
)
def test_malformed_envelopes_are_rejected(bad: str | bytes, reason: str, trusted: dict[str, Ed25519PublicKey]) -> None:
    with pytest.raises(DSSEError, match=reason):
        verify_envelope(bad, trusted)


# --- interop with securesystemslib ----------------------------------------------------------------


def test_our_envelope_verifies_with_securesystemslib(
    envelope: Envelope, signing_key: Ed25519PrivateKey, keyid: str
) -> None:
    theirs = SslibEnvelope.from_dict(json.loads(json.dumps(envelope)))
    key = sslib_key(signing_key, keyid)
    assert theirs.verify([key], 1) == {keyid: key}
    assert (theirs.payload_type, theirs.payload) == (PAYLOAD_TYPE_IN_TOTO, STATEMENT)


def test_securesystemslib_rejects_our_envelope_when_tampered(
    envelope: Envelope, signing_key: Ed25519PrivateKey, keyid: str
) -> None:
    tampered = reencode(envelope, payload=base64.b64encode(STATEMENT + b" ").decode())
    with pytest.raises(VerificationError):
        SslibEnvelope.from_dict(tampered).verify([sslib_key(signing_key, keyid)], 1)


def test_securesystemslib_envelope_verifies_with_ours(
    signing_key: Ed25519PrivateKey, keyid: str, trusted: dict[str, Ed25519PublicKey]
) -> None:
    theirs = SslibEnvelope(STATEMENT, PAYLOAD_TYPE_IN_TOTO, {})
    theirs.sign(CryptoSigner(signing_key, sslib_key(signing_key, keyid)))
    wire = json.dumps(theirs.to_dict())
    assert verify_envelope(wire, trusted) == (PAYLOAD_TYPE_IN_TOTO, STATEMENT)


def test_securesystemslib_envelope_with_its_default_keyid_verifies_with_ours(
    signing_key: Ed25519PrivateKey,
) -> None:
    # A pipeline using securesystemslib's own keyid scheme: we match on whatever id it registered.
    public_key = SSlibKey.from_crypto(signing_key.public_key())
    theirs = SslibEnvelope(b"\x00binary\xff", "application/vnd.example+octets", {})
    theirs.sign(CryptoSigner(signing_key, public_key))
    wire = json.dumps(theirs.to_dict()).encode()
    assert public_key.keyid != envelope_keyid(raw_public_key(signing_key))
    assert verify_envelope(wire, {public_key.keyid: signing_key.public_key()}) == (
        "application/vnd.example+octets",
        b"\x00binary\xff",
    )
    with pytest.raises(DSSEError):
        verify_envelope(wire, {envelope_keyid(raw_public_key(signing_key)): signing_key.public_key()})
