"""Read API of the ledger: entries, proofs, consistency, checkpoints and keys (thin views)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from django.http import HttpResponse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import ledger, selectors, witnesses
from audit.models import LedgerEntry
from core.api import ERROR_RESPONSES, PaginatedView, int_param, paginated
from core.errors import InvalidInput, NotFound


def b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


class CanReadLedger(BasePermission):
    """Auditor role or better (`audit.view_ledgerentry`)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return selectors.can_read_ledger(request.user)


class LedgerEntrySerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    recorded_at = serializers.DateTimeField()
    actor = serializers.CharField()
    action = serializers.CharField()
    subject = serializers.SerializerMethodField()
    payload = serializers.SerializerMethodField()
    prev_hash = serializers.SerializerMethodField()
    entry_hash = serializers.SerializerMethodField()
    canonical = serializers.SerializerMethodField(help_text="base64 of the exact RFC 8785 bytes (the Merkle leaf)")

    def get_subject(self, entry: LedgerEntry) -> dict[str, str]:
        return {"type": entry.subject_type, "id": entry.subject_id}

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_payload(self, entry: LedgerEntry) -> object:
        return entry.payload

    def get_prev_hash(self, entry: LedgerEntry) -> str:
        return bytes(entry.prev_hash).hex()

    def get_entry_hash(self, entry: LedgerEntry) -> str:
        return bytes(entry.entry_hash).hex()

    def get_canonical(self, entry: LedgerEntry) -> str:
        return b64(entry.canonical)


class InclusionProofSerializer(serializers.Serializer):
    leaf_index = serializers.IntegerField()
    tree_size = serializers.IntegerField()
    leaf_hash = serializers.CharField(help_text="base64")
    hashes = serializers.ListField(child=serializers.CharField(), help_text="base64, RFC 9162 order")
    checkpoint = serializers.CharField(allow_null=True, help_text="signed note at this tree size, if one was made")


class ConsistencyProofSerializer(serializers.Serializer):
    first = serializers.IntegerField()
    second = serializers.IntegerField()
    hashes = serializers.ListField(child=serializers.CharField())


class SigningKeySerializer(serializers.Serializer):
    key_id = serializers.CharField()
    name = serializers.CharField()
    purpose = serializers.CharField()
    algorithm = serializers.CharField()
    vkey = serializers.CharField()
    dsse_keyid = serializers.CharField()
    public_key_pem = serializers.SerializerMethodField()
    valid_from = serializers.DateTimeField()
    valid_until = serializers.DateTimeField(allow_null=True)

    def get_public_key_pem(self, key) -> str:  # type: ignore[no-untyped-def]
        from audit.keys import public_pem

        return public_pem(bytes(key.public_key))


