"""Re-approval on alert: under a monitor whose policy says `reapprove_on_alert`, an alert on a
production version opens a re-approval of that version through the approval workflow (the same
deciders, quorum, roles, evidence and signatures as any approval), and every later alert joins the
pending one. The alert links to it, and its `alert.raised` entry names it.

It runs inside the transaction that raises the alert, so a run (exactly once per beat slot) and
the re-approval it opens commit together or not at all: a retried task finds the slot's run and
opens nothing more. Whoever raised the alert (the person running the monitor) and whoever uploaded
the window's prediction batches may not decide it; acknowledging the alert does not close it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.ledger import actor_label, lock_for_update
from governance.fairness.models import PredictionBatch
from governance.models import ApprovalRequest, RequestKind
from governance.monitoring.models import Alert
from governance.registry.services.approvals import model_version_reapproval_open


def _raisers(alert: Alert, by: Any) -> list[str]:
    """Actor labels of whoever raised the alert: the run's actor and the uploaders of its batches."""
    batch_ids = [item.get("id") for item in (alert.run.batches if alert.run else []) if isinstance(item, dict)]
    uploaders = PredictionBatch.objects.filter(pk__in=batch_ids).values_list("uploaded_by_label", flat=True)
    return sorted({actor_label(by), *uploaders})


def reapproval_for_alert(*, alert: Alert, by: Any) -> ApprovalRequest | None:
    """The re-approval an alert opened or joined (None when its monitor's policy does not ask for one,
    the version is not in production, or no approval policy applies to the model). Records
    `approval_request.reapproval_opened`, or `approval_request.reapproval_joined` when the alert
    adds people who may not decide it."""
    monitor = alert.monitor
    if (monitor.thresholds or {}).get("reapprove_on_alert") is not True:
        return None
    raisers = _raisers(alert, by)
    reason = {"alert": alert.pk, "monitor": monitor.pk, "run": alert.run_id, "kind": alert.kind,
              "subject": alert.subject,
              "comment": f"Monitoring alert {alert.pk} ({alert.kind}: {alert.subject}) of monitor '{monitor.name}'."}
    with transaction.atomic():
        request, opened = model_version_reapproval_open(version=monitor.version, by=by, reason=reason, excluded=raisers)
        if request is None:
            return None
        if not opened:
            if request.kind != RequestKind.REAPPROVAL:
                return None  # a first approval under review: the version is not in production
            request = lock_for_update(ApprovalRequest.objects.filter(pk=request.pk)).get()
            added = sorted(set(raisers) - set(request.excluded_deciders or []))
            if added:
                request.excluded_deciders = sorted({*(request.excluded_deciders or []), *added})
                request.save_recorded(action="approval_request.reapproval_joined", by=by,
                                      extra={"reason": reason, "excluded_added": added})
        alert.reapproval = request
        alert.save(update_fields=["reapproval"])
    return request
