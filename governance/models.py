"""The decision domain: teams, the model registry, approval policies and requests, deployments,
service accounts and their tokens.

Every model here is a `GovernedModel`: each write to it, through any ORM path, appends a ledger
entry in the same transaction. Business rules live in `registry/services/`, not here; the
constraints below are the ones the database itself must hold even if a service has a bug.

Why one module over 500 lines: these models are one app's (label `governance`) and its migration
history; splitting them into modules would change nothing a reader sees but the file count.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from audit.capture.models import GovernedModel

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
name_validator = RegexValidator(NAME_PATTERN, "Use lowercase letters, digits, '.', '_' and '-' (at most 100).")
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
label_validator = RegexValidator(LABEL_PATTERN, "Use letters, digits, '.', '_', '+' and '-' (at most 64).")


class RiskTier(models.TextChoices):
    MINIMAL = "minimal", "Minimal"
    LIMITED = "limited", "Limited"
    HIGH = "high", "High"


class Team(GovernedModel):
    """A team owns models; its members are the users of `group`, which holds the object permissions."""

    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    display_name = models.CharField(max_length=200, blank=True)
    group = models.OneToOneField(Group, on_delete=models.PROTECT, related_name="team")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RegisteredModel(GovernedModel):
    """A model in the registry, owned by one team."""

    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    description = models.TextField(blank=True)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="models")
    risk_tier = models.CharField(max_length=10, choices=RiskTier.choices)
    intended_purpose = models.TextField(blank=True)
    affected_groups = models.JSONField(default=list, blank=True, help_text="People the model's decisions affect")
    contacts = models.JSONField(default=list, blank=True, help_text="E-mail addresses of the accountable people")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "registered model"
        permissions = [
            ("approve_registeredmodel", "Can decide approval requests for this model"),
            ("view_all_registeredmodels", "Can view every registered model (auditors)"),
            ("manage_all_registeredmodels", "Can edit every registered model (admins)"),
            ("approve_tier_minimal", "Can decide approval requests for minimal-risk models"),
            ("approve_tier_limited", "Can decide approval requests for limited-risk models"),
            ("approve_tier_high", "Can decide approval requests for high-risk models"),
        ]

    def __str__(self) -> str:
        return self.name


class VersionStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PENDING_REVIEW = "pending_review", "Pending review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    DEPLOYED = "deployed", "Deployed to production"
    DEPRECATED = "deprecated", "Deprecated"
    RETIRED = "retired", "Retired"


# The only status changes services may make. `deployed -> approved` happens when a version is
# replaced in production and runs nowhere in production any more.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    VersionStatus.DRAFT: frozenset({VersionStatus.PENDING_REVIEW, VersionStatus.RETIRED}),
    VersionStatus.PENDING_REVIEW: frozenset({VersionStatus.APPROVED, VersionStatus.REJECTED, VersionStatus.DRAFT}),
    VersionStatus.APPROVED: frozenset({VersionStatus.DEPLOYED, VersionStatus.DEPRECATED, VersionStatus.RETIRED}),
    VersionStatus.REJECTED: frozenset({VersionStatus.RETIRED}),
    VersionStatus.DEPLOYED: frozenset({VersionStatus.APPROVED, VersionStatus.DEPRECATED}),
    VersionStatus.DEPRECATED: frozenset({VersionStatus.RETIRED}),
    VersionStatus.RETIRED: frozenset(),
}
MODEL_CARD_FIELDS = ("intended_use", "limitations", "evaluation_data", "ethical_considerations")


class ModelVersion(GovernedModel):
    """One trained version: its artifacts (by digest), metrics, model card and review status."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    label = models.CharField(max_length=64, validators=[label_validator])
    artifact_uri = models.CharField(max_length=1000)
    manifest = models.JSONField(help_text="{path: sha256 hex} of every artifact file")
    manifest_digest = models.CharField(max_length=64, help_text="SHA-256 of the JCS canonical manifest")
    framework = models.CharField(max_length=100, blank=True)
    training_metrics = models.JSONField(default=dict, blank=True)
    training_run = models.PositiveBigIntegerField(null=True, blank=True, help_text="Lineage training run id, if known")
    intended_use = models.TextField(blank=True)
    limitations = models.TextField(blank=True)
    evaluation_data = models.TextField(blank=True)
    ethical_considerations = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=VersionStatus.choices, default=VersionStatus.DRAFT)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model__name", "-created_at", "-pk"]
        verbose_name = "model version"
        constraints = [
            models.UniqueConstraint(fields=["model", "label"], name="modelversion_label_unique_per_model"),
            models.CheckConstraint(condition=Q(status__in=VersionStatus.values), name="modelversion_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}:{self.label}"

    def missing_card_fields(self, required: list[str] | tuple[str, ...] = MODEL_CARD_FIELDS) -> list[str]:
        return [name for name in required if not str(getattr(self, name, "") or "").strip()]


class Environment(GovernedModel):
    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    is_production = models.BooleanField(default=False)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Deployment(GovernedModel):
    """A version running in an environment; at most one active per model and environment."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="deployments")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="deployments")
    deployed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    deployed_at = models.DateTimeField()
    replaced = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by")
    is_rollback = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-deployed_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["model", "environment"], condition=Q(is_active=True),
                                    name="deployment_one_active_per_model_env"),
        ]

    def __str__(self) -> str:
        return f"{self.version} @ {self.environment}"


class SignedApproval(models.TextChoices):
    NONE = "none", "Not required"
    PASSKEY = "passkey", "A WebAuthn passkey"
    DSSE = "dsse", "A DSSE envelope signed with the approver's Ed25519 key"
    EITHER = "either", "A passkey or a DSSE envelope"


class ApprovalPolicy(GovernedModel):
    """Rules for approving versions of one model, or the default for a risk tier."""

    model = models.OneToOneField(RegisteredModel, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="approval_policy")
    risk_tier = models.CharField(max_length=10, choices=RiskTier.choices, null=True, blank=True)
    quorum = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1)])
    required_roles = models.JSONField(default=list, blank=True,
                                      help_text='Roles that must be among the approvers, e.g. ["risk_officer"]')
    fairness_audit_max_age_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Require a passing fairness audit at most this old (empty: not required)")
    required_card_fields = models.JSONField(default=list, blank=True, help_text="Model-card fields that must be filled")
    expiry_hours = models.PositiveIntegerField(default=72, validators=[MinValueValidator(1)])
    # The evidence the policy pins: an audit counts only if its spec is at least this strict.
    fairness_metric_floors = models.JSONField(
        default=dict, blank=True,
        help_text='Metrics every counted fairness audit must check, with the laxest allowed threshold, '
                  'e.g. {"demographic_parity_ratio": {"min": 0.8}, "equalized_odds_difference": {"max": 0.1}}')
    fairness_min_group_size = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Groups of at least this many rows must be compared: a spec may not leave them out as small "
                  "(its min_group_size may not be larger). Empty: not pinned")
    fairness_dataset_registered = models.BooleanField(
        default=False, help_text="The evaluation data must be a registered lineage dataset version (same SHA-256)")
    signed_approval = models.CharField(
        max_length=10, choices=SignedApproval.choices, default=SignedApproval.NONE,
        help_text="Whether each decision must be signed by the approver: with a passkey, a DSSE envelope, either")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "approval policy"
        verbose_name_plural = "approval policies"
        constraints = [
            # Exactly one of model / risk tier, and one default per tier.
            models.CheckConstraint(
                condition=(Q(model__isnull=False) & Q(risk_tier__isnull=True))
                | (Q(model__isnull=True) & Q(risk_tier__isnull=False)),
                name="approvalpolicy_model_xor_tier"),
            models.UniqueConstraint(fields=["risk_tier"], condition=Q(model__isnull=True),
                                    name="approvalpolicy_one_default_per_tier"),
            models.CheckConstraint(condition=Q(quorum__gte=1), name="approvalpolicy_quorum_positive"),
        ]

    def __str__(self) -> str:
        return f"policy for {self.model.name}" if self.model_id else f"default policy for {self.risk_tier} risk"

    def snapshot(self) -> dict[str, Any]:
        """What an approval request is judged against, frozen when it is submitted."""
        return {
            "policy_id": self.pk,
            "scope": f"model:{self.model.name}" if self.model_id else f"tier:{self.risk_tier}",
            "quorum": self.quorum,
            "required_roles": list(self.required_roles),
            "fairness_audit_max_age_days": self.fairness_audit_max_age_days,
            "required_card_fields": list(self.required_card_fields),
            "expiry_hours": self.expiry_hours,
            "fairness_metric_floors": {name: dict(bound) for name, bound in self.fairness_metric_floors.items()},
            "fairness_min_group_size": self.fairness_min_group_size,
            "fairness_dataset_registered": self.fairness_dataset_registered,
            "signed_approval": self.signed_approval,
        }


class ChangeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPLIED = "applied", "Applied"
    REJECTED = "rejected", "Rejected"


class ApprovalPolicyChange(GovernedModel):
    """A weakening of a policy, waiting for a second risk officer (strengthening applies at once)."""

    model = models.ForeignKey(RegisteredModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    risk_tier = models.CharField(max_length=10, choices=RiskTier.choices, null=True, blank=True)
    proposed = models.JSONField(help_text="The policy fields asked for")
    based_on = models.JSONField(null=True, blank=True, help_text="Snapshot of the policy that applied when asked")
    weakened = models.JSONField(default=list, help_text="What the change makes weaker")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    comment = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=ChangeStatus.choices, default=ChangeStatus.PENDING)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-pk"]
        verbose_name = "approval policy change"
        constraints = [
            models.CheckConstraint(
                condition=(Q(model__isnull=False) & Q(risk_tier__isnull=True))
                | (Q(model__isnull=True) & Q(risk_tier__isnull=False)),
                name="approvalpolicychange_model_xor_tier"),
        ]

    def __str__(self) -> str:
        scope = f"model {self.model.name}" if self.model_id else f"tier {self.risk_tier}"
        return f"policy change #{self.pk} for {scope} ({self.status})"


class RiskTierChange(GovernedModel):
    """Lowering a model's risk tier: asked by a risk officer, applied when a second person confirms."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="risk_tier_changes")
    from_tier = models.CharField(max_length=10, choices=RiskTier.choices)
    to_tier = models.CharField(max_length=10, choices=RiskTier.choices)
    reason = models.TextField()
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=ChangeStatus.choices, default=ChangeStatus.PENDING)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-pk"]
        verbose_name = "risk tier change"
        constraints = [
            models.UniqueConstraint(fields=["model"], condition=Q(status="pending"),
                                    name="risktierchange_one_pending_per_model"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}: {self.from_tier} -> {self.to_tier} ({self.status})"


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"
    EXPIRED = "expired", "Expired"


class RequestKind(models.TextChoices):
    APPROVAL = "approval", "Approval"
    REAPPROVAL = "reapproval", "Re-approval of a production version"


class ApprovalRequest(GovernedModel):
    """A request to approve a version. A re-approval (opened by a monitoring alert, per the monitor's
    policy) asks the same deciders, under the same rules, whether a production version may stay; it
    leaves the version's status as it is, whatever its outcome."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="approval_requests")
    kind = models.CharField(max_length=10, choices=RequestKind.choices, default=RequestKind.APPROVAL)
    # Empty only for a re-approval that a scheduled job opened: no person asked for it.
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    excluded_deciders = models.JSONField(default=list, blank=True, help_text="Actor labels who may not decide it "
                                         "(for a re-approval: whose run or prediction batches raised the alert)")
    submitted_at = models.DateTimeField()
    comment = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=RequestStatus.choices, default=RequestStatus.PENDING)
    policy = models.ForeignKey(ApprovalPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    policy_snapshot = models.JSONField()
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    closing_comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-submitted_at", "-pk"]
        verbose_name = "approval request"
        constraints = [
            models.UniqueConstraint(fields=["version"], condition=Q(status="pending"),
                                    name="approvalrequest_one_pending_per_version"),
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="approvalrequest_due_idx")]

    def __str__(self) -> str:
        return f"request #{self.pk} for {self.version}"


class Decision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class ApprovalDecision(GovernedModel):
    request = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT, related_name="decisions")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(blank=True)
    approver_roles = models.JSONField(default=list, help_text="The approver's roles when deciding")
    decided_at = models.DateTimeField()
    # Empty when unsigned; else the statement the approver signed and everything needed to verify it
    # offline (governance.signatures.services.decision_signature_verify).
    signature = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["decided_at", "pk"]
        verbose_name = "approval decision"
        constraints = [
            models.UniqueConstraint(fields=["request", "approver"], name="approvaldecision_one_per_approver"),
        ]

    def __str__(self) -> str:
        return f"{self.decision} by {self.approver_id} on request #{self.request_id}"


class ServiceAccount(GovernedModel):
    """A pipeline identity: a Django user (username `svc-<name>`) flagged as a service account."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="service_account")
    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    description = models.TextField(blank=True)
    created_by = models.CharField(max_length=200, help_text="Ledger actor label of the creator")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TokenScope(models.TextChoices):
    READ = "read", "Read only"
    WRITE = "write", "Read and write"


class ServiceToken(GovernedModel):
    """An API token. Only its SHA-256 is stored; `prefix` finds the row without revealing the secret."""

    governed_redact = ("token_hash",)

    account = models.ForeignKey(ServiceAccount, on_delete=models.PROTECT, related_name="tokens")
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64, help_text="Hex SHA-256 of the whole token")
    scope = models.CharField(max_length=5, choices=TokenScope.choices, default=TokenScope.READ)
    restricted_to = models.ManyToManyField(
        RegisteredModel, blank=True, related_name="+",
        help_text="Limit the token to these models (empty: whatever the account may access)")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.account.name}, {self.scope})"


