"""Admin of approvals: the queue, the decide view, decisions and policies."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from core.errors import ServiceError
from governance import selectors
from governance.admin.base import ServiceBackedAdmin, comment_action, error_text, visible_models
from governance.models import (
    MODEL_CARD_FIELDS,
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalPolicyChange,
    ApprovalRequest,
    Decision,
    SignedApproval,
)
from governance.permissions import can_decide
from governance.registry.services.approvals import (
    approval_decide,
    approval_policy_change_approve,
    approval_policy_change_reject,
    approval_policy_set,
    approval_withdraw,
    effective_policy,
    quorum_state,
)
from governance.roles import ROLE_NAMES


class DecisionInline(admin.TabularInline):
    model = ApprovalDecision
    extra = 0
    can_delete = False
    fields = ("approver", "decision", "comment", "approver_roles", "decided_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DecideForm(forms.Form):
    decision = forms.ChoiceField(choices=Decision.choices, widget=forms.RadioSelect)
    comment = forms.CharField(widget=forms.Textarea({"rows": 4, "cols": 80}), required=False,
                              help_text="Recorded in the ledger with your decision; a rejection needs a reason.")


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ServiceBackedAdmin):
    list_display = ("id", "version", "kind", "status", "submitted_by", "submitted_at", "expires_at")
    list_filter = ("status", "kind")
    search_fields = ("version__label", "version__model__name")
    inlines = [DecisionInline]
    actions = ["approve_selected", "reject_selected", "withdraw_selected"]
    readonly_fields = ("version", "kind", "submitted_by", "submitted_at", "comment", "status", "policy_snapshot",
                       "excluded_deciders", "expires_at", "closed_at", "closing_comment")
    fields = readonly_fields
    change_list_template = "admin/governance/approvalrequest_changelist.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApprovalRequest]:
        return selectors.approval_request_list(user=request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # requests are made from a version (action "Submit for approval")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # decisions are made in the queue or with the actions, never by editing

    def get_urls(self) -> list[Any]:
        custom = [
            path("queue/", self.admin_site.admin_view(self.queue_view), name="governance_approvalrequest_queue"),
            path("<rowid:request_id>/decide/", self.admin_site.admin_view(self.decide_view),
                 name="governance_approvalrequest_decide"),
        ]
        return custom + super().get_urls()

    def queue_view(self, request: HttpRequest) -> HttpResponse:
        """Pending requests the user may decide now: excludes their own and those they already decided."""
        if not request.user.has_perm("governance.add_approvaldecision"):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "title": "My approval queue",
                   "queue": selectors.approval_queue(user=request.user), "opts": self.model._meta}
        return TemplateResponse(request, "admin/governance/approval_queue.html", context)

    def decide_view(self, request: HttpRequest, request_id: int) -> HttpResponse:
        approval = selectors.approval_request_list(user=request.user).filter(pk=request_id).first()
        if approval is None:
            raise Http404("No such approval request.")
        if not can_decide(request.user, approval.version.model):
            raise PermissionDenied
        initial = {"decision": request.GET.get("decision")} if request.GET.get("decision") in Decision.values else {}
        form = DecideForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                approval_decide(request=approval, by=request.user, decision=form.cleaned_data["decision"],
                                         comment=form.cleaned_data["comment"])
            except ServiceError as exc:
                form.add_error(None, error_text(exc))
            else:
                self.message_user(request, f"Decision recorded on {approval}.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:governance_approvalrequest_queue"))
        approval.refresh_from_db()
        context = {**self.admin_site.each_context(request), "title": f"Decide {approval}", "approval": approval,
                   "form": form, "opts": self.model._meta,
                   "progress": quorum_state(approval.decisions.all(), effective_policy(approval)),
                   "decisions": approval.decisions.select_related("approver")}
        return TemplateResponse(request, "admin/governance/decide.html", context)

    def _decide(self, request: HttpRequest, queryset: QuerySet[ApprovalRequest], decision: str,
                title: str, action: str) -> HttpResponse | None:
        return comment_action(request, self, queryset, title=title, action=action,
                               run=lambda approval, comment: approval_decide(
                                   request=approval, by=request.user, decision=decision, comment=comment))

    @admin.action(description="Approve selected requests…")
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[ApprovalRequest]) -> HttpResponse | None:
        return self._decide(request, queryset, Decision.APPROVE, "Approve", "approve_selected")

    @admin.action(description="Reject selected requests…")
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[ApprovalRequest]) -> HttpResponse | None:
        return self._decide(request, queryset, Decision.REJECT, "Reject", "reject_selected")

    @admin.action(description="Withdraw selected requests…")
    def withdraw_selected(self, request: HttpRequest, queryset: QuerySet[ApprovalRequest]) -> HttpResponse | None:
        return comment_action(request, self, queryset, title="Withdraw", action="withdraw_selected",
                               run=lambda approval, comment: approval_withdraw(
                                   request=approval, by=request.user, comment=comment))


@admin.register(ApprovalDecision)
class ApprovalDecisionAdmin(ServiceBackedAdmin):
    list_display = ("request", "approver", "decision", "decided_at")
    list_filter = ("decision",)
    readonly_fields = ("request", "approver", "decision", "comment", "approver_roles", "decided_at")
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApprovalDecision]:
        return ApprovalDecision.objects.select_related("request__version__model", "approver").filter(
            request__version__model__in=visible_models(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ApprovalPolicyForm(forms.ModelForm):
    required_roles = forms.MultipleChoiceField(choices=[(role, role) for role in ROLE_NAMES], required=False,
                                               widget=forms.CheckboxSelectMultiple)
    required_card_fields = forms.MultipleChoiceField(choices=[(name, name) for name in MODEL_CARD_FIELDS],
                                                     required=False, widget=forms.CheckboxSelectMultiple)
    # Left out of a post: the policy keeps its setting (a weakening is never made by omission).
    signed_approval = forms.ChoiceField(choices=SignedApproval.choices, required=False,
                                        help_text=ApprovalPolicy._meta.get_field("signed_approval").help_text)

    class Meta:
        model = ApprovalPolicy
        fields = ("model", "risk_tier", "quorum", "required_roles", "fairness_audit_max_age_days",
                  "required_card_fields", "expiry_hours", "fairness_metric_floors", "fairness_min_group_size",
                  "fairness_dataset_registered", "signed_approval")


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(ServiceBackedAdmin):
    """Risk officers' policies. A weakening is not saved here: it becomes a pending policy change that
    a second risk officer approves under "Approval policy changes"."""

    form = ApprovalPolicyForm
    list_display = ("__str__", "quorum", "required_roles", "fairness_audit_max_age_days", "expiry_hours")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("model", "risk_tier") if obj else ()

    def save_model(self, request: HttpRequest, obj: ApprovalPolicy, form: Any, change: bool) -> None:
        data = form.cleaned_data
        saved = approval_policy_set(
            by=request.user, model=obj.model if change else data.get("model"),
            risk_tier=obj.risk_tier if change else (data.get("risk_tier") or None),
            quorum=data["quorum"], required_roles=list(data["required_roles"]),
            fairness_audit_max_age_days=data["fairness_audit_max_age_days"],
            required_card_fields=list(data["required_card_fields"]), expiry_hours=data["expiry_hours"],
            fairness_metric_floors=data.get("fairness_metric_floors") or {},
            fairness_min_group_size=data.get("fairness_min_group_size"),
            fairness_dataset_registered=bool(data.get("fairness_dataset_registered")),
            signed_approval=data.get("signed_approval") or (
                ApprovalPolicy.objects.filter(pk=obj.pk).values_list("signed_approval", flat=True).first()
                if change else None) or SignedApproval.NONE)
        if isinstance(saved, ApprovalPolicyChange):
            request._policy_change_pending = saved  # type: ignore[attr-defined]
            return
        self.adopt(obj, saved)

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return None if getattr(request, "_policy_change_pending", None) else super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return None if getattr(request, "_policy_change_pending", None) else super().log_change(request, obj, message)

    def _pending_response(self, request: HttpRequest) -> HttpResponse | None:
        pending = getattr(request, "_policy_change_pending", None)
        if pending is None:
            return None
        self.message_user(request, f"This change weakens the policy ({', '.join(pending.weakened)}): it waits as "
                                   f"{pending} for a second risk officer.", messages.WARNING)
        return HttpResponseRedirect(reverse("admin:governance_approvalpolicychange_changelist"))

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: str | None = None) -> HttpResponse:
        return self._pending_response(request) or super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: Any) -> HttpResponse:
        return self._pending_response(request) or super().response_change(request, obj)


@admin.register(ApprovalPolicyChange)
class ApprovalPolicyChangeAdmin(ServiceBackedAdmin):
    """Pending weakenings: a second risk officer approves (or either rejects) them with the actions."""

    list_display = ("__str__", "weakened", "requested_by", "requested_at", "status", "decided_by")
    list_filter = ("status",)
    readonly_fields = ("model", "risk_tier", "proposed", "based_on", "weakened", "requested_by", "requested_at",
                       "comment", "status", "decided_by", "decided_at", "decision_comment")
    fields = readonly_fields
    actions = ["approve_selected", "reject_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApprovalPolicyChange]:
        return ApprovalPolicyChange.objects.select_related("model", "requested_by").filter(
            Q(model__isnull=True) | Q(model__in=visible_models(request)))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # asked for by saving a weaker policy

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)  # decided with the actions only

    @admin.action(description="Approve selected weakenings (second risk officer)…")
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[ApprovalPolicyChange]) -> HttpResponse | None:
        return comment_action(request, self, queryset, title="Approve policy change", action="approve_selected",
                              run=lambda change, comment: approval_policy_change_approve(
                                  change=change, by=request.user, comment=comment))

    @admin.action(description="Reject selected weakenings…")
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[ApprovalPolicyChange]) -> HttpResponse | None:
        return comment_action(request, self, queryset, title="Reject policy change", action="reject_selected",
                              run=lambda change, comment: approval_policy_change_reject(
                                  change=change, by=request.user, comment=comment))
