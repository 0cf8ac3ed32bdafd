"""Approvers' signing credentials (governed: registering or revoking one is a ledger entry, so a
credential added later cannot be back-dated) and the single-use challenges they sign."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from audit.capture.models import GovernedModel


class CredentialKind(models.TextChoices):
    PASSKEY = "passkey", "WebAuthn passkey"
    ED25519 = "ed25519", "Ed25519 key (DSSE, from a terminal)"


class ApproverCredential(GovernedModel):
    """A public key one person signs their approval decisions with.

    `credential_id`: the WebAuthn credential id (base64url) of a passkey; for an Ed25519 key, its
    DSSE keyid (lowercase hex SHA-256 of the raw 32-byte key). `public_key`: the COSE key
    (base64url) of a passkey; the raw Ed25519 key (base64url) otherwise.
    """

    # The signature counter moves on every use; the ledger records the credential, not its uses.
    governed_exclude: ClassVar[tuple[str, ...]] = ("sign_count",)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approver_credentials")
    kind = models.CharField(max_length=10, choices=CredentialKind.choices)
    credential_id = models.CharField(max_length=1400, unique=True)
    public_key = models.TextField()
    algorithm = models.IntegerField(help_text="COSE algorithm: -7 ES256, -8 EdDSA (Ed25519)")
    aaguid = models.CharField(max_length=36, blank=True)
    attestation_format = models.CharField(max_length=32, blank=True)
    rp_id = models.CharField(max_length=255, blank=True)
    label = models.CharField(max_length=100, blank=True)
    sign_count = models.PositiveBigIntegerField(default=0)
    registered_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["registered_at", "pk"]
        verbose_name = "approver signing credential"
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=CredentialKind.values), name="approvercredential_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.credential_id[:16]} of user {self.user_id}"


class ChallengePurpose(models.TextChoices):
    APPROVAL = "approval", "Sign an approval statement"
    REGISTRATION = "registration", "Register a passkey"


class SigningChallenge(models.Model):
    """A server nonce, single use and expiring: for an approval, the statement it is part of; for a
    passkey registration, the random challenge. `challenge` is the hex of the bytes the
    authenticator signs as its challenge (SHA-256 of the statement for an approval)."""

    purpose = models.CharField(max_length=12, choices=ChallengePurpose.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    request = models.ForeignKey("governance.ApprovalRequest", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="+")
    nonce = models.CharField(max_length=64, unique=True)
    challenge = models.CharField(max_length=64, unique=True)
    statement = models.TextField(blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["expires_at"], name="signingchallenge_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.purpose} challenge for user {self.user_id}"
