"""The approval statement an approver signs, and the bytes each signing method covers. Pure: no ORM.

The statement is the RFC 8785 (JCS) bytes of a JSON object:

    {"type": "governance.approval-statement/v1", "log": <ledger origin>, "request": <id>,
     "version_manifest_digest": <hex>, "policy_digest": <hex>, "decision": "approve"|"reject",
     "comment": <text>, "approver": "user:<username>", "nonce": <base64url, 32 bytes>,
     "time": <UTC, microseconds, Z>}

`policy_digest` is the SHA-256 of the JCS bytes of the policy snapshot the decision applies.
A passkey signs it as a WebAuthn assertion whose challenge is SHA-256(statement); a terminal key
signs it as a DSSE envelope of type `STATEMENT_PAYLOAD_TYPE` whose payload is the statement.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from audit import jcs

STATEMENT_TYPE = "governance.approval-statement/v1"
STATEMENT_PAYLOAD_TYPE = "application/vnd.governance.approval-statement+json"
STATEMENT_FIELDS = ("type", "log", "request", "version_manifest_digest", "policy_digest", "decision", "comment",
                    "approver", "nonce", "time")
COSE_ALG_ES256 = -7
COSE_ALG_EDDSA = -8


class StatementError(ValueError):
    """The statement bytes are not a statement of this format."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def policy_digest(policy: dict[str, Any]) -> str:
    return hashlib.sha256(jcs.canonicalize(policy)).hexdigest()


def statement_bytes(fields: dict[str, Any]) -> bytes:
    """The JCS bytes of a statement with exactly STATEMENT_FIELDS."""
    if set(fields) != set(STATEMENT_FIELDS):
        raise StatementError(f"a statement has exactly the fields {', '.join(STATEMENT_FIELDS)}")
    return jcs.canonicalize(fields)


def statement_parse(data: bytes) -> dict[str, Any]:
    """The fields of statement bytes; they must be exactly the JCS bytes of those fields."""
    try:
        fields = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise StatementError("the statement is not UTF-8 JSON") from None
    if not isinstance(fields, dict) or fields.get("type") != STATEMENT_TYPE:
        raise StatementError(f"the statement is not a {STATEMENT_TYPE} object")
    if statement_bytes(fields) != data:
        raise StatementError("the statement is not in its canonical (JCS) form")
    return fields


def challenge_for(statement: bytes) -> bytes:
    """The WebAuthn challenge that binds an assertion to the statement: its SHA-256."""
    return hashlib.sha256(statement).digest()
