"""Read-only admin for lineage records; the one write (revoking a pipeline key) goes through its service.

Nodes, edges and attestations that name a governed record the user may not see, and every record of a
team whose lineage the user may not read, are left out, as in the API (`lineage.visibility`).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from core.admin import ReadOnlyModelAdmin
from core.errors import ServiceError
from lineage import visibility
from lineage.models import Attestation, Dataset, DatasetVersion, LineageEdge, LineageNode, PipelineKey, TrainingRun
from lineage.services.keys import pipeline_key_revoke


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyModelAdmin):
    list_display = ["namespace", "name", "owner_team", "created_by", "created_at"]
    search_fields = ["namespace", "name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Dataset]:
        return visibility.owned_visible(request.user, super().get_queryset(request))


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ReadOnlyModelAdmin):
    list_display = ["dataset", "version", "digest", "digest_kind", "row_count", "created_at", "graph"]
    list_filter = ["digest_kind"]
    search_fields = ["digest", "dataset__name", "location_uri"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[DatasetVersion]:
        return visibility.owned_visible(request.user, super().get_queryset(request), field="dataset__owner_team")

    @admin.display(description="lineage")
    def graph(self, version: DatasetVersion) -> str:
        return format_html('<a href="/lineage/nodes/{}/">graph</a>', version.node_id)


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyModelAdmin):
    list_display = ["job_namespace", "job_name", "status", "code_commit", "started_at", "ended_at", "actor",
                    "owner_team", "graph"]
    list_filter = ["status"]
    search_fields = ["job_name", "external_run_id", "code_commit"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TrainingRun]:
        return visibility.owned_visible(request.user, super().get_queryset(request))

    @admin.display(description="lineage")
    def graph(self, run: TrainingRun) -> str:
        return format_html('<a href="/lineage/nodes/{}/">graph</a>', run.node_id)


@admin.register(LineageNode)
class LineageNodeAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "kind", "ref_type", "ref_id", "label", "digest", "graph"]
    list_filter = ["kind"]
    search_fields = ["digest", "label", "ref_id"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[LineageNode]:
        return visibility.visible_nodes(request.user, super().get_queryset(request))

    @admin.display(description="lineage")
    def graph(self, node: LineageNode) -> str:
        return format_html('<a href="/lineage/nodes/{}/">graph</a>', node.pk)


@admin.register(LineageEdge)
class LineageEdgeAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "source", "target", "attestation", "created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[LineageEdge]:
        return visibility.visible_edges(request.user, super().get_queryset(request))


@admin.register(Attestation)
class AttestationAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "origin", "keyid", "predicate_type", "submitted_by", "created_at", "envelope_link"]
    list_filter = ["origin"]
    exclude = ["envelope"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Attestation]:
        return visibility.visible_attestations(request.user, super().get_queryset(request))

    @admin.display(description="envelope")
    def envelope_link(self, attestation: Attestation) -> str:
        return format_html('<a href="/api/lineage/attestations/{}/">JSON</a>', attestation.pk)


@admin.register(PipelineKey)
class PipelineKeyAdmin(ReadOnlyModelAdmin):
    list_display = ["keyid", "owner", "owner_team", "name", "created_at", "revoked_at", "revoked_by"]
    exclude = ["public_key"]
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PipelineKey]:
        return visibility.owned_visible(request.user, super().get_queryset(request))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The revoke action needs it; an object's change form stays read-only.
        return obj is None and bool(request.user.has_perm("lineage.change_pipelinekey"))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["owner", "owner_team", "name", "keyid", "created_at", "revoked_at", "revoked_by"]

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[PipelineKey]) -> None:
        for key in queryset:
            try:
                pipeline_key_revoke(key=key, by=request.user)
            except ServiceError as exc:
                self.message_user(request, f"{key.keyid[:16]}: {exc.message}", messages.WARNING)
