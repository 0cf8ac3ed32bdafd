"""Fairness API: request audits, read their status and results, define specs, upload production
predictions, and read the monitoring trend. Thin views over services and selectors; a model the
caller cannot see answers 404; every POST accepts an `Idempotency-Key`.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import QueryDict, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ERROR_RESPONSES, PaginatedView, paginated
from core.errors import InvalidInput, NotFound
from core.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from core.ids import object_id
from governance import selectors as governance_selectors
from governance.api.common import choice_param
from governance.fairness import selectors
from governance.fairness.models import AuditRun, AuditSpec, SealedFile
from governance.fairness.services.batches import prediction_batch_upload
from governance.fairness.services.evidence import audit_spec_confirm, audit_waive
from governance.fairness.services.runs import audit_request
from governance.fairness.services.specs import audit_spec_create
from governance.fairness.services.uploads import UploadTooLarge
from governance.fairness.services.vault import (
    sealed_file_download,
    sealed_file_erase,
    sealed_file_erase_rows,
    sealed_file_retention_set,
)
from governance.permissions import TokenScopePermission

# --- Serializers -------------------------------------------------------------------------------

class SpecIn(serializers.Serializer):
    model = serializers.CharField(max_length=100)
    name = serializers.CharField(max_length=200, required=False, default="")
    target = serializers.ChoiceField(choices=AuditSpec.Target.choices, default=AuditSpec.Target.VERSION)
    version = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    dataset_version = serializers.IntegerField(required=False, allow_null=True, min_value=1, default=None,
                                               help_text="Lineage DatasetVersion id of the evaluation data")
    y_true = serializers.CharField(max_length=200)
    y_pred = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    score = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    threshold = serializers.FloatField(required=False, allow_null=True, default=None, min_value=-1e300, max_value=1e300)
    sensitive = serializers.ListField(child=serializers.CharField(max_length=200), min_length=1, max_length=10)
    pos_label = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    metrics = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list,
                                    max_length=20)
    thresholds = serializers.DictField(child=serializers.FloatField(), required=False, allow_null=True,
                                       default=None)
    min_group_size = serializers.IntegerField(min_value=0, max_value=1_000_000_000, default=30)
    include_small_groups = serializers.BooleanField(default=False)
    reference_group = serializers.DictField(child=serializers.CharField(max_length=200), required=False,
                                            allow_null=True, default=None)
    bootstrap = serializers.IntegerField(min_value=0, max_value=1_000_000, default=0)
    seed = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0, max_value=2**63 - 1)
    window_days = serializers.IntegerField(min_value=1, max_value=3650, default=30)
    schedule_interval_s = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                                   max_value=366 * 24 * 3600, default=None)
    schedule_crontab = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    identifier_columns = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, default=list, max_length=50,
        help_text="Direct identifiers: replaced by the team's keyed hashes (HMAC-SHA256) before storage")


class SpecOut(serializers.Serializer):
    id = serializers.IntegerField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    confirmed_by = serializers.CharField(source="confirmed_by.username", allow_null=True, default=None)
    name = serializers.CharField()
    model = serializers.CharField(source="model.name")
    target = serializers.CharField()
    version = serializers.CharField(source="version.label", allow_null=True, default=None)
    dataset_version = serializers.IntegerField(source="dataset_version_id", allow_null=True)
    dataset_sha256 = serializers.CharField()
    config = serializers.DictField()
    periodic_task = serializers.IntegerField(source="periodic_task_id", allow_null=True)
    created_at = serializers.DateTimeField()


class AuditRequestIn(serializers.Serializer):
    spec_id = serializers.IntegerField(required=False, min_value=1, help_text="An existing spec")
    spec = SpecIn(required=False, help_text="Or a spec defined inline (created, then run)")


class AuditOut(serializers.Serializer):
    id = serializers.IntegerField()
    spec = serializers.IntegerField(source="spec_id")
    model = serializers.CharField(source="spec.model.name")
    version = serializers.CharField(source="model_version.label", allow_null=True, default=None)
    trigger = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.IntegerField()
    stage = serializers.CharField()
    requested_by = serializers.CharField(source="requested_by_label")
    dataset = serializers.CharField(source="dataset_label")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    passed = serializers.BooleanField(allow_null=True)
    thresholds = serializers.DictField()
    findings = serializers.ListField(child=serializers.DictField())
    input_sha256 = serializers.CharField()
    result_sha256 = serializers.CharField()
    error_code = serializers.CharField()
    error_message = serializers.CharField()
    ledger_seq = serializers.IntegerField(allow_null=True)


class AuditDetailOut(AuditOut):
    result = serializers.DictField(allow_null=True)


class JobStatusOut(serializers.Serializer):
    status = serializers.CharField(help_text="queued, running, done or failed (the pages' job contract)")
    progress = serializers.IntegerField()
    stage = serializers.CharField()
    passed = serializers.BooleanField(allow_null=True)
    message = serializers.CharField()
    result_url = serializers.CharField(allow_null=True)
    error_code = serializers.CharField(allow_null=True)


class BatchOut(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="model.name")
    served_version = serializers.CharField(source="served_version.label", allow_null=True, default=None)
    file_format = serializers.CharField()
    sha256 = serializers.CharField()
    size_bytes = serializers.IntegerField()
    rows = serializers.IntegerField()
    columns = serializers.ListField(child=serializers.CharField())
    uploaded_by = serializers.CharField(source="uploaded_by_label")
    uploaded_at = serializers.DateTimeField()


class TrendOut(serializers.Serializer):
    model = serializers.CharField()
    points = serializers.ListField(child=serializers.DictField())


# --- Helpers -----------------------------------------------------------------------------------

def _spec_data(request: Request, raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):  # multipart: the spec travels as a JSON string next to the file
        try:
            raw = json.loads(raw)
        except ValueError as error:
            raise InvalidInput("'spec' must be a JSON object.", code="invalid_input") from error
    if not isinstance(raw, dict):
        raise InvalidInput("'spec' must be a JSON object.", code="invalid_input")
    serializer = SpecIn(data=raw)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _create_spec(request: Request, data: dict[str, Any]) -> AuditSpec:
    model = governance_selectors.registered_model_get(user=request.user, name=data.pop("model"))
    label = data.pop("version")
    version = None
    if label:
        version = governance_selectors.model_version_get(user=request.user, model_name=model.name, label=label)
    dataset_version = None
    dataset_version_id = data.pop("dataset_version")
    if dataset_version_id is not None:
        from lineage.models import DatasetVersion

        dataset_version = DatasetVersion.objects.filter(pk=dataset_version_id).first()
        if dataset_version is None:
            raise NotFound(f"No dataset version {dataset_version_id}.", code="dataset_version_not_found",
                           extra={"id": dataset_version_id})
    crontab = data.pop("schedule_crontab") or None
    return audit_spec_create(by=request.user, model=model, version=version, dataset_version=dataset_version,
                             dataset_file=request.FILES.get("dataset"), schedule_crontab=crontab, **data)


def _data(request: Request) -> dict[str, Any]:
    if isinstance(request.data, QueryDict):  # multipart/form: one value per field
        return request.data.dict()
    if not isinstance(request.data, dict):
        raise InvalidInput("The request body must be a JSON object.", code="invalid_input")
    return dict(request.data)


class FairnessView(PaginatedView):
    permission_classes = [TokenScopePermission]


# --- Views -------------------------------------------------------------------------------------

class AuditListView(FairnessView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(operation_id="fairness_audits_list", responses={200: paginated("AuditPage", AuditOut(many=True)),
                                                                   **ERROR_RESPONSES},
                   parameters=[OpenApiParameter("model", str), OpenApiParameter("version", str),
                               OpenApiParameter("status", str, enum=AuditRun.Status.values)])
    def get(self, request: Request) -> Response:
        status_filter = request.query_params.get("status") or None
        if status_filter and status_filter not in AuditRun.Status.values:
            raise InvalidInput(f"Query parameter 'status' must be one of {', '.join(AuditRun.Status.values)}.",
                               code="invalid_parameter", extra={"parameter": "status"})
        runs = selectors.audit_run_list(user=request.user, model_name=request.query_params.get("model") or None,
                                        version_label=request.query_params.get("version") or None,
                                        status=status_filter)
        return self.page(request, runs, AuditOut)

    @extend_schema(operation_id="fairness_audits_request", request=AuditRequestIn,
                   responses={202: AuditOut, **ERROR_RESPONSES}, parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request: Request) -> Response:
        data = _data(request)
        if ("spec_id" in data) == ("spec" in data):
            raise InvalidInput("Give exactly one of 'spec_id' or 'spec'.", code="invalid_input")
        if "spec_id" in data:
            raw = str(data["spec_id"])
            spec = selectors.audit_spec_get(user=request.user, spec_id=object_id(raw, code="fairness_spec_not_found"))
        else:
            spec = _create_spec(request, _spec_data(request, data["spec"]))
        run = audit_request(spec=spec, by=request.user)
        return Response(AuditOut(run).data, status=status.HTTP_202_ACCEPTED)


class AuditDetailView(FairnessView):
    @extend_schema(operation_id="fairness_audits_get", responses={200: AuditDetailOut, **ERROR_RESPONSES})
    def get(self, request: Request, audit_id: str) -> Response:
        run = selectors.audit_run_get(user=request.user,
                                      run_id=object_id(audit_id, code="fairness_audit_not_found"))
        return Response(AuditDetailOut(run).data)


class AuditStatusView(FairnessView):
    """The pages' progress bar polls this (static/js/jobs.js contract)."""

    @extend_schema(operation_id="fairness_audits_status", responses={200: JobStatusOut, **ERROR_RESPONSES})
    def get(self, request: Request, audit_id: str) -> Response:
        run = selectors.audit_run_get(user=request.user,
                                      run_id=object_id(audit_id, code="fairness_audit_not_found"))
        job_status = {AuditRun.Status.SUCCEEDED: "done"}.get(run.status, run.status)  # type: ignore[call-overload]
        if run.status == AuditRun.Status.SUCCEEDED:
            message = "Passed." if run.passed else "Failing: " + ", ".join(
                f"{f['attributes']} {f['metric']}" for f in run.findings if not f.get("passed"))[:300]
        else:
            message = run.error_message[:300] if run.status == AuditRun.Status.FAILED else run.stage
        return Response({"status": job_status, "progress": run.progress, "stage": run.stage, "passed": run.passed,
                         "message": message,
                         "result_url": f"/api/fairness/audits/{run.pk}/" if run.status == AuditRun.Status.SUCCEEDED
                         else None, "error_code": run.error_code or None})


