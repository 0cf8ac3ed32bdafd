"""Lineage REST API: datasets, versions, runs, graph queries, pipeline keys and attestations (thin views).

Every write calls one service (one transaction with its ledger entry and attestation). Every POST
accepts an `Idempotency-Key` (core.idempotency): a retry with the same key and body replays the first
response and writes nothing.
Permissions are Django model permissions, checked per HTTP method; anything unlisted is denied.
Reads then go through the selectors with the requesting user, so nodes naming a governed record
the user may not see (another team's model version), and another team's datasets, runs, keys and
attestations, are not found (`lineage.visibility`); writes are the owner team's (the services).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ERROR_RESPONSES, PaginatedView, int_param, paginated
from core.errors import InvalidInput
from core.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from lineage import attestations as statements
from lineage import graph, openlineage, selectors
from lineage.models import DATASET_VERSION_REF, RUN_REF, Attestation, Dataset, DatasetVersion, LineageNode, TrainingRun
from lineage.services import attestations as attestation_services
from lineage.services import datasets as dataset_services
from lineage.services import keys as key_services
from lineage.services import runs as run_services


class LineageModelPermission(BasePermission):
    """Deny by default: the view lists, per HTTP method, the model permissions a user must hold."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        required = getattr(view, "required_perms", {}).get(request.method)
        if required is None:
            return request.method in ("HEAD", "OPTIONS") and bool(getattr(view, "required_perms", {}).get("GET")) \
                and user.has_perms(view.required_perms["GET"])  # type: ignore[attr-defined]
        return bool(user.has_perms(required))


class LineageApi(PaginatedView):
    permission_classes = [LineageModelPermission]
    required_perms: dict[str, list[str]] = {}


def _invalid(serializer: serializers.Serializer) -> InvalidInput:
    fields = serializer.errors
    first = next(iter(fields), "body")
    return InvalidInput(f"Field '{first}' is not valid.", code="invalid_input",
                        extra={"field": first, "fields": fields})


def _validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput("The body must be a JSON object.", code="invalid_input", extra={"field": "body"})
    problem = statements.unstorable_reason(data)
    if problem is not None:
        raise InvalidInput(f"Field '{problem[0]}' {problem[1]}.", code="invalid_input", extra={"field": problem[0]})
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise _invalid(serializer)
    return dict(serializer.validated_data)


# --- Output serializers -----------------------------------------------------------------------

class DatasetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Dataset
        fields = ["id", "namespace", "name", "description", "owner_team", "created_by", "created_at"]


class DatasetVersionSerializer(serializers.ModelSerializer):
    node = serializers.IntegerField(source="node_id")
    attestations = serializers.SerializerMethodField()

    class Meta:
        model = DatasetVersion
        fields = ["id", "dataset", "version", "location_uri", "digest", "digest_kind", "manifest", "schema",
                  "row_count", "time_range_start", "time_range_end", "sensitive_data_notes", "node", "created_by",
                  "created_at", "attestations"]

    def get_attestations(self, version: DatasetVersion) -> list[int]:
        return [att.pk for att in selectors.attestations_for_subject((DATASET_VERSION_REF, str(version.pk)),
                                                                     user=self.context.get("user"))]


class TrainingRunSerializer(serializers.ModelSerializer):
    node = serializers.IntegerField(source="node_id")
    inputs = serializers.SerializerMethodField()
    outputs = serializers.SerializerMethodField()
    attestations = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = ["id", "job_namespace", "job_name", "external_run_id", "code_repository", "code_commit",
                  "parameters", "environment", "started_at", "ended_at", "status", "actor", "owner_team", "node", "inputs",
                  "outputs", "attestations", "created_at"]

    def _io(self, run: TrainingRun) -> tuple[list[LineageNode], list[LineageNode]]:
        cache = getattr(self, "_io_cache", {})
        if run.pk not in cache:
            cache[run.pk] = selectors.run_io(run, user=self.context.get("user"))
            self._io_cache = cache
        return cache[run.pk]

    def get_inputs(self, run: TrainingRun) -> list[dict[str, Any]]:
        return [selectors.node_document(node) for node in self._io(run)[0]]

    def get_outputs(self, run: TrainingRun) -> list[dict[str, Any]]:
        return [selectors.node_document(node) for node in self._io(run)[1]]

    def get_attestations(self, run: TrainingRun) -> list[int]:
        return [att.pk for att in selectors.attestations_for_subject((RUN_REF, str(run.pk)), user=self.context.get("user"))]


