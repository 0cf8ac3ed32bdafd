"""Page views: validate input, read through selectors, write through the owning apps' services.

A model the user may not see is a 404 (as in the API); ledger pages need `audit.view_ledgerentry`
and answer 403 otherwise (as the ledger API does). A refused write is shown as a message with
its stable code, and leaves nothing behind (each service is its own transaction).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.dateparse import parse_date, parse_datetime
from django.views.decorators.http import require_GET, require_POST

from audit import selectors as audit_selectors
from core.actor import from_visible
from core.errors import NotFound, ServiceError, error_text
from core.ids import parse_id
from governance.integrations.mlflow import selectors as mlflow_selectors
from governance.models import ApprovalRequest, Decision, ModelVersion, RequestStatus, VersionStatus
from governance.monitoring import selectors as monitoring_selectors
from governance.pages import fairness, selectors, signing
from governance.pages import monitoring as monitoring_section
from governance.permissions import can_decide, can_write_model
from governance.registry.services.approvals import approval_decide, model_version_submit, quorum_state

MODELS_PER_PAGE = 50


def _model_url(name: str, **query: str) -> str:
    url = reverse("pages:model", args=[name])
    return f"{url}?{urlencode(query)}" if query else url


# --- Dashboard --------------------------------------------------------------------------------

@require_GET
@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    user = request.user
    scope, activity = selectors.recent_activity(user=user)
    visible = selectors.visible_models(user=user)
    context = {
        "decidable": selectors.decidable_requests_first(user=user, visible=visible),
        "submitted": selectors.submitted_requests_first(user=user, visible=visible),
        "environments": selectors.deployments_by_environment(user=user, visible=visible),
        "checkpoint": selectors.latest_checkpoint(),
        "verification": selectors.last_verification(),
        "activity": activity,
        "activity_scope": scope,
        "can_read_ledger": audit_selectors.can_read_ledger(user),
        "open_alerts": list(monitoring_selectors.alert_list(user=user, status="open")[:20]),
        "revalidation_overdue": monitoring_selectors.revalidation_overdue(user=user)[:20],
        "mlflow_violations": mlflow_selectors.violations_visible(visible=visible),  # mlflow: alias violations
        **_audit_overview(user, visible),
    }
    return render(request, "pages/dashboard.html", {"nav": "dashboard", **context})


def _audit_overview(user: Any, visible: Any) -> dict[str, Any]:
    """Failing or overdue fairness audits."""
    return fairness.dashboard_overview(user=user, visible=visible)


# --- Models -----------------------------------------------------------------------------------

@require_GET
@login_required
def model_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    paginator = Paginator(selectors.model_list(user=request.user, query=query), MODELS_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "pages/model_list.html", {"nav": "models", "page": page, "q": query})


@require_GET
@login_required
def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    try:
        page = selectors.model_page(user=request.user, name=name)
    except NotFound:
        raise Http404("No such model.")
    user, model = request.user, page.model
    wanted = request.GET.get("version", "")
    selected = next((version for version in page.versions if version.label == wanted), None)
    if selected is None and page.versions:
        selected = page.versions[0]
    from lineage import selectors as lineage_selectors

    can_lineage = lineage_selectors.can_view_lineage(user)
    from governance.reports import selectors as report_selectors

    context = {
        "page": page, "model": model, "selected": selected,
        "badges": selectors.VERSION_BADGES,
        "pending": [{"request": item, "progress": quorum_state(item.decision_list, item.policy_snapshot)}
                    for item in page.requests if item.status == RequestStatus.PENDING],
        "can_submit": can_write_model(user, model, "governance.add_approvalrequest"),
        "can_decide": can_decide(user, model),
        "can_export": report_selectors.can_export(user),
        "can_lineage": can_lineage,
        "lineage": selectors.lineage_for_version(selected, user=user) if can_lineage else None,
        "bundle_id": _int_param(request, "bundle"),
        "decisions": Decision.choices,
        "draft": VersionStatus.DRAFT,
        "mlflow_violations": mlflow_selectors.violations_visible(visible=selectors.visible_models(user=user),
                                                                 model=model),  # mlflow: alias violations
    }
    context.update(signing.decide_context(user=user, model=model, pending=context["pending"],
                                          can_decide=context["can_decide"]))
    context.update(fairness.model_section(user=user, model=model, versions=page.versions, selected=selected,
                                          audit_id=_int_param(request, "audit"),
                                          result_id=_int_param(request, "audit_result")))
    context.update(monitoring_section.model_section(user=user, model=model, selected=selected))
    return render(request, "pages/model_detail.html", {"nav": "models", **context})


def _int_param(request: HttpRequest, name: str) -> int | None:
    return parse_id(request.GET.get(name, ""))


def _visible_model_or_404(request: HttpRequest, name: str) -> Any:
    from governance import selectors as governance_selectors

    try:
        return governance_selectors.registered_model_get(user=request.user, name=name)
    except NotFound:
        raise Http404("No such model.")


@require_POST
@login_required
def version_request_approval(request: HttpRequest, name: str, label: str) -> HttpResponse:
    model = _visible_model_or_404(request, name)
    version = ModelVersion.objects.filter(model=model, label=label).first()
    if version is None:
        raise Http404("No such version.")
    try:
        model_version_submit(version=version, by=request.user, comment=request.POST.get("comment", ""))
    except ServiceError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"Approval requested for {version.label}.")
    return HttpResponseRedirect(_model_url(model.name, version=version.label))


@require_POST
@login_required
def request_decide(request: HttpRequest, name: str, request_id: int) -> HttpResponse:
    model = _visible_model_or_404(request, name)
    approval = ApprovalRequest.objects.filter(pk=request_id, version__model=model).select_related("version").first()
    if approval is None:
        raise Http404("No such approval request.")
    decision = request.POST.get("decision", "")
    try:
        approval_decide(request=approval, by=request.user, decision=decision, comment=request.POST.get("comment", ""),
                        signature=signing.posted_signature(request.POST.get("signature", ""),
                                                           request.POST.get("dsse_envelope", "")))
    except ServiceError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"Your decision ({decision}) on request #{approval.pk} is recorded.")
    return HttpResponseRedirect(_model_url(model.name, version=approval.version.label) + f"#request-{approval.pk}")


@require_POST
@login_required
def model_export_bundle(request: HttpRequest, name: str) -> HttpResponse:
    model = _visible_model_or_404(request, name)
    from governance.reports import services as report_services

    label = request.POST.get("version", "")[:64]
    try:
        export = report_services.bundle_export_queue(by=request.user, model_name=model.name, version_label=label)
    except ServiceError as exc:
        messages.error(request, error_text(exc))
        return HttpResponseRedirect(_model_url(model.name))
    messages.info(request, f"Bundle export #{export.pk} queued.")
    return HttpResponseRedirect(_model_url(model.name, bundle=str(export.pk)) + "#jobs")


@require_POST
@login_required
def model_run_audit(request: HttpRequest, name: str) -> HttpResponse:
    model = _visible_model_or_404(request, name)
    try:
        audit_id, label = fairness.start_audit(user=request.user, model=model, post=request.POST)
    except ServiceError as exc:
        messages.error(request, error_text(exc))
        return HttpResponseRedirect(_model_url(model.name))
    messages.info(request, f"Fairness audit #{audit_id} queued.")
    return HttpResponseRedirect(_model_url(model.name, version=label, audit=str(audit_id)) + "#jobs")


@require_POST
@login_required
def alert_acknowledge(request: HttpRequest, name: str, alert_id: int) -> HttpResponse:
    model = _visible_model_or_404(request, name)
    try:
        monitoring_section.acknowledge(user=request.user, model=model, alert_id=alert_id,
                                       comment=request.POST.get("comment", ""))
    except NotFound:
        raise Http404("No such alert.")
    except ServiceError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"Alert #{alert_id} acknowledged.")
    return HttpResponseRedirect(_model_url(model.name) + "#monitoring")


@require_GET
@login_required
def model_comparisons(request: HttpRequest, name: str, comparison_id: int | None = None) -> HttpResponse:
    """Champion/challenger comparisons of a model, one shown in full (team-scoped: another team's is a 404)."""
    model = _visible_model_or_404(request, name)
    try:
        context = monitoring_section.comparisons_page(user=request.user, model=model, comparison_id=comparison_id)
    except NotFound:
        raise Http404("No such comparison.")
    return render(request, "pages/comparisons.html", {"nav": "models", "model": model, **context})


# --- Ledger -----------------------------------------------------------------------------------

def _require_ledger_reader(request: HttpRequest) -> None:
    if not audit_selectors.can_read_ledger(request.user):
        raise PermissionDenied("Reading the ledger needs the auditor role.")


def _parse_moment(raw: str, *, end_of_day: bool = False) -> datetime | None:
    """ISO date-time (naive means UTC) or a date (its start; with end_of_day, the next day's start)."""
    raw = raw.strip()
    if not raw:
        return None
    moment = None
    try:
        moment = parse_datetime(raw)
    except ValueError:
        moment = None
    if moment is None:
        try:
            day = parse_date(raw)
        except ValueError:
            day = None
        if day is None:
            raise ValueError(raw)
        moment = datetime(day.year, day.month, day.day)
        if end_of_day:
            from datetime import timedelta

            moment += timedelta(days=1)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)  # PostgreSQL refuses offsets beyond ±15:59 (hardening)
    except OverflowError:
        raise ValueError(raw) from None


