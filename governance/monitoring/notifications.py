"""Alert notifications of a monitoring run: an e-mail and a webhook signed as the fairness ones are.

The webhook carries the same headers and signature as `governance.fairness.notifications`
(`X-Governance-Signature: v1,<base64 HMAC-SHA256(secret, "<delivery id>.<timestamp>.<body>")>`),
so one receiver verifies both with `governance.fairness.notifications.verify`. Its body is the
service's own JSON, or, with MONITORING_WEBHOOK_FORMAT=slack, a Slack-compatible
`{"text": ..., "blocks": [...]}` (Slack ignores the signature headers). The secret is never logged
or sent.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail

from governance.fairness.notifications import DELIVERY_ID_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

logger = logging.getLogger(__name__)

EVENT = "monitoring_alert.raised"


def payload(run: Any) -> dict[str, Any]:
    monitor = run.monitor
    base = settings.FAIRNESS_PUBLIC_BASE_URL.rstrip("/")
    return {
        "event": EVENT,
        "monitor": monitor.pk,
        "monitor_name": monitor.name,
        "run": run.pk,
        "model": monitor.version.model.name,
        "version": monitor.version.label,
        "window": [run.window_start.isoformat(), run.window_end.isoformat()],
        "alerts": [{"id": alert.pk, "kind": alert.kind, "subject": alert.subject, "detail": alert.detail}
                   for alert in run.alerts.order_by("pk")],
        "profile_sha256": run.profile.profile_sha256,
        "result_sha256": run.result_sha256,
        "ledger_seq": run.ledger_seq,
        "url": f"{base}/models/{monitor.version.model.name}/#monitoring",
    }


def revalidation_payload(alert: Any) -> dict[str, Any]:
    """The same event for an alert without a run (an overdue revalidation): no window, no digests."""
    monitor = alert.monitor
    base = settings.FAIRNESS_PUBLIC_BASE_URL.rstrip("/")
    return {"event": EVENT, "monitor": monitor.pk, "monitor_name": monitor.name, "run": None,
            "model": monitor.version.model.name, "version": monitor.version.label, "window": None,
            "alerts": [{"id": alert.pk, "kind": alert.kind, "subject": alert.subject, "detail": alert.detail}],
            "profile_sha256": None, "result_sha256": None, "ledger_seq": (alert.detail or {}).get("ledger_seq"),
            "url": f"{base}/models/{monitor.version.model.name}/#monitoring"}


def _line(alert: dict[str, Any]) -> str:
    detail = alert["detail"] or {}
    if alert["kind"] == "revalidation":
        return (f"revalidation overdue: re-approval every {detail.get('every_days')} days, due {detail.get('due')}, "
                f"last approved {detail.get('last_approved') or 'never'}")
    if alert["kind"] == "drift":
        effect = detail.get("effect_size") or {}
        return (f"drift in {alert['subject']}: {effect.get('name', 'effect')} {effect.get('value')} "
                f"(threshold {effect.get('threshold')}), adjusted p {detail.get('pvalue_adjusted')}")
    return (f"{alert['subject']} = {detail.get('value')} "
            f"({'below the minimum' if detail.get('direction') == 'min' else 'above the maximum'} {detail.get('bound')})")


def summary(data: dict[str, Any]) -> str:
    window = f", window to {data['window'][1][:10]}" if data.get("window") else ""
    return (f"{len(data['alerts'])} monitoring alert(s) on {data['model']} {data['version']} "
            f"(monitor '{data['monitor_name']}'{window})")


def slack_body(data: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` (the fallback) and section blocks."""
    lines = "\n".join(f"• {_line(alert)}" for alert in data["alerts"][:20])
    return {"text": summary(data), "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{summary(data)}*"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": lines or "—"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": (
            f"result sha256 `{data['result_sha256']}` · " if data.get("result_sha256") else "")
            + f"<{data['url']}|model page>"}]}]}


def send_webhook(run: Any) -> str | None:
    """POST the signed event; returns the delivery id, or None when no webhook is configured."""
    return _post(payload(run), f"run {run.pk}")


def send_alert_webhook(alert: Any) -> str | None:
    """The signed event of an alert without a run (an overdue revalidation)."""
    return _post(revalidation_payload(alert), f"alert {alert.pk}")


def send_alert_email(alert: Any) -> int:
    return _mail(revalidation_payload(alert), recipients(alert))


def _post(data: dict[str, Any], label: str) -> str | None:
    url = settings.MONITORING_WEBHOOK_URL
    if not url:
        return None
    message = slack_body(data) if settings.MONITORING_WEBHOOK_FORMAT == "slack" else data
    body = json.dumps(message, sort_keys=True, separators=(",", ":")).encode()
    delivery_id = str(uuid.uuid4())
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", DELIVERY_ID_HEADER: delivery_id, TIMESTAMP_HEADER: timestamp,
               EVENT_HEADER: EVENT}
    if settings.MONITORING_WEBHOOK_SECRET:
        headers[SIGNATURE_HEADER] = sign(settings.MONITORING_WEBHOOK_SECRET, delivery_id=delivery_id,
                                         timestamp=timestamp, body=body)
    response = httpx.post(url, content=body, headers=headers, timeout=settings.FAIRNESS_WEBHOOK_TIMEOUT_S)
    if response.status_code >= 300:
        raise ConnectionError(f"webhook answered {response.status_code}")  # OSError: the task retries
    logger.info("monitoring webhook delivered: %s, delivery %s", label, delivery_id)
    return delivery_id


def recipients(source: Any) -> list[str]:
    """The model's contacts and MONITORING_NOTIFY_EMAILS, for a run or an alert (both have a monitor)."""
    contacts = [c for c in (source.monitor.version.model.contacts or []) if isinstance(c, str) and "@" in c]
    return list(dict.fromkeys(contacts + list(settings.MONITORING_NOTIFY_EMAILS)))


def send_email(run: Any) -> int:
    return _mail(payload(run), recipients(run))


def _mail(data: dict[str, Any], to: list[str]) -> int:
    if not to:
        return 0
    lines = "\n".join(f"- {_line(alert)}" for alert in data["alerts"])
    digests = (f"Reference profile SHA-256: {data['profile_sha256']}\nResult SHA-256: {data['result_sha256']}\n"
               if data.get("result_sha256") else "")
    body = (f"{summary(data)}.\n\n{lines}\n\nAcknowledge each alert with a comment on the model page:\n{data['url']}\n\n"
            f"{digests}Ledger entry: {data['ledger_seq']}\n")
    return send_mail(f"[monitoring] {summary(data)}", body, settings.DEFAULT_FROM_EMAIL, to)