def _time_param(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        value = parse_datetime(raw)
        # In UTC: PostgreSQL refuses offsets beyond ±15:59 that Python parses (a 500 otherwise).
        if value is not None:
            value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        value = None
    if value is None:
        raise InvalidInput(f"Query parameter '{name}' must be an ISO 8601 date-time.", code="invalid_parameter",
                           extra={"parameter": name})
    return value


_ENTRY_FILTERS = [
    OpenApiParameter("action", str), OpenApiParameter("action_prefix", str),
    OpenApiParameter("subject_type", str), OpenApiParameter("subject_id", str), OpenApiParameter("actor", str),
    OpenApiParameter("since", OpenApiTypes.DATETIME), OpenApiParameter("until", OpenApiTypes.DATETIME),
    OpenApiParameter("page", int), OpenApiParameter("page_size", int),
]


class LedgerEntryListApi(PaginatedView):
    permission_classes = [CanReadLedger]

    @extend_schema(parameters=_ENTRY_FILTERS,
                   responses={200: paginated("PaginatedLedgerEntryList", LedgerEntrySerializer(many=True)), **ERROR_RESPONSES},
                   operation_id="ledger_entries_list")
    def get(self, request: Request) -> Response:
        params = request.query_params
        entries = selectors.ledger_entry_list(
            action=params.get("action"), action_prefix=params.get("action_prefix"),
            subject_type=params.get("subject_type"), subject_id=params.get("subject_id"),
            actor=params.get("actor"), since=_time_param(request, "since"), until=_time_param(request, "until"),
            user=request.user,
        )
        return self.page(request, entries, LedgerEntrySerializer)


class LedgerEntryDetailApi(APIView):
    permission_classes = [CanReadLedger]

    @extend_schema(responses={200: LedgerEntrySerializer, **ERROR_RESPONSES}, operation_id="ledger_entries_retrieve")
    def get(self, request: Request, seq: int) -> Response:
        return Response(LedgerEntrySerializer(selectors.ledger_entry_get(seq=seq, user=request.user)).data)


class InclusionProofApi(APIView):
    permission_classes = [CanReadLedger]

    @extend_schema(parameters=[OpenApiParameter("tree_size", int, description="defaults to the latest checkpoint")],
                   responses={200: InclusionProofSerializer, **ERROR_RESPONSES}, operation_id="ledger_inclusion_proof")
    def get(self, request: Request, seq: int) -> Response:
        latest = selectors.checkpoint_latest()
        if "tree_size" in request.query_params:
            tree_size = int_param(request, "tree_size", minimum=1)
        elif latest is not None:
            tree_size = latest.tree_size
        else:
            raise NotFound("No checkpoint has been made yet; pass tree_size.", code="no_checkpoint")
        entry = selectors.ledger_entry_get(seq=seq, user=request.user)
        hashes = ledger.inclusion_proof(leaf_index=seq, tree_size=tree_size)
        checkpoint = selectors.checkpoint_at(tree_size)
        return Response({
            "leaf_index": seq, "tree_size": tree_size, "leaf_hash": b64(entry.leaf_hash),
            "hashes": [b64(node) for node in hashes], "checkpoint": checkpoint.note if checkpoint else None,
        })


class ConsistencyProofApi(APIView):
    permission_classes = [CanReadLedger]

    @extend_schema(parameters=[OpenApiParameter("first", int, required=True), OpenApiParameter("second", int)],
                   responses={200: ConsistencyProofSerializer, **ERROR_RESPONSES}, operation_id="ledger_consistency_proof")
    def get(self, request: Request) -> Response:
        first = int_param(request, "first", minimum=1)
        latest = selectors.checkpoint_latest()
        default_second = latest.tree_size if latest else ledger.current_tree_size()
        second = int_param(request, "second", default=default_second, minimum=1)
        hashes = ledger.consistency_proof(first_size=first, second_size=second)
        return Response({"first": first, "second": second, "hashes": [b64(node) for node in hashes]})


class CheckpointApi(APIView):
    permission_classes = [CanReadLedger]

    @extend_schema(responses={(200, "text/plain"): OpenApiTypes.STR, **ERROR_RESPONSES},
                   operation_id="ledger_checkpoint_latest")
    def get(self, request: Request) -> HttpResponse:
        latest = selectors.checkpoint_latest()
        if latest is None:
            raise NotFound("No checkpoint has been made yet.", code="no_checkpoint")
        # With the witnesses' cosignature lines appended (C2SP tlog-cosignature).
        return HttpResponse(witnesses.cosigned_note(latest), content_type="text/plain; charset=utf-8")


class SigningKeyListApi(APIView):
    permission_classes = [CanReadLedger]

    @extend_schema(responses={200: SigningKeySerializer(many=True), **ERROR_RESPONSES}, operation_id="ledger_keys_list")
    def get(self, request: Request) -> Response:
        return Response(SigningKeySerializer(selectors.signing_key_list(), many=True).data)


class SigningKeyDetailApi(APIView):
    permission_classes = [CanReadLedger]

    @extend_schema(responses={200: SigningKeySerializer, **ERROR_RESPONSES}, operation_id="ledger_keys_retrieve")
    def get(self, request: Request, key_id: str) -> Response:
        return Response(SigningKeySerializer(selectors.signing_key_get(key_id=key_id)).data)