class PrivilegeKind(models.TextChoices):
    ROLE = "role", "Role (approver, risk officer, admin)"
    TIER_SCOPE = "tier_scope", "Approver scope: a risk tier"
    MODEL_SCOPE = "model_scope", "Approver scope: one model"
    SUPERUSER = "superuser", "Superuser (executed on the command line)"


class GrantStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved, to be executed on the command line"
    GRANTED = "granted", "Granted"
    REJECTED = "rejected", "Rejected"


class PrivilegeGrantRequest(GovernedModel):
    """A request that `grantee` receive a decision role, admin or superuser: one admin asks, another decides.

    Rules live in `governance.grants`; the grant itself is executed by the account services with
    the approved request, the only way a person's grant of such a privilege gets through.
    """

    grantee = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=12, choices=PrivilegeKind.choices)
    role = models.CharField(max_length=30, blank=True, help_text="For a role: approver, risk_officer or admin")
    risk_tier = models.CharField(max_length=10, choices=RiskTier.choices, blank=True,
                                 help_text="For an approver scope on a tier")
    model = models.ForeignKey(RegisteredModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                              help_text="For an approver scope on one model")
    reason = models.TextField()
    status = models.CharField(max_length=10, choices=GrantStatus.choices, default=GrantStatus.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-pk"]
        verbose_name = "privilege grant request"

    def __str__(self) -> str:
        return f"grant #{self.pk}: {self.privilege_label} to user #{self.grantee_id}"

    @property
    def privilege_label(self) -> str:
        if self.kind == PrivilegeKind.ROLE:
            return f"role {self.role}"
        if self.kind == PrivilegeKind.TIER_SCOPE:
            return f"approver scope: tier {self.risk_tier}"
        if self.kind == PrivilegeKind.MODEL_SCOPE:
            return f"approver scope: model #{self.model_id}"
        return "superuser"

    @property
    def roles(self) -> set[str]:
        """The roles of the separation-of-duties matrix this grant gives."""
        if self.kind == PrivilegeKind.ROLE:
            return {self.role}
        if self.kind in (PrivilegeKind.TIER_SCOPE, PrivilegeKind.MODEL_SCOPE):
            return {"approver"}
        return set()

    def covers(self, *, user: Any, roles: set[str]) -> bool:
        """Whether this request, approved by a second person and being executed, covers granting `roles` to
        `user`; read from the database, so an unsaved or altered instance covers nothing."""
        if self.pk is None or not roles <= self.roles:
            return False
        stored = (type(self).objects.filter(pk=self.pk, status=GrantStatus.APPROVED, grantee_id=user.pk,
                                            decided_by__isnull=False)
                  .exclude(decided_by=models.F("requested_by")).exclude(decided_by=models.F("grantee")))
        return stored.filter(kind=self.kind, role=self.role, risk_tier=self.risk_tier, model_id=self.model_id).exists()


class IdempotencyRecord(models.Model):
    """The first response to a POST with an `Idempotency-Key`, replayed for retries (not governed:
    it is a cache of a response, and the write it answers is already in the ledger)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=1000)
    body_sha256 = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}]"


class SignInFailureWindow(models.Model):
    """Failed sign-ins of one username in one window, counted here rather than in the ledger (not
    governed: the ledger gets one `auth.sign_in_failed` when the window opens and one
    `auth.sign_in_failures` with this count when it closes, see governance.signin)."""

    username = models.CharField(max_length=150, blank=True, help_text="Empty: usernames that name no user")
    window_start = models.DateTimeField()
    failures = models.PositiveIntegerField(default=0)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["username", "window_start"],
                                               name="sign_in_failure_window_unique")]
        indexes = [models.Index(fields=["closed_at", "window_start"], name="sign_in_failure_window_open")]

    def __str__(self) -> str:
        return f"{self.username or '(unknown)'} from {self.window_start:%Y-%m-%d %H:%M}: {self.failures}"
