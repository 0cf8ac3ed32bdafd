"""MLflow connections, the deliveries received, what the last reconcile saw, and alias violations.

A connection holds no secret: its credentials and its webhook secret are *names* of environment
variables (with the prefix `MLFLOW_CREDENTIAL_ENV_PREFIX`, read in governance/settings.py), so the
database, the admin, the ledger and bundles never see them.

`MlflowConnection` and `MlflowViolation` are governed (every write is a ledger entry). Deliveries
and the reconcile snapshots are bookkeeping: the ledger entries the services write next to them
(`mlflow.delivery_received`, `mlflow.version_imported`, ...) are the record.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from audit.capture.models import GovernedModel
from governance.models import ModelVersion, RegisteredModel, RiskTier, Team, name_validator

ENV_NAME_PATTERN = r"^[A-Z][A-Z0-9_]{0,99}$"
env_name_validator = RegexValidator(ENV_NAME_PATTERN, "An environment variable name: A-Z, 0-9 and '_'.")


class MlflowConnection(GovernedModel):
    """One MLflow tracking server whose registry is governed for one team."""

    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    tracking_uri = models.URLField(max_length=500, help_text="e.g. https://mlflow.example.org")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="mlflow_connections")
    service_account = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="mlflow_connection",
        help_text="The data-scientist account (svc-mlflow-<name>) that registers and deploys for the connection")
    token_env = models.CharField(max_length=100, blank=True, validators=[env_name_validator],
                                 help_text="Name of the environment variable holding a bearer token")
    username_env = models.CharField(max_length=100, blank=True, validators=[env_name_validator],
                                    help_text="Name of the environment variable holding the basic-auth user")
    password_env = models.CharField(max_length=100, blank=True, validators=[env_name_validator],
                                    help_text="Name of the environment variable holding the basic-auth password")
    webhook_secret_env = models.CharField(max_length=100, blank=True, validators=[env_name_validator],
                                          help_text="Name of the environment variable holding the webhook secret "
                                                    "(empty: no webhook; the scheduled reconcile only)")
    default_risk_tier = models.CharField(max_length=10, choices=RiskTier.choices, default=RiskTier.HIGH,
                                         help_text="Risk tier of models first seen in MLflow")
    alias_map = models.JSONField(default=dict, blank=True,
                                 help_text='Aliases that stand for environments, e.g. {"champion": "production"}')
    revert_violations = models.BooleanField(
        default=False, help_text="Move an alias back in MLflow when it points at a version the policy refuses")
    alias_on_approval = models.CharField(
        max_length=100, blank=True,
        help_text="Set this alias in MLflow on a version when it is approved here (empty: never)")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MLflow connection"

    def __str__(self) -> str:
        return self.name


class MlflowDelivery(models.Model):
    """A webhook delivery accepted once (its id is the deduplication key); the ledger entry is the record."""

    delivery_id = models.CharField(max_length=200, unique=True)
    connection = models.ForeignKey(MlflowConnection, on_delete=models.PROTECT, related_name="deliveries")
    event = models.CharField(max_length=100)
    model_name = models.CharField(max_length=500, blank=True)
    version = models.CharField(max_length=50, blank=True)
    body_sha256 = models.CharField(max_length=64)
    is_test = models.BooleanField(default=False)
    received_at = models.DateTimeField()
    ledger_seq = models.BigIntegerField()

    class Meta:
        ordering = ["-received_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.event} {self.model_name}/{self.version} ({self.delivery_id})"


class MlflowModelLink(models.Model):
    """An MLflow registered model and the registered model it maps to, with what the last reconcile saw."""

    connection = models.ForeignKey(MlflowConnection, on_delete=models.PROTECT, related_name="model_links")
    mlflow_name = models.CharField(max_length=500)
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="mlflow_links")
    # {"description", "tags", "aliases": {alias: version}}
    snapshot = models.JSONField(default=dict)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="When the reconcile found it gone")

    class Meta:
        ordering = ["mlflow_name"]
        constraints = [models.UniqueConstraint(fields=["connection", "mlflow_name"], condition=Q(deleted_at__isnull=True),
                                               name="mlflowmodellink_one_live_per_name")]

    def __str__(self) -> str:
        return f"{self.connection.name}:{self.mlflow_name}"


class MlflowVersionLink(models.Model):
    """An MLflow model version and the draft registered for it here, with what the last reconcile saw."""

    link = models.ForeignKey(MlflowModelLink, on_delete=models.PROTECT, related_name="versions")
    mlflow_version = models.CharField(max_length=50)
    version = models.OneToOneField(ModelVersion, on_delete=models.PROTECT, related_name="mlflow_link")
    # {"run_id", "source", "tags", "description", "current_stage"}
    snapshot = models.JSONField(default=dict)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["link", "pk"]
        constraints = [models.UniqueConstraint(fields=["link", "mlflow_version"], name="mlflowversionlink_unique")]

    def __str__(self) -> str:
        return f"{self.link}/{self.mlflow_version}"


class MlflowViolation(GovernedModel):
    """An environment alias set in MLflow on a version the policy does not allow there."""

    connection = models.ForeignKey(MlflowConnection, on_delete=models.PROTECT, related_name="violations")
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="mlflow_violations")
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="mlflow_violations",
                                help_text="Empty: a version not registered here (its artifacts could not be hashed)")
    mlflow_name = models.CharField(max_length=500)
    mlflow_version = models.CharField(max_length=50)
    alias = models.CharField(max_length=100)
    environment = models.CharField(max_length=100)
    version_status = models.CharField(max_length=20)
    code = models.CharField(max_length=100)
    detected_at = models.DateTimeField()
    reverted_at = models.DateTimeField(null=True, blank=True)
    revert_error = models.CharField(max_length=500, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-detected_at", "-pk"]
        verbose_name = "MLflow policy violation"

    def __str__(self) -> str:
        return f"{self.mlflow_name}@{self.alias} -> {self.mlflow_version} ({self.environment})"