class AttestationSummarySerializer(serializers.ModelSerializer):
    subjects = serializers.SerializerMethodField()
    envelope_url = serializers.SerializerMethodField()

    class Meta:
        model = Attestation
        fields = ["id", "origin", "keyid", "payload_type", "predicate_type", "envelope_sha256", "submitted_by",
                  "owner_team", "created_at", "subjects", "envelope_url"]

    def get_subjects(self, attestation: Attestation) -> list[dict[str, Any]]:
        return [{"name": s.name, "digest": {"sha256": s.sha256}, "node": s.node_id}
                for s in attestation.subjects.all()]

    def get_envelope_url(self, attestation: Attestation) -> str:
        return f"/api/lineage/attestations/{attestation.pk}/"


class KeySerializer(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True, help_text="pipeline key id (null for server keys)")
    keyid = serializers.CharField(help_text="DSSE keyid: hex SHA-256 of the raw Ed25519 public key")
    kind = serializers.CharField()
    owner = serializers.CharField()
    owner_team = serializers.CharField(help_text='the team the key belongs to ("team:<name>"; empty for server keys)')
    public_key_pem = serializers.CharField()
    algorithm = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)


# --- Input serializers ------------------------------------------------------------------------

OWNER_TEAM_HELP = 'the team the record belongs to ("team:<name>"); needed only by those who record for several'


class DatasetInput(serializers.Serializer):
    owner_team = serializers.CharField(max_length=200, required=False, help_text=OWNER_TEAM_HELP)
    namespace = serializers.CharField(max_length=300, allow_blank=True, default="")
    name = serializers.CharField(max_length=500)
    description = serializers.CharField(allow_blank=True, default="")


class SchemaColumnInput(serializers.Serializer):
    name = serializers.CharField(max_length=300)
    type = serializers.CharField(max_length=100, allow_blank=True, default="")


class DatasetVersionInput(serializers.Serializer):
    location_uri = serializers.CharField(max_length=2000)
    digest = serializers.RegexField(r"^[0-9a-f]{64}$", required=False, help_text="sha256 hex of the bytes")
    manifest = serializers.DictField(child=serializers.RegexField(r"^[0-9a-f]{64}$"), required=False,
                                     help_text="folder: {relative path: sha256 hex}")
    content_base64 = serializers.CharField(required=False, help_text="small files: the bytes, base64")
    version = serializers.CharField(max_length=200, allow_blank=True, default="")
    schema = SchemaColumnInput(many=True, required=False)
    row_count = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    time_range_start = serializers.DateTimeField(required=False, allow_null=True)
    time_range_end = serializers.DateTimeField(required=False, allow_null=True)
    sensitive_data_notes = serializers.CharField(allow_blank=True, default="")
    derived_from = serializers.ListField(child=serializers.JSONField(), required=False, max_length=100,
                                         help_text="parent dataset version ids or sha256 digests")


class ArtifactInput(serializers.Serializer):
    uri = serializers.CharField(max_length=2000)
    digest = serializers.RegexField(r"^[0-9a-f]{64}$")
    label = serializers.CharField(max_length=300, allow_blank=True, default="")


class RunOutputsInput(serializers.Serializer):
    dataset_versions = serializers.ListField(child=serializers.JSONField(), required=False, max_length=1000)
    artifacts = ArtifactInput(many=True, required=False)


class TrainingRunInput(serializers.Serializer):
    owner_team = serializers.CharField(max_length=200, required=False, help_text=OWNER_TEAM_HELP)
    job_name = serializers.CharField(max_length=500)
    job_namespace = serializers.CharField(max_length=300, allow_blank=True, default="")
    code_repository = serializers.CharField(max_length=1000, allow_blank=True, default="")
    code_commit = serializers.CharField(max_length=200, allow_blank=True, default="")
    parameters = serializers.DictField(required=False, default=dict)
    environment = serializers.DictField(required=False, default=dict, help_text="package -> version")
    started_at = serializers.DateTimeField(required=False, allow_null=True)
    ended_at = serializers.DateTimeField(required=False, allow_null=True)
    status = serializers.ChoiceField(choices=TrainingRun.Status.choices, default=TrainingRun.Status.COMPLETED)
    inputs = serializers.ListField(child=serializers.JSONField(), required=False, max_length=1000,
                                   help_text="dataset version ids or sha256 digests")
    outputs = RunOutputsInput(required=False)


class PipelineKeyInput(serializers.Serializer):
    owner_team = serializers.CharField(max_length=200, required=False, help_text=OWNER_TEAM_HELP)
    public_key = serializers.CharField(max_length=4000, help_text="PEM (SubjectPublicKeyInfo) or base64 raw 32 bytes")
    name = serializers.CharField(max_length=200, allow_blank=True, default="")


