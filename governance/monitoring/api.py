"""Monitoring API: reference profiles, monitors (thresholds as policy), runs, alerts and the trend.

Thin views over services and selectors; a model the caller cannot see answers 404; every POST accepts an `Idempotency-Key`."""

from __future__ import annotations

import json
from typing import Any

from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ERROR_RESPONSES, paginated
from core.errors import InvalidInput
from core.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from core.ids import object_id
from governance import selectors as governance_selectors
from governance.api.common import GovernanceView
from governance.monitoring import selectors
from governance.monitoring.models import ThresholdChange
from governance.monitoring.services.comparisons import comparison_run
from governance.monitoring.services.monitors import (
    alert_acknowledge,
    monitor_create,
    monitor_run,
    monitor_thresholds_set,
    threshold_change_confirm,
)
from governance.monitoring.services.outcomes import late_outcomes_record
from governance.monitoring.services.profiles import reference_profile_create


class ProfileIn(serializers.Serializer):
    model = serializers.CharField(max_length=100)
    version = serializers.CharField(max_length=64)
    dataset_version = serializers.IntegerField(required=False, allow_null=True, min_value=1, default=None,
                                               help_text="Lineage DatasetVersion id of the reference data")
    columns = serializers.ListField(child=serializers.CharField(max_length=200), required=False, default=list,
                                    max_length=500, help_text="Numeric columns (default: every column)")
    categorical = serializers.ListField(child=serializers.CharField(max_length=200), required=False, default=list,
                                        max_length=500)
    bins = serializers.IntegerField(min_value=2, max_value=100, default=10)


class ProfileOut(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="version.model.name")
    version = serializers.CharField(source="version.label")
    dataset_version = serializers.IntegerField(source="dataset_version_id", allow_null=True)
    source_sha256 = serializers.CharField()
    profile_sha256 = serializers.CharField()
    columns = serializers.ListField(child=serializers.DictField())
    bins = serializers.IntegerField()
    row_count = serializers.IntegerField()
    engine_version = serializers.CharField()
    frozen_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class ProfileDetailOut(ProfileOut):
    summary = serializers.ListField(child=serializers.DictField())


def _data(request: Request) -> dict[str, Any]:
    if isinstance(request.data, QueryDict):  # multipart: the fields travel as JSON in 'profile' next to the file
        raw = request.data.get("profile") or "{}"
        try:
            parsed = json.loads(raw)
        except ValueError as error:
            raise InvalidInput("'profile' must be a JSON object.", code="invalid_input") from error
        if not isinstance(parsed, dict):
            raise InvalidInput("'profile' must be a JSON object.", code="invalid_input")
        return parsed
    if not isinstance(request.data, dict):
        raise InvalidInput("The request body must be a JSON object.", code="invalid_input")
    return dict(request.data)


class ProfileListView(GovernanceView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(operation_id="monitoring_profiles_list",
                   responses={200: paginated("ReferenceProfilePage", ProfileOut(many=True)), **ERROR_RESPONSES},
                   parameters=[OpenApiParameter("model", str), OpenApiParameter("version", str)])
    def get(self, request: Request) -> Response:
        profiles = selectors.reference_profile_list(user=request.user, model_name=request.query_params.get("model") or None,
                                                    version_label=request.query_params.get("version") or None)
        return self.page(request, profiles, ProfileOut)

    @extend_schema(operation_id="monitoring_profiles_create", request=ProfileIn,
                   responses={201: ProfileOut, **ERROR_RESPONSES}, parameters=[IDEMPOTENCY_PARAMETER],
                   description="JSON naming a lineage dataset version, or multipart with the fields as a JSON string in "
                               "'profile' and the reference data (CSV or Parquet) in 'file'. A version that has been "
                               "approved keeps its profile (409 monitoring_profile_frozen).")
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = ProfileIn(data=_data(request))
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        version = governance_selectors.model_version_get(user=request.user, model_name=data["model"], label=data["version"])
        dataset_version = None
        if data["dataset_version"] is not None:
            from lineage import selectors as lineage_selectors

            # Team-scoped like every lineage read: another team's dataset version does not exist here.
            dataset_version = lineage_selectors.dataset_version_get(version_id=data["dataset_version"], user=request.user)
        profile = reference_profile_create(by=request.user, version=version, columns=data["columns"] or None,
                                           categorical=data["categorical"] or None, dataset_version=dataset_version,
                                           file=request.FILES.get("file"), bins=data["bins"])
        return Response(ProfileOut(profile).data, status=status.HTTP_201_CREATED)


class ProfileDetailView(GovernanceView):
    @extend_schema(operation_id="monitoring_profiles_get", responses={200: ProfileDetailOut, **ERROR_RESPONSES})
    def get(self, request: Request, profile_id: str) -> Response:
        profile = selectors.reference_profile_get(user=request.user,
                                                  profile_id=object_id(profile_id, code="monitoring_profile_not_found"))
        return Response(ProfileDetailOut(profile).data)


# --- monitors, runs, alerts -----------------------------------------------------------------

class MonitorIn(serializers.Serializer):
    model = serializers.CharField(max_length=100)
    version = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=200, required=False, default="")
    window_days = serializers.IntegerField(min_value=1, max_value=3650, default=7)
    y_true = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    y_pred = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    score = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    task = serializers.ChoiceField(choices=["classification", "regression"], default="classification")
    thresholds = serializers.DictField(required=False, allow_null=True, default=None,
                                       help_text="Policy: only risk officers set them")


class MonitorOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    model = serializers.CharField(source="version.model.name")
    version = serializers.CharField(source="version.label")
    window_days = serializers.IntegerField()
    y_true = serializers.CharField()
    y_pred = serializers.CharField()
    score = serializers.CharField()
    task = serializers.CharField()
    thresholds = serializers.DictField()
    created_at = serializers.DateTimeField()


class ThresholdsIn(serializers.Serializer):
    thresholds = serializers.DictField()
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class ThresholdChangeOut(serializers.Serializer):
    id = serializers.IntegerField()
    monitor = serializers.IntegerField(source="monitor_id")
    old = serializers.DictField()
    new = serializers.DictField()
    status = serializers.CharField()
    proposed_by = serializers.CharField(source="proposed_by.username")


class RunOut(serializers.Serializer):
    id = serializers.IntegerField()
    monitor = serializers.IntegerField(source="monitor_id")
    profile_sha256 = serializers.CharField(source="profile.profile_sha256")
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    batches = serializers.ListField(child=serializers.DictField())
    result_sha256 = serializers.CharField()
    breached = serializers.BooleanField()
    ledger_seq = serializers.IntegerField(allow_null=True)
    restates = serializers.IntegerField(source="restates_id", allow_null=True,
                                        help_text="The run this one restates (late outcomes arrived)")
    result = serializers.DictField()
    input_erasure = serializers.SerializerMethodField(
        help_text="Set once a batch or the profile this run read was erased: 'input erased under retention policy'")

    @extend_schema_field(serializers.DictField(allow_null=True))
    def get_input_erasure(self, run: Any) -> dict[str, Any] | None:
        return selectors.monitor_run_input_erasure(run)


class AlertOut(serializers.Serializer):
    id = serializers.IntegerField()
    monitor = serializers.IntegerField(source="monitor_id")
    model = serializers.CharField(source="monitor.version.model.name")
    version = serializers.CharField(source="monitor.version.label")
    run = serializers.IntegerField(source="run_id")
    kind = serializers.CharField()
    subject = serializers.CharField()
    detail = serializers.DictField()
    status = serializers.CharField()
    comment = serializers.CharField()
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    reapproval = serializers.IntegerField(source="reapproval_id", allow_null=True,
                                          help_text="The approval request (a re-approval of the version) the alert "
                                                    "opened or joined, per the monitor's `reapprove_on_alert`")
    created_at = serializers.DateTimeField()


class AcknowledgeIn(serializers.Serializer):
    comment = serializers.CharField(max_length=5000)


class MonitoringTrendOut(serializers.Serializer):
    monitor = serializers.IntegerField()
    points = serializers.ListField(child=serializers.DictField())


