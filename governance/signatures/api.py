"""Thin views: the approval statement to sign, and one's own signing credentials (passkeys, Ed25519 keys)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ERROR_RESPONSES
from core.errors import InvalidInput
from core.idempotency import idempotent
from core.ids import object_id
from governance import selectors
from governance.api.common import GovernanceView
from governance.models import Decision
from governance.registry.services.approvals import approval_challenge_issue
from governance.signatures import statement as st
from governance.signatures.selectors import own_credentials
from governance.signatures.services import (
    approver_credential_get,
    approver_credential_revoke,
    approver_key_register,
    approver_passkey_options,
    approver_passkey_register,
)


def _validated(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise InvalidInput("The request body must be a JSON object.", code="invalid_input")
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class StatementIn(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Decision.choices)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)


class StatementOut(serializers.Serializer):
    statement = serializers.CharField(help_text="The JCS bytes (UTF-8) to sign, exactly")
    payload_type = serializers.CharField(help_text="The DSSE payloadType of an envelope over the statement")
    challenge = serializers.CharField(help_text="base64url SHA-256 of the statement: the WebAuthn challenge")
    nonce = serializers.CharField()
    expires_at = serializers.DateTimeField()


class StatementView(GovernanceView):
    @extend_schema(operation_id="approval_requests_statement", request=StatementIn,
                   responses={201: StatementOut, **ERROR_RESPONSES})
    def post(self, request: Request, request_id: str) -> Response:
        """Issue the statement the caller signs to decide this request (single use, expiring)."""
        approval = selectors.approval_request_get(user=request.user,
                                                  request_id=object_id(request_id, code="approval_request_not_found"))
        data = _validated(StatementIn, request)
        issued = approval_challenge_issue(request=approval, by=request.user, decision=data["decision"],
                                          comment=data["comment"])
        body = {"statement": issued.statement, "payload_type": st.STATEMENT_PAYLOAD_TYPE,
                "challenge": st.b64url(bytes.fromhex(issued.challenge)), "nonce": issued.nonce,
                "expires_at": issued.expires_at}
        return Response(StatementOut(body).data, status=status.HTTP_201_CREATED)


class CredentialOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    credential_id = serializers.CharField()
    algorithm = serializers.IntegerField()
    aaguid = serializers.CharField()
    attestation_format = serializers.CharField()
    label = serializers.CharField()
    registered_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)


class KeyIn(serializers.Serializer):
    public_key = serializers.CharField(max_length=4096, help_text="PEM (SubjectPublicKeyInfo) or base64 raw Ed25519")
    label = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)


class PasskeyIn(serializers.Serializer):
    response = serializers.DictField(help_text="The PublicKeyCredential JSON of navigator.credentials.create")
    label = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)


class CredentialListView(GovernanceView):
    @extend_schema(operation_id="signing_credentials_list", responses={200: CredentialOut(many=True), **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        """Your own signing credentials (nobody sees or registers another person's here)."""
        mine = own_credentials(user=request.user)
        return Response(CredentialOut(mine, many=True).data)

    @extend_schema(operation_id="signing_keys_register", request=KeyIn,
                   responses={201: CredentialOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request) -> Response:
        """Register your own Ed25519 public key, for DSSE-signed decisions from a terminal."""
        data = _validated(KeyIn, request)
        credential = approver_key_register(by=request.user, user=request.user, public_key=data["public_key"],
                                           label=data["label"])
        return Response(CredentialOut(credential).data, status=status.HTTP_201_CREATED)


class PasskeyOptionsView(GovernanceView):
    @extend_schema(operation_id="passkeys_options", request=None, responses={200: dict, **ERROR_RESPONSES})
    def post(self, request: Request) -> Response:
        """WebAuthn creation options for a new passkey of yours."""
        return Response(approver_passkey_options(by=request.user))


class PasskeyRegisterView(GovernanceView):
    @extend_schema(operation_id="passkeys_register", request=PasskeyIn, responses={201: CredentialOut, **ERROR_RESPONSES})
    def post(self, request: Request) -> Response:
        """Register the passkey that answered your creation options."""
        data = _validated(PasskeyIn, request)
        credential = approver_passkey_register(by=request.user, user=request.user, response=data["response"],
                                               label=data["label"])
        return Response(CredentialOut(credential).data, status=status.HTTP_201_CREATED)


class CredentialRevokeView(GovernanceView):
    @extend_schema(operation_id="signing_credentials_revoke", request=None, responses={200: CredentialOut, **ERROR_RESPONSES})
    def post(self, request: Request, credential_id: str) -> Response:
        credential = approver_credential_get(
            user=request.user, credential_id=object_id(credential_id, code="approver_credential_not_found"))
        return Response(CredentialOut(approver_credential_revoke(by=request.user, credential=credential)).data)