# --- Views ------------------------------------------------------------------------------------

class DatasetListApi(LineageApi):
    required_perms = {"GET": ["lineage.view_dataset"], "POST": ["lineage.add_dataset"]}

    @extend_schema(responses={200: paginated("PaginatedDatasetList", DatasetSerializer(many=True)), **ERROR_RESPONSES},
                   operation_id="lineage_datasets_list")
    def get(self, request: Request) -> Response:
        return self.page(request, selectors.dataset_list(user=request.user), DatasetSerializer)

    @extend_schema(request=DatasetInput, responses={201: DatasetSerializer, 200: DatasetSerializer, **ERROR_RESPONSES},
                   operation_id="lineage_datasets_create", parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request: Request) -> Response:
        data = _validated(DatasetInput, request.data)
        dataset, created = dataset_services.dataset_create(actor=request.user, **data)
        return Response(DatasetSerializer(dataset).data, status=201 if created else 200)


class DatasetDetailApi(LineageApi):
    required_perms = {"GET": ["lineage.view_dataset"]}

    @extend_schema(responses={200: DatasetSerializer, **ERROR_RESPONSES}, operation_id="lineage_datasets_retrieve")
    def get(self, request: Request, dataset_id: int) -> Response:
        return Response(DatasetSerializer(selectors.dataset_get(dataset_id=dataset_id, user=request.user)).data)


