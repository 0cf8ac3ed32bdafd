"""Failing-audit notifications: an e-mail and a webhook signed with HMAC-SHA256.

The webhook follows MLflow's webhook signing: headers carry a delivery id and a Unix timestamp,
and the signature is `v1,<base64(HMAC-SHA256(secret, "<delivery_id>.<timestamp>.<body>"))>`.
A receiver recomputes it over the raw body and rejects old timestamps (replays). The secret is
never logged and never sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Governance-Signature"
DELIVERY_ID_HEADER = "X-Governance-Delivery-Id"
TIMESTAMP_HEADER = "X-Governance-Timestamp"
EVENT_HEADER = "X-Governance-Event"
EVENT = "fairness_audit.failing"


def sign(secret: str, *, delivery_id: str, timestamp: str, body: bytes) -> str:
    """`v1,` + base64 HMAC-SHA256 over `<delivery_id>.<timestamp>.<body>`."""
    message = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, *, headers: dict[str, str], body: bytes, max_age_s: int = 300, now: float | None = None) -> bool:
    """What a receiver does: recompute the signature and refuse stale timestamps."""
    try:
        timestamp = headers[TIMESTAMP_HEADER]
        fresh = is_fresh(timestamp, max_age_s=max_age_s, now=now)
        delivery_id = headers[DELIVERY_ID_HEADER]
    except (KeyError, ValueError):
        return False
    return fresh and signature_matches(secret, delivery_id=delivery_id, timestamp=timestamp, body=body,
                                       signature=headers.get(SIGNATURE_HEADER, ""))


def signature_matches(secret: str, *, delivery_id: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Constant-time check of a `v1,<base64>` signature (MLflow's registry webhooks use the same one)."""
    expected = sign(secret, delivery_id=delivery_id, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def is_fresh(timestamp: str, *, max_age_s: int, now: float | None = None) -> bool:
    """Whether a Unix-seconds timestamp is within `max_age_s` of now; ValueError if it is not an integer."""
    return abs((time.time() if now is None else now) - int(timestamp)) <= max_age_s


def payload(run: Any) -> dict[str, Any]:
    version = run.model_version
    return {
        "event": EVENT,
        "audit_run": run.pk,
        "model": run.spec.model.name,
        "version": version.label if version else None,
        "status": run.status,
        "passed": run.passed,
        "error_code": run.error_code or None,
        "failed_findings": [f for f in run.findings if not f.get("passed")][:50],
        "input_sha256": run.input_sha256 or None,
        "result_sha256": run.result_sha256 or None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "url": f"{settings.FAIRNESS_PUBLIC_BASE_URL.rstrip('/')}/api/fairness/audits/{run.pk}/",
    }


def send_webhook(run: Any) -> str | None:
    """POST the signed event; returns the delivery id, or None when no webhook is configured."""
    delivery_id = post_event(EVENT, payload(run))
    if delivery_id:
        logger.info("fairness webhook delivered: audit %s, delivery %s", run.pk, delivery_id)
    return delivery_id


def post_event(event: str, data: dict[str, Any]) -> str | None:
    """POST one signed event to the alert webhook (also used for MLflow policy violations); the
    delivery id, or None when no webhook is configured. Raises ConnectionError on a non-2xx."""
    url = settings.FAIRNESS_WEBHOOK_URL
    if not url:
        return None
    body = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    delivery_id = str(uuid.uuid4())
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", DELIVERY_ID_HEADER: delivery_id, TIMESTAMP_HEADER: timestamp,
               EVENT_HEADER: event}
    if settings.FAIRNESS_WEBHOOK_SECRET:
        headers[SIGNATURE_HEADER] = sign(settings.FAIRNESS_WEBHOOK_SECRET, delivery_id=delivery_id,
                                         timestamp=timestamp, body=body)
    response = httpx.post(url, content=body, headers=headers, timeout=settings.FAIRNESS_WEBHOOK_TIMEOUT_S)
    if response.status_code >= 300:
        # OSError subclass: the task retries it with backoff.
        raise ConnectionError(f"webhook answered {response.status_code}")
    return delivery_id


def recipients(run: Any) -> list[str]:
    contacts = [c for c in (run.spec.model.contacts or []) if isinstance(c, str) and "@" in c]
    return list(dict.fromkeys(contacts + list(settings.FAIRNESS_NOTIFY_EMAILS)))


def send_email(run: Any) -> int:
    to = recipients(run)
    if not to:
        return 0
    data = payload(run)
    if run.status == "failed":
        summary = f"could not run: {run.error_code}: {run.error_message[:300]}"
    else:
        summary = "\n".join(f"- {f['attributes']}: {f['metric']} = {f['value']} (needs {f['rule']} {f['threshold']})"
                            for f in data["failed_findings"]) or "- see the audit"
    subject = f"[fairness] audit #{run.pk} of {data['model']} {data['version'] or ''} is failing".replace("  ", " ")
    body = (f"Fairness audit #{run.pk} of {data['model']} (version {data['version']}) is failing.\n\n{summary}\n\n"
            f"Result SHA-256: {data['result_sha256']}\nInput SHA-256: {data['input_sha256']}\n{data['url']}\n")
    return send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to)
