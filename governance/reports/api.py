"""Bundle export API: request an export (a Celery job), follow its progress, download the zip."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse
from django.utils.cache import patch_cache_control
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from core.api import ERROR_RESPONSES, PaginatedView, paginated
from core.errors import Conflict, InvalidInput
from core.idempotency import HEADER as IDEMPOTENCY_HEADER
from core.idempotency import idempotent
from core.ids import object_id
from governance.reports import selectors, services
from governance.reports.models import BundleExport


class BundleRequestIn(serializers.Serializer):
    model = serializers.CharField(max_length=100)
    version = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


class BundleExportOut(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    progress = serializers.IntegerField(help_text="0-100")
    stage = serializers.CharField()
    model = serializers.CharField(source="model_name")
    version = serializers.CharField(source="version_label")
    requested_by = serializers.CharField(source="actor")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    manifest_sha256 = serializers.CharField(help_text="hex SHA-256 of manifest.json (also in the ledger entry)")
    size_bytes = serializers.IntegerField(allow_null=True)
    entry_count = serializers.IntegerField(allow_null=True)
    ledger_seq = serializers.IntegerField(allow_null=True, help_text="seq of the bundle.exported ledger entry")
    error_code = serializers.CharField()
    download_url = serializers.SerializerMethodField()

    def get_download_url(self, export: BundleExport) -> str | None:
        if export.status != BundleExport.Status.DONE:
            return None
        return reverse("bundle-download", args=[export.pk], request=self.context.get("request"))


def _out(export: BundleExport, request: Request) -> dict[str, Any]:
    return dict(BundleExportOut(export, context={"request": request}).data)


class BundleListView(PaginatedView):
    @extend_schema(operation_id="bundles_list", parameters=[OpenApiParameter("page", int)],
                   responses={200: paginated("PaginatedBundleExportList", BundleExportOut(many=True)), **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        return self.page(request, selectors.bundle_export_list(user=request.user), BundleExportOut,
                         context={"request": request})

    @extend_schema(operation_id="bundles_request", request=BundleRequestIn, parameters=[OpenApiParameter(
        IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER, required=False,
        description="Retry-safe key: the same key and body replay the first response (one export, one job).")],
                   responses={202: BundleExportOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise InvalidInput("The request body must be a JSON object.", code="invalid_input")
        data = BundleRequestIn(data=request.data)
        data.is_valid(raise_exception=True)
        export = services.bundle_export_queue(by=request.user, model_name=data.validated_data["model"],
                                              version_label=data.validated_data["version"])
        return Response(_out(export, request), status=status.HTTP_202_ACCEPTED)


class BundleDetailView(APIView):
    @extend_schema(operation_id="bundles_get", responses={200: BundleExportOut, **ERROR_RESPONSES})
    def get(self, request: Request, export_id: str) -> Response:
        export = selectors.bundle_export_get(user=request.user, export_id=object_id(export_id, code="bundle_export_not_found"))
        return Response(_out(export, request))


class BundleDownloadView(APIView):
    @extend_schema(operation_id="bundles_download", responses={(200, "application/zip"): bytes, **ERROR_RESPONSES})
    def get(self, request: Request, export_id: str) -> FileResponse:
        export = selectors.bundle_export_get(user=request.user, export_id=object_id(export_id, code="bundle_export_not_found"))
        if export.status != BundleExport.Status.DONE or not export.file:
            raise Conflict("The bundle is not ready yet.", code="bundle_not_ready",
                           extra={"status": export.status, "progress": export.progress})
        name = f"bundle-{export.model_name or 'subjects'}-{export.version_label or 'all'}-{export.pk}.zip"
        response = FileResponse(export.file.open("rb"), as_attachment=True, filename=name,
                                content_type="application/zip")
        response["X-Manifest-SHA256"] = export.manifest_sha256
        patch_cache_control(response, no_store=True, private=True)  # group results of special categories
        return response