class DatasetVersionListApi(LineageApi):
    required_perms = {"GET": ["lineage.view_datasetversion"], "POST": ["lineage.add_datasetversion"]}

    @extend_schema(responses={200: paginated("PaginatedDatasetVersionList", DatasetVersionSerializer(many=True)),
                              **ERROR_RESPONSES},
                   operation_id="lineage_dataset_versions_list")
    def get(self, request: Request, dataset_id: int) -> Response:
        dataset = selectors.dataset_get(dataset_id=dataset_id, user=request.user)
        return self.page(request, selectors.dataset_version_list(dataset=dataset), DatasetVersionSerializer,
                         context={"user": request.user})

    @extend_schema(request=DatasetVersionInput,
                   responses={201: DatasetVersionSerializer, 200: DatasetVersionSerializer, **ERROR_RESPONSES},
                   operation_id="lineage_dataset_versions_create", parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request: Request, dataset_id: int) -> Response:
        dataset = selectors.dataset_get(dataset_id=dataset_id, user=request.user)
        data = _validated(DatasetVersionInput, request.data)
        content = None
        if "content_base64" in data:
            try:
                content = base64.b64decode(data["content_base64"], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput("content_base64 is not base64.", code="invalid_input",
                                   extra={"field": "content_base64"})
        parents = selectors.dataset_versions_resolve(data.get("derived_from", []), field="derived_from",
                                                     user=request.user)
        spec = dataset_services.VersionSpec(
            location_uri=data["location_uri"], digest=data.get("digest"), content=content,
            manifest=data.get("manifest"), version=data["version"], schema=data.get("schema", []),
            row_count=data.get("row_count"), time_range_start=data.get("time_range_start"),
            time_range_end=data.get("time_range_end"), sensitive_data_notes=data["sensitive_data_notes"])
        version, created = dataset_services.dataset_version_register(dataset=dataset, spec=spec, derived_from=parents,
                                                             actor=request.user)
        return Response(DatasetVersionSerializer(version, context={"user": request.user}).data, status=201 if created else 200)


class DatasetVersionDetailApi(LineageApi):
    required_perms = {"GET": ["lineage.view_datasetversion"]}

    @extend_schema(responses={200: DatasetVersionSerializer, **ERROR_RESPONSES},
                   operation_id="lineage_dataset_versions_retrieve")
    def get(self, request: Request, dataset_id: int, version_id: int) -> Response:
        version = selectors.dataset_version_get(version_id=version_id, dataset_id=dataset_id, user=request.user)
        return Response(DatasetVersionSerializer(version, context={"user": request.user}).data)


class TrainingRunListApi(LineageApi):
    required_perms = {"GET": ["lineage.view_trainingrun"], "POST": ["lineage.add_trainingrun"]}

    @extend_schema(responses={200: paginated("PaginatedTrainingRunList", TrainingRunSerializer(many=True)), **ERROR_RESPONSES},
                   operation_id="lineage_runs_list")
    def get(self, request: Request) -> Response:
        return self.page(request, selectors.training_run_list(user=request.user), TrainingRunSerializer,
                         context={"user": request.user})

    @extend_schema(request=TrainingRunInput, responses={201: TrainingRunSerializer, **ERROR_RESPONSES},
                   operation_id="lineage_runs_create", parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request: Request) -> Response:
        data = _validated(TrainingRunInput, request.data)
        outputs = data.get("outputs") or {}
        run = run_services.training_run_record(
            job_name=data["job_name"], job_namespace=data["job_namespace"], code_repository=data["code_repository"],
            code_commit=data["code_commit"], parameters=data["parameters"], environment=data["environment"],
            started_at=data.get("started_at"), ended_at=data.get("ended_at"), status=data["status"],
            inputs=selectors.dataset_versions_resolve(data.get("inputs", []), field="inputs", user=request.user),
            output_versions=selectors.dataset_versions_resolve(outputs.get("dataset_versions", []),
                                                               field="outputs.dataset_versions", user=request.user),
            artifacts=[run_services.ArtifactSpec(**item) for item in outputs.get("artifacts", [])],
            actor=request.user, owner_team=data.get("owner_team"))
        return Response(TrainingRunSerializer(run, context={"user": request.user}).data, status=status.HTTP_201_CREATED)


class TrainingRunDetailApi(LineageApi):
    required_perms = {"GET": ["lineage.view_trainingrun"]}

    @extend_schema(responses={200: TrainingRunSerializer, **ERROR_RESPONSES}, operation_id="lineage_runs_retrieve")
    def get(self, request: Request, run_id: int) -> Response:
        run = selectors.training_run_get(run_id=run_id, user=request.user)
        return Response(TrainingRunSerializer(run, context={"user": request.user}).data)


class GraphApi(LineageApi):
    required_perms = {"GET": ["lineage.view_lineagenode"]}

    @extend_schema(parameters=[
        OpenApiParameter("node", str, required=True,
                         description="node:<id>, dataset_version:<id>, run:<id>, model_version:<type>:<id>, ..."),
        OpenApiParameter("direction", str, enum=list(graph.DIRECTIONS)),
        OpenApiParameter("depth", int)], responses={200: OpenApiTypes.OBJECT, **ERROR_RESPONSES},
        operation_id="lineage_graph")
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("node", "")
        kind, sep, ref = raw.partition(":")
        if not sep or not ref:
            raise InvalidInput("Query parameter 'node' must look like <kind>:<id>.", code="invalid_parameter",
                               extra={"parameter": "node"})
        direction = request.query_params.get("direction", graph.UPSTREAM)
        if direction not in graph.DIRECTIONS:
            raise InvalidInput("direction must be upstream, downstream or both.", code="invalid_parameter",
                               extra={"parameter": "direction"})
        depth = int_param(request, "depth", default=3, minimum=0, maximum=graph.MAX_DEPTH)
        node = selectors.node_for_ref(kind=kind, ref=ref, user=request.user)
        return Response(selectors.lineage_graph(node=node, direction=direction, depth=depth, user=request.user))


class NodeDetailApi(LineageApi):
    required_perms = {"GET": ["lineage.view_lineagenode"]}

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **ERROR_RESPONSES}, operation_id="lineage_nodes_retrieve")
    def get(self, request: Request, node_id: int) -> Response:
        node = selectors.node_get(node_id=node_id, user=request.user)
        document = selectors.node_document(node)
        document["record_url"] = selectors.record_url(node)
        document["attestations"] = AttestationSummarySerializer(
            selectors.attestations_for_subject((node.ref_type, node.ref_id), user=request.user), many=True).data
        return Response(document)


class KeyListApi(LineageApi):
    required_perms = {"GET": ["lineage.view_pipelinekey"], "POST": ["lineage.add_pipelinekey"]}

    @extend_schema(responses={200: KeySerializer(many=True), **ERROR_RESPONSES}, operation_id="lineage_keys_list")
    def get(self, request: Request) -> Response:
        return Response(KeySerializer(selectors.key_list(user=request.user), many=True).data)

    @extend_schema(request=PipelineKeyInput, responses={201: KeySerializer, **ERROR_RESPONSES},
                   operation_id="lineage_keys_register", parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request: Request) -> Response:
        data = _validated(PipelineKeyInput, request.data)
        key = key_services.pipeline_key_register(owner=request.user, public_key=data["public_key"], name=data["name"],
                                                 owner_team=data.get("owner_team"))
        row = next(item for item in selectors.key_list(user=request.user) if item["id"] == key.pk)
        return Response(KeySerializer(row).data, status=status.HTTP_201_CREATED)