def _json(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise InvalidInput("The request body must be a JSON object.", code="invalid_input")
    return dict(request.data)


class MonitorListView(GovernanceView):
    @extend_schema(operation_id="monitoring_monitors_list",
                   responses={200: paginated("MonitorPage", MonitorOut(many=True)), **ERROR_RESPONSES},
                   parameters=[OpenApiParameter("model", str)])
    def get(self, request: Request) -> Response:
        monitors = selectors.monitor_list(user=request.user, model_name=request.query_params.get("model") or None)
        return self.page(request, monitors, MonitorOut)

    @extend_schema(operation_id="monitoring_monitors_create", request=MonitorIn,
                   responses={201: MonitorOut, **ERROR_RESPONSES}, parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = MonitorIn(data=_json(request))
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        version = governance_selectors.model_version_get(user=request.user, model_name=data.pop("model"),
                                                         label=data.pop("version"))
        monitor = monitor_create(by=request.user, version=version, **data)
        return Response(MonitorOut(monitor).data, status=status.HTTP_201_CREATED)


class MonitorThresholdsView(GovernanceView):
    @extend_schema(operation_id="monitoring_monitors_thresholds_set", request=ThresholdsIn,
                   responses={200: MonitorOut, 202: ThresholdChangeOut, **ERROR_RESPONSES},
                   parameters=[IDEMPOTENCY_PARAMETER],
                   description="Risk officers only. A tightening applies (200); a weakening waits for a second risk "
                               "officer (202, a threshold change to confirm).")
    @idempotent
    def post(self, request: Request, monitor_id: str) -> Response:
        monitor = selectors.monitor_get(user=request.user, monitor_id=object_id(monitor_id, code="monitoring_monitor_not_found"))
        serializer = ThresholdsIn(data=_json(request))
        serializer.is_valid(raise_exception=True)
        outcome = monitor_thresholds_set(monitor=monitor, by=request.user, **serializer.validated_data)
        if isinstance(outcome, ThresholdChange):
            return Response(ThresholdChangeOut(outcome).data, status=status.HTTP_202_ACCEPTED)
        return Response(MonitorOut(outcome).data)


class ThresholdChangeConfirmView(GovernanceView):
    @extend_schema(operation_id="monitoring_threshold_changes_confirm", request=None,
                   responses={200: MonitorOut, **ERROR_RESPONSES}, parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request: Request, change_id: str) -> Response:
        change = selectors.threshold_change_get(user=request.user,
                                                change_id=object_id(change_id, code="monitoring_monitor_not_found"))
        return Response(MonitorOut(threshold_change_confirm(change=change, by=request.user)).data)


class MonitorRunView(GovernanceView):
    @extend_schema(operation_id="monitoring_runs_list", responses={200: paginated("MonitorRunPage", RunOut(many=True)),
                                                                   **ERROR_RESPONSES})
    def get(self, request: Request, monitor_id: str) -> Response:
        monitor = selectors.monitor_get(user=request.user, monitor_id=object_id(monitor_id, code="monitoring_monitor_not_found"))
        return self.page(request, selectors.monitor_run_list(user=request.user, monitor_id=monitor.pk), RunOut)

    @extend_schema(operation_id="monitoring_runs_create", request=None, responses={201: RunOut, **ERROR_RESPONSES},
                   parameters=[IDEMPOTENCY_PARAMETER], description="Run the monitor now over its window.")
    @idempotent
    def post(self, request: Request, monitor_id: str) -> Response:
        monitor = selectors.monitor_get(user=request.user, monitor_id=object_id(monitor_id, code="monitoring_monitor_not_found"))
        return Response(RunOut(monitor_run(monitor=monitor, by=request.user)).data, status=status.HTTP_201_CREATED)


class AlertListView(GovernanceView):
    @extend_schema(operation_id="monitoring_alerts_list", responses={200: paginated("AlertPage", AlertOut(many=True)),
                                                                     **ERROR_RESPONSES},
                   parameters=[OpenApiParameter("status", str, enum=["open", "acknowledged"]), OpenApiParameter("model", str)])
    def get(self, request: Request) -> Response:
        wanted = request.query_params.get("status") or None
        if wanted and wanted not in ("open", "acknowledged"):
            raise InvalidInput("Query parameter 'status' must be open or acknowledged.", code="invalid_parameter",
                               extra={"parameter": "status"})
        alerts = selectors.alert_list(user=request.user, status=wanted, model_name=request.query_params.get("model") or None)
        return self.page(request, alerts, AlertOut)


class AlertAcknowledgeView(GovernanceView):
    @extend_schema(operation_id="monitoring_alerts_acknowledge", request=AcknowledgeIn,
                   responses={200: AlertOut, **ERROR_RESPONSES}, parameters=[IDEMPOTENCY_PARAMETER])
    @idempotent
    def post(self, request: Request, alert_id: str) -> Response:
        alert = selectors.alert_get(user=request.user, alert_id=object_id(alert_id, code="monitoring_alert_not_found"))
        serializer = AcknowledgeIn(data=_json(request))
        serializer.is_valid(raise_exception=True)
        return Response(AlertOut(alert_acknowledge(alert=alert, by=request.user,
                                                   comment=serializer.validated_data["comment"])).data)


class TrendView(GovernanceView):
    @extend_schema(operation_id="monitoring_trend", responses={200: MonitoringTrendOut, **ERROR_RESPONSES},
                   parameters=[OpenApiParameter("monitor", int, required=True)])
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("monitor") or ""
        monitor = selectors.monitor_get(user=request.user, monitor_id=object_id(raw, code="monitoring_monitor_not_found"))
        return Response({"monitor": monitor.pk, "points": selectors.drift_trend(user=request.user, monitor_id=monitor.pk)})


# --- late outcomes ----------------------------------------------------------------------------

class OutcomeItem(serializers.Serializer):
    prediction_id = serializers.CharField(max_length=200)
    outcome = serializers.FloatField()


class OutcomesIn(serializers.Serializer):
    batch = serializers.IntegerField(min_value=1, help_text="The prediction batch the outcomes belong to")
    id_column = serializers.CharField(max_length=200, default="prediction_id",
                                      help_text="The batch column holding the prediction id")
    outcomes = serializers.ListField(child=OutcomeItem(), min_length=1, max_length=100_000)


class OutcomesOut(serializers.Serializer):
    batch = serializers.IntegerField()
    recorded = serializers.IntegerField()
    ledger_seq = serializers.IntegerField(allow_null=True)
    restatements = RunOut(many=True)


class OutcomesView(GovernanceView):
    @extend_schema(operation_id="monitoring_outcomes_create", request=OutcomesIn,
                   responses={201: OutcomesOut, **ERROR_RESPONSES}, parameters=[IDEMPOTENCY_PARAMETER],
                   description="Outcomes that arrived after their predictions, joined to the batch by prediction id. "
                               "Each latest run over the batch whose monitor measures performance is restated: a new "
                               "run linked to the one it replaces. Unknown id: 400 monitoring_unknown_prediction_id; "
                               "an id twice: 400 monitoring_duplicate_prediction_id; an outcome already recorded: 409 "
                               "monitoring_outcome_exists.")
    @idempotent
    def post(self, request: Request) -> Response:
        raw = _json(request)
        batch = selectors.prediction_batch_get(user=request.user,
                                               batch_id=object_id(str(raw.get("batch", "")), code="monitoring_batch_not_found"))
        serializer = OutcomesIn(data=raw)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # Duplicates are the service's rule (a coded 400), so the raw items go through unchanged.
        rows, restated = late_outcomes_record(by=request.user, batch=batch, id_column=data["id_column"],
                                              outcomes=[dict(item) for item in data["outcomes"]])
        return Response({"batch": batch.pk, "recorded": len(rows), "ledger_seq": rows[0].ledger_seq if rows else None,
                         "restatements": RunOut(restated, many=True).data}, status=status.HTTP_201_CREATED)


# --- champion and challenger ------------------------------------------------------------------

class ComparisonIn(serializers.Serializer):
    model = serializers.CharField(max_length=100)
    champion = serializers.CharField(max_length=64, help_text="Version label of the champion")
    challenger = serializers.CharField(max_length=64, help_text="Version label of the challenger")
    window_days = serializers.IntegerField(min_value=1, max_value=3650, default=7)
    y_true = serializers.CharField(max_length=200)
    y_pred = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    score = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    task = serializers.ChoiceField(choices=["classification", "regression"], default="classification")
    id_column = serializers.CharField(max_length=200, default="prediction_id",
                                      help_text="The column pairing the rows both versions scored")
    replicates = serializers.IntegerField(min_value=1, max_value=10_000, default=1000)
    seed = serializers.IntegerField(min_value=0, max_value=2**32 - 1, default=0)


class ComparisonOut(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="champion.model.name")
    champion = serializers.CharField(source="champion.label")
    challenger = serializers.CharField(source="challenger.label")
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    batches = serializers.ListField(child=serializers.DictField())
    result = serializers.DictField(help_text="Per metric: champion, challenger, difference (challenger - champion) "
                                             "and its paired bootstrap CI")
    result_sha256 = serializers.CharField()
    ledger_seq = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class ComparisonListView(GovernanceView):
    @extend_schema(operation_id="monitoring_comparisons_list",
                   responses={200: paginated("ComparisonPage", ComparisonOut(many=True)), **ERROR_RESPONSES},
                   parameters=[OpenApiParameter("model", str)])
    def get(self, request: Request) -> Response:
        comparisons = selectors.comparison_list(user=request.user, model_name=request.query_params.get("model") or None)
        return self.page(request, comparisons, ComparisonOut)

    @extend_schema(operation_id="monitoring_comparisons_create", request=ComparisonIn,
                   responses={201: ComparisonOut, **ERROR_RESPONSES}, parameters=[IDEMPOTENCY_PARAMETER],
                   description="Champion and challenger on the same window: the batches each version served, paired "
                               "by prediction id; per metric the difference with a seeded paired bootstrap CI. Stored "
                               "and recorded (comparison.completed) with the digests of batches and result.")
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = ComparisonIn(data=_json(request))
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        model_name = data.pop("model")
        champion = governance_selectors.model_version_get(user=request.user, model_name=model_name,
                                                          label=data.pop("champion"))
        challenger = governance_selectors.model_version_get(user=request.user, model_name=model_name,
                                                            label=data.pop("challenger"))
        comparison = comparison_run(by=request.user, champion=champion, challenger=challenger, **data)
        return Response(ComparisonOut(comparison).data, status=status.HTTP_201_CREATED)
