"""GET /metrics: the latest drift and performance, open alerts and the service's own health, in the
Prometheus text format (``prometheus_client``), for a scraper holding the bearer token or coming
from an allowed network. Denied by default. Nothing is pushed anywhere: Prometheus pulls.

The registry is built per request from the database (no process-global state), so every worker
answers the same and nothing is counted twice.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

VERIFICATION_ACTIONS = ("ledger.verified", "ledger.verification_failed")


def metrics_allowed(request: HttpRequest) -> bool:
    """The bearer token matches METRICS_BEARER_TOKEN, or the peer is in METRICS_ALLOWED_NETWORKS."""
    token = settings.METRICS_BEARER_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True
    networks = settings.METRICS_ALLOWED_NETWORKS
    if not networks:
        return False
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    for network in networks:
        try:
            if peer in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            continue
    return False


class GovernanceCollector(Collector):
    def collect(self) -> Iterator[Any]:
        from audit.models import Checkpoint, LedgerEntry
        from core.outbox.models import OutboxMessage
        from governance.models import ApprovalRequest, RequestStatus
        from governance.monitoring.models import Alert, Monitor, MonitorRun

        drift_effect = GaugeMetricFamily("governance_drift_effect_size", "Latest drift effect size per column "
                                         "(Wasserstein/std or Cramer's V)", labels=["model", "version", "column"])
        drift_pvalue = GaugeMetricFamily("governance_drift_pvalue_adjusted", "Latest adjusted drift p-value per column",
                                         labels=["model", "version", "column"])
        drift_flag = GaugeMetricFamily("governance_drift_detected", "1 when the latest run found drift in the column",
                                       labels=["model", "version", "column"])
        performance = GaugeMetricFamily("governance_performance", "Latest performance metric per monitor window",
                                        labels=["model", "version", "metric"])
        for monitor in Monitor.objects.select_related("version__model"):
            run = MonitorRun.objects.filter(monitor=monitor).order_by("-pk").first()
            if run is None:
                continue
            model, version = monitor.version.model.name, monitor.version.label
            for column in run.result["drift"]["columns"]:
                labels = [model, version, column["column"]]
                if column["effect_size"]["value"] is not None:
                    drift_effect.add_metric(labels, float(column["effect_size"]["value"]))
                drift_pvalue.add_metric(labels, float(column["pvalue_adjusted"]))
                drift_flag.add_metric(labels, 1.0 if column["drift"] else 0.0)
            for metric, value in (run.result.get("performance") or {}).items():
                if isinstance(value, int | float) and metric != "n":
                    performance.add_metric([model, version, metric], float(value))
        yield from (drift_effect, drift_pvalue, drift_flag, performance)

        alerts = GaugeMetricFamily("governance_alerts_open", "Open monitoring alerts", labels=["model"])
        counts: dict[str, int] = {}
        for name in Alert.objects.filter(status=Alert.Status.OPEN).values_list("monitor__version__model__name", flat=True):
            counts[name] = counts.get(name, 0) + 1
        for name, count in sorted(counts.items()):
            alerts.add_metric([name], count)
        yield alerts

        last = LedgerEntry.objects.order_by("-seq").values_list("seq", flat=True).first()
        yield GaugeMetricFamily("governance_ledger_entries", "Entries in the ledger", value=0 if last is None else last + 1)
        checkpoint = Checkpoint.objects.order_by("-tree_size").first()
        age = GaugeMetricFamily("governance_checkpoint_age_seconds", "Seconds since the latest signed checkpoint")
        if checkpoint is not None:
            age.add_metric([], (timezone.now() - checkpoint.created_at).total_seconds())
        yield age
        verification = LedgerEntry.objects.filter(action__in=VERIFICATION_ACTIONS).order_by("-seq").first()
        verified = GaugeMetricFamily("governance_last_verification_ok", "1 if the latest recorded ledger verification passed")
        if verification is not None:
            verified.add_metric([], 1.0 if verification.action == "ledger.verified" else 0.0)
        yield verified
        yield GaugeMetricFamily("governance_outbox_backlog", "Tasks requested but not yet accepted by the broker",
                                value=OutboxMessage.objects.filter(dispatched_at__isnull=True).count())
        yield GaugeMetricFamily("governance_approvals_pending", "Approval requests waiting for decisions",
                                value=ApprovalRequest.objects.filter(status=RequestStatus.PENDING).count())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return JsonResponse({"code": "permission_denied", "message": "Metrics need the bearer token or an allowed network.",
                             "extra": {}}, status=403)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GovernanceCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