class KeyRevokeApi(LineageApi):
    required_perms = {"POST": ["lineage.add_pipelinekey"]}

    @extend_schema(request=None, responses={200: KeySerializer, **ERROR_RESPONSES}, operation_id="lineage_keys_revoke",
                   parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request: Request, key_id: int) -> Response:
        key = selectors.pipeline_key_get(key_id=key_id, user=request.user)
        key = key_services.pipeline_key_revoke(key=key, by=request.user)
        row = next(item for item in selectors.key_list(user=request.user) if item["id"] == key.pk)
        return Response(KeySerializer(row).data)


class AttestationListApi(LineageApi):
    required_perms = {"GET": ["lineage.view_attestation"], "POST": ["lineage.add_attestation"]}

    @extend_schema(parameters=[OpenApiParameter("subject_type", str), OpenApiParameter("subject_id", str),
                               OpenApiParameter("upstream", bool)],
                   # with subject_type and subject_id: a plain list; otherwise a page
                   responses={200: PolymorphicProxySerializer(
                       component_name="AttestationListOrPage", resource_type_field_name=None, many=False,
                       serializers=[AttestationSummarySerializer(many=True),
                                    paginated("PaginatedAttestationSummaryList", AttestationSummarySerializer(many=True))]),
                              **ERROR_RESPONSES},
                   operation_id="lineage_attestations_list")
    def get(self, request: Request) -> Response:
        subject_type = request.query_params.get("subject_type")
        subject_id = request.query_params.get("subject_id")
        if subject_type and subject_id:
            subject = (subject_type, subject_id)
            upstream = request.query_params.get("upstream", "").lower() in ("1", "true", "yes")
            found = (selectors.attestations_upstream(subject, user=request.user) if upstream
                     else selectors.attestations_for_subject(subject, user=request.user))
            return Response(AttestationSummarySerializer(found, many=True).data)
        return self.page(request, selectors.attestation_list(user=request.user), AttestationSummarySerializer)

    @extend_schema(request={"application/json": OpenApiTypes.OBJECT},
                   responses={201: AttestationSummarySerializer, 200: AttestationSummarySerializer,
                              **ERROR_RESPONSES},
                   operation_id="lineage_attestations_submit", parameters=[IDEMPOTENCY_PARAMETER],
                   description="Body: a DSSE envelope (JSON) signed by one of your registered pipeline keys.")
    @idempotent
    def post(self, request: Request) -> Response:
        attestation, created = attestation_services.attestation_submit(envelope_bytes=request.body,
                                                                       submitted_by=request.user)
        return Response(AttestationSummarySerializer(attestation).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class AttestationEnvelopeApi(LineageApi):
    required_perms = {"GET": ["lineage.view_attestation"]}

    @extend_schema(responses={(200, "application/json"): OpenApiTypes.OBJECT, **ERROR_RESPONSES},
                   operation_id="lineage_attestations_envelope")
    def get(self, request: Request, attestation_id: int) -> HttpResponse:
        attestation = selectors.attestation_get(attestation_id=attestation_id, user=request.user)
        response = HttpResponse(bytes(attestation.envelope), content_type="application/json")
        response["Digest"] = f"sha-256={base64.b64encode(bytes.fromhex(attestation.envelope_sha256)).decode()}"
        return response


class OpenLineageApi(LineageApi):
    """`POST /api/v1/lineage`: what the official OpenLineage clients send to an HTTP backend."""

    required_perms = {"POST": ["lineage.add_trainingrun", "lineage.add_datasetversion", "lineage.add_dataset"]}

    @extend_schema(request={"application/json": OpenApiTypes.OBJECT},
                   responses={201: OpenApiTypes.OBJECT, **ERROR_RESPONSES}, operation_id="openlineage_ingest",
                   parameters=[IDEMPOTENCY_PARAMETER],
                   description="An OpenLineage RunEvent, DatasetEvent or JobEvent (spec 2-0-x); gzip accepted.")
    @idempotent
    def post(self, request: Request) -> Response:
        from django.conf import settings

        max_bytes = settings.OPENLINEAGE_MAX_EVENT_BYTES
        body = openlineage.decode_body(request.body, content_encoding=request.headers.get("Content-Encoding", ""),
                                       max_bytes=max_bytes)
        result, duplicate = openlineage.openlineage_event_ingest(body=body, actor=request.user)
        return Response({**result, "duplicate": duplicate}, status=status.HTTP_201_CREATED)
