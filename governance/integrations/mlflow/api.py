"""POST /api/integrations/mlflow/webhook: MLflow's registry webhooks (no session, no token: the HMAC
signature authenticates the sender). A plain Django view, so that the raw body is what is verified."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from core.errors import ServiceError, json_error, surfaced
from governance.integrations.mlflow.services.webhook import mlflow_delivery_receive


@csrf_exempt
@require_POST
def webhook(request: HttpRequest) -> JsonResponse:
    try:
        receipt = mlflow_delivery_receive(headers=request.headers, body=request.body,
                                          connection_name=request.GET.get("connection") or None)
    except ServiceError as exc:
        surfaced(exc)
        return json_error(exc.code, exc.message, exc.status_code, exc.extra)
    return JsonResponse({"delivery_id": receipt.delivery_id, "duplicate": receipt.duplicate, "test": receipt.is_test,
                         "ledger_seq": receipt.ledger_seq}, status=receipt.status)