@require_GET
@login_required
def ledger_list(request: HttpRequest) -> HttpResponse:
    _require_ledger_reader(request)
    params = request.GET
    errors: list[str] = []
    filters = selectors.LedgerFilters(
        subject_type=params.get("subject_type", "").strip()[:100], subject_id=params.get("subject_id", "").strip()[:200],
        actor=from_visible(params.get("actor", "").strip()[:200]), action=params.get("action", "").strip()[:100])
    for name in ("since", "until"):
        try:
            setattr(filters, name, _parse_moment(params.get(name, ""), end_of_day=name == "until"))
        except ValueError:
            errors.append(f"'{name}' must be a date (YYYY-MM-DD) or an ISO 8601 date-time [invalid_parameter].")
    before, after = _int_param(request, "before"), _int_param(request, "after")
    for name in ("before", "after"):
        if params.get(name) and _int_param(request, name) is None:
            errors.append(f"'{name}' must be a ledger seq [invalid_parameter].")
    if errors:
        page = selectors.LedgerPage(entries=[], newer=None, older=None)
    else:
        page = selectors.ledger_search(filters=filters, before=before, after=after)
    kept = {key: params.get(key, "") for key in ("subject_type", "subject_id", "actor", "action", "since", "until")
            if params.get(key)}
    context = {
        "nav": "ledger", "page": page, "filters": filters, "values": kept, "errors": errors,
        "filtered": bool(kept),
        "newer_url": f"?{urlencode({**kept, 'after': page.newer})}" if page.newer is not None else "",
        "older_url": f"?{urlencode({**kept, 'before': page.older})}" if page.older is not None else "",
        "first_url": f"?{urlencode(kept)}" if (before or after) else "",
        "tree_size_hint": None,
    }
    return render(request, "pages/ledger_list.html", context, status=400 if errors else 200)