class SpecListView(FairnessView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(operation_id="fairness_specs_list", responses={200: paginated("SpecPage", SpecOut(many=True)),
                                                                  **ERROR_RESPONSES},
                   parameters=[OpenApiParameter("model", str)])
    def get(self, request: Request) -> Response:
        specs = selectors.audit_spec_list(user=request.user)
        if request.query_params.get("model"):
            specs = specs.filter(model__name=request.query_params["model"])
        return self.page(request, specs, SpecOut)

    @extend_schema(operation_id="fairness_specs_create", request=SpecIn, responses={201: SpecOut, **ERROR_RESPONSES},
                   parameters=[IDEMPOTENCY_PARAMETER],
                   description="JSON, or multipart with the fields as a JSON string in 'spec' and the evaluation "
                               "data in 'dataset'.")
    @idempotent
    def post(self, request: Request) -> Response:
        data = _data(request)
        raw = data.get("spec", data) if "spec" in data else data
        spec = _create_spec(request, _spec_data(request, raw))
        return Response(SpecOut(spec).data, status=status.HTTP_201_CREATED)


class PredictionBatchView(FairnessView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(operation_id="fairness_prediction_batches_upload",
                   request={"multipart/form-data": {"type": "object", "properties": {
                       "file": {"type": "string", "format": "binary"}, "version": {"type": "string"},
                       "identifier_columns": {"type": "string", "description": "Comma-separated direct identifier "
                                              "columns, pseudonymised before storage"}}}},
                   responses={201: BatchOut, 200: BatchOut, **ERROR_RESPONSES}, parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request: Request, name: str) -> Response:
        model = governance_selectors.registered_model_get(user=request.user, name=name)
        length = request.META.get("CONTENT_LENGTH") or ""
        if length.isdigit() and int(length) > settings.FAIRNESS_MAX_UPLOAD_BYTES + 64 * 1024:
            raise UploadTooLarge(f"The upload is larger than {settings.FAIRNESS_MAX_UPLOAD_BYTES} bytes.",
                                 extra={"max_bytes": settings.FAIRNESS_MAX_UPLOAD_BYTES})
        uploaded = request.FILES.get("file")
        if uploaded is None:
            raise InvalidInput("Upload the predictions as the multipart field 'file'.", code="fairness_no_file")
        label = request.data.get("version") or ""
        version = (governance_selectors.model_version_get(user=request.user, model_name=name, label=label)
                   if label else None)
        identifiers = [name.strip() for name in str(request.data.get("identifier_columns") or "").split(",")
                       if name.strip()]
        batch, created = prediction_batch_upload(by=request.user, model=model, uploaded=uploaded,
                                                 served_version=version, identifier_columns=identifiers)
        return Response(BatchOut(batch).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(operation_id="fairness_prediction_batches_list",
                   responses={200: paginated("BatchPage", BatchOut(many=True)), **ERROR_RESPONSES})
    def get(self, request: Request, name: str) -> Response:
        model = governance_selectors.registered_model_get(user=request.user, name=name)
        return self.page(request, selectors.prediction_batch_list(user=request.user, model=model), BatchOut)


class TrendView(FairnessView):
    @extend_schema(operation_id="fairness_trend", responses={200: TrendOut, **ERROR_RESPONSES},
                   parameters=[OpenApiParameter("model", str, required=True)])
    def get(self, request: Request) -> Response:
        name = request.query_params.get("model") or ""
        if not name:
            raise InvalidInput("Query parameter 'model' is required.", code="missing_parameter",
                               extra={"parameter": "model"})
        points = selectors.fairness_trend(user=request.user, model_name=name)
        return Response({"model": name, "points": points})


class SpecConfirmIn(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class WaiverIn(serializers.Serializer):
    reason = serializers.CharField(max_length=5000)


class WaiverOut(serializers.Serializer):
    audit_run = serializers.IntegerField(source="run_id")
    reason = serializers.CharField()
    waived_by = serializers.CharField(source="waived_by.username")
    waived_at = serializers.DateTimeField()
    ledger_seq = serializers.IntegerField(allow_null=True)


def _validated(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=_data(request))
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class SpecConfirmView(FairnessView):
    """High-risk models: a risk officer or approver who wrote neither the spec nor the version confirms it."""

    @extend_schema(operation_id="fairness_specs_confirm", request=SpecConfirmIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={200: SpecOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, spec_id: str) -> Response:
        spec = selectors.audit_spec_get(user=request.user, spec_id=object_id(spec_id, code="fairness_spec_not_found"))
        data = _validated(SpecConfirmIn, request)
        return Response(SpecOut(audit_spec_confirm(by=request.user, spec=spec, comment=data["comment"])).data)


class AuditWaiveView(FairnessView):
    """A risk officer (not the submitter) waives a failing audit of a version, with a reason."""

    @extend_schema(operation_id="fairness_audits_waive", request=WaiverIn, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: WaiverOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, audit_id: str) -> Response:
        run = selectors.audit_run_get(user=request.user, run_id=object_id(audit_id, code="fairness_audit_not_found"))
        data = _validated(WaiverIn, request)
        waiver = audit_waive(by=request.user, run=run, reason=data["reason"])
        return Response(WaiverOut(waiver).data, status=status.HTTP_201_CREATED)


# --- Sealed data files: retention, erasure, download (issue 18) --------------------------------
# Retention and erasure are a risk officer's decisions (the service refuses anyone else with
# 403 `data_officer_required` and a `.refused` ledger entry); a download needs a purpose (403
# `data_download_not_allowed`). A file of a model the caller cannot see answers 404.

DOWNLOAD_CHUNK_BYTES = 1 << 20


class SealedFileOut(serializers.Serializer):
    file_id = serializers.CharField()
    kind = serializers.CharField()
    model = serializers.CharField(source="model.name", allow_null=True)
    file_format = serializers.CharField()
    source_sha256 = serializers.CharField()
    content_sha256 = serializers.CharField()
    size_bytes = serializers.IntegerField()
    identifier_columns = serializers.ListField(child=serializers.CharField())
    sensitive_columns = serializers.ListField(child=serializers.CharField())
    retention_until = serializers.DateTimeField(allow_null=True)
    retention_set_by = serializers.CharField()
    erased_at = serializers.DateTimeField(allow_null=True)
    erasure_reason = serializers.CharField()
    replaced_by = serializers.CharField(source="replaced_by.file_id", allow_null=True, default=None)


class RetentionIn(serializers.Serializer):
    retention_until = serializers.DateTimeField()
    reason = serializers.CharField(max_length=1000)


class ErasureIn(serializers.Serializer):
    request = serializers.CharField(max_length=200, help_text="The erasure request's reference (no personal data)")
    column = serializers.CharField(required=False, max_length=200,
                                   help_text="With 'value': erase only the rows whose column holds the value")
    value = serializers.CharField(required=False, max_length=1000,
                                  help_text="A person's identifier (compared after pseudonymisation when the column "
                                            "is an identifier column); never recorded")


class DataFileListView(FairnessView):
    """The sealed data files of the models the caller can see: metadata only, never a key or the data."""

    @extend_schema(operation_id="fairness_data_files_list",
                   parameters=[OpenApiParameter("model", str, description="Only this model's files (404 if not visible)"),
                               OpenApiParameter("kind", str, enum=SealedFile.Kind.values),
                               OpenApiParameter("erased", str, enum=["true", "false"],
                                                description="Only erased (crypto-shredded) files, or only live ones"),
                               OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
                   responses={200: paginated("SealedFilePage", SealedFileOut(many=True)), **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        name = request.query_params.get("model") or ""
        model = governance_selectors.registered_model_get(user=request.user, name=name) if name else None
        erased = choice_param(request, "erased", ["true", "false"])
        files = selectors.sealed_file_list(user=request.user, model=model,
                                           kind=choice_param(request, "kind", SealedFile.Kind.values),
                                           erased=None if erased is None else erased == "true")
        return self.page(request, files, SealedFileOut)


class DataFileDetailView(FairnessView):
    @extend_schema(operation_id="fairness_data_files_get", responses={200: SealedFileOut, **ERROR_RESPONSES})
    def get(self, request: Request, file_id: str) -> Response:
        return Response(SealedFileOut(selectors.sealed_file_get(user=request.user, file_id=file_id)).data)


class DataFileRetentionView(FairnessView):
    """A risk officer of the model overrides one file's retention date, with a reason."""

    @extend_schema(operation_id="fairness_data_files_retention", request=RetentionIn,
                   parameters=[IDEMPOTENCY_PARAMETER], responses={200: SealedFileOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, file_id: str) -> Response:
        record = selectors.sealed_file_get(user=request.user, file_id=file_id)
        data = _validated(RetentionIn, request)
        record = sealed_file_retention_set(by=request.user, record=record, retention_until=data["retention_until"],
                                           reason=data["reason"])
        return Response(SealedFileOut(record).data)


class DataFileErasureView(FairnessView):
    """An erasure request: the whole file (crypto-shredded), or with `column` and `value` a person's
    rows (the file is rewritten without them under a new key; the answer is the rewrite)."""

    @extend_schema(operation_id="fairness_data_files_erase", request=ErasureIn,
                   parameters=[IDEMPOTENCY_PARAMETER], responses={200: SealedFileOut, **ERROR_RESPONSES})
    @idempotent
    def post(self, request: Request, file_id: str) -> Response:
        record = selectors.sealed_file_get(user=request.user, file_id=file_id)
        data = _validated(ErasureIn, request)
        if ("column" in data) != ("value" in data):
            raise InvalidInput("Give both 'column' and 'value' (a person's rows) or neither (the whole file).",
                               code="data_bad_erasure")
        if "column" in data:
            record = sealed_file_erase_rows(by=request.user, record=record, column=data["column"],
                                            value=data["value"], request_ref=data["request"])
        else:
            record = sealed_file_erase(by=request.user, record=record, reason="erasure_request",
                                       request_ref=data["request"])
        return Response(SealedFileOut(record).data)


class DataFileDownloadView(FairnessView):
    """The decrypted file, streamed in chunks and never cached; the read is recorded in the ledger."""

    @extend_schema(operation_id="fairness_data_files_download",
                   responses={(200, "text/csv"): bytes, (200, "application/octet-stream"): bytes,
                              410: ERROR_RESPONSES[404], **ERROR_RESPONSES})
    def get(self, request: Request, file_id: str) -> StreamingHttpResponse:
        record = selectors.sealed_file_get(user=request.user, file_id=file_id)
        path = sealed_file_download(by=request.user, record=record)

        def chunks() -> Any:
            with path.open() as handle:
                while chunk := handle.read(DOWNLOAD_CHUNK_BYTES):
                    yield chunk

        content_type = "text/csv" if record.file_format == "csv" else "application/octet-stream"
        response = StreamingHttpResponse(chunks(), content_type=content_type)
        response["Cache-Control"] = "no-store"
        response["Content-Disposition"] = f'attachment; filename="{record.file_id}.{record.file_format}"'
        return response
