"""RFC 3161 time-stamp tokens for checkpoints: ask the configured TSA, check its answer, hand back the token.

The message imprint is SHA-256 of the checkpoint's signed note, exactly as published (UTF-8), so
a token proves that this signed checkpoint existed at the token's time. The request is built, and
the response parsed and checked, with `rfc3161-client`; the token is kept only if it verifies
against the pinned CA (`TSA_CA_FILE`), matches the request's nonce and imprint, and was signed
by a certificate the CA chains to. Bundles carry the token (the DER TimeStampToken, a CMS
SignedData), which `verify.py` checks again with `cryptography` alone.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography import x509
from django.conf import settings

from core.errors import Unavailable

logger = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Token:
    token: bytes  # DER TimeStampToken (ContentInfo of a SignedData over a TSTInfo)
    gen_time: datetime
    serial_number: str
    policy: str
    imprint_sha256: bytes


def configured() -> bool:
    return bool(settings.TSA_URL)


def message_imprint(note: str) -> bytes:
    """What is time-stamped: SHA-256 of the checkpoint's signed note, as published."""
    return hashlib.sha256(note.encode("utf-8")).digest()


def _ca_certificates() -> list[x509.Certificate]:
    path = Path(settings.TSA_CA_FILE) if settings.TSA_CA_FILE else None
    if path is None or not path.is_file():
        raise Unavailable("TSA_URL is set but TSA_CA_FILE names no readable CA certificate file.",
                          code="tsa_not_configured")
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError as exc:
        raise Unavailable("TSA_CA_FILE holds no PEM certificate.", code="tsa_not_configured") from exc


def request_token(note: str) -> Token:
    """Ask the TSA for a token over `note`; raise Unavailable (tsa_unavailable / tsa_response_invalid)."""
    from rfc3161_client import (
        HashAlgorithm,
        PKIStatus,
        TimestampRequestBuilder,
        VerificationError,
        VerifierBuilder,
        decode_timestamp_response,
    )

    roots = _ca_certificates()
    request = (TimestampRequestBuilder().data(note.encode("utf-8")).hash_algorithm(HashAlgorithm.SHA256)
               .nonce(nonce=True).cert_request(cert_request=True).build())
    try:
        response = httpx.post(settings.TSA_URL, content=request.as_bytes(), timeout=settings.TSA_TIMEOUT_S,
                              headers={"Content-Type": "application/timestamp-query",
                                       "Accept": "application/timestamp-reply"})
    except httpx.HTTPError as exc:
        raise Unavailable(f"The TSA did not answer: {type(exc).__name__}.", code="tsa_unavailable") from exc
    if response.status_code != 200 or len(response.content) > MAX_RESPONSE_BYTES:
        raise Unavailable(f"The TSA answered HTTP {response.status_code}.", code="tsa_unavailable")
    try:
        parsed = decode_timestamp_response(response.content)
    except ValueError as exc:
        raise Unavailable("The TSA's answer is not a time-stamp response.", code="tsa_response_invalid") from exc
    if parsed.status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        raise Unavailable(f"The TSA refused the request (status {parsed.status}).", code="tsa_response_invalid")
    imprint = message_imprint(note)
    failures = []
    for root in roots:
        verifier = VerifierBuilder.from_request(request).add_root_certificate(root).build()
        try:
            verifier.verify(parsed, imprint)
            break
        except VerificationError as exc:
            failures.append(str(exc))
    else:
        logger.warning("TSA token refused: %s", "; ".join(failures)[:500])
        raise Unavailable("The TSA's token does not verify against TSA_CA_FILE.", code="tsa_response_invalid")
    info = parsed.tst_info
    gen_time = info.gen_time if info.gen_time.tzinfo else info.gen_time.replace(tzinfo=UTC)
    return Token(token=parsed.time_stamp_token(), gen_time=gen_time, serial_number=str(info.serial_number),
                 policy=info.policy.dotted_string, imprint_sha256=imprint)