@require_GET
@login_required
def ledger_entry(request: HttpRequest, seq: int) -> HttpResponse:
    _require_ledger_reader(request)
    try:
        evidence = selectors.ledger_entry_evidence(seq=seq)
    except NotFound:
        raise Http404("No such ledger entry.")
    entry = evidence["entry"]
    evidence["subject_url"] = selectors.subject_page_url(entry.subject_type, entry.subject_id)
    evidence["subject_history_url"] = "?" + urlencode({"subject_type": entry.subject_type,
                                                        "subject_id": entry.subject_id})
    return render(request, "pages/ledger_entry.html", {"nav": "ledger", **evidence})


# --- Keys and the verifier ----------------------------------------------------------------------

@require_GET
def keys(request: HttpRequest) -> HttpResponse:
    """Public: the server's verifier keys and the published verify.py with its SHA-256."""
    from governance.reports.verifier import VERIFY_URL, verify_py_sha256

    signing_keys = selectors.signing_keys()
    return render(request, "pages/keys.html", {
        "nav": "keys", "signing_keys": signing_keys, "verify_url": request.build_absolute_uri(VERIFY_URL),
        "verify_sha256": verify_py_sha256(), "command_keys": [key.vkey for key in signing_keys],
        "witnesses": selectors.policy_witnesses(),
    })
