"""`Idempotency-Key` for POST endpoints: a retry replays the first response and writes nothing.

The record (key, user, method, path, SHA-256 of the body, response status and body) is stored
in the same transaction as the write it answers, so a request that fails stores nothing and
can be retried with the same key. The same key with a different body, method or path is
refused with 409 `idempotency_key_reused`. Keys are scoped per user.

Wire it with `@idempotent` on a view's `post` and `parameters=[IDEMPOTENCY_PARAMETER]` in its
`extend_schema`. Records live in the model named by `settings.IDEMPOTENCY_RECORD_MODEL` (fields
user, key, method, path, body_sha256, response_status, response_body; unique on user and key).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import rfc8785
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, models, transaction
from django.http.request import RawPostDataException
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import Conflict, InvalidInput

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 200
REPLAY_HEADER = "Idempotent-Replayed"

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    HEADER, str, OpenApiParameter.HEADER, required=False,
    description="Retry-safe key: the same key and body replay the first response; a different body gets 409.")


def _record_model() -> type[models.Model]:
    """The model that stores responses: `settings.IDEMPOTENCY_RECORD_MODEL` ("app_label.ModelName")."""
    name = getattr(settings, "IDEMPOTENCY_RECORD_MODEL", "")
    if not name:
        raise ImproperlyConfigured("IDEMPOTENCY_RECORD_MODEL must name the model that stores idempotent responses.")
    return apps.get_model(name)


def _body_sha256(request: Request) -> str:
    try:
        raw = request.body
    except RawPostDataException:  # the stream was already read: hash the parsed data canonically
        raw = rfc8785.dumps(json.loads(json.dumps(request.data, cls=DjangoJSONEncoder)))
    return hashlib.sha256(raw).hexdigest()


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_CHARS and key.isascii() and key.isprintable()


def _replay(request: Request, key: str, body_sha256: str, path: str) -> Response:
    previous = _record_model()._default_manager.filter(user=request.user, key=key).first()
    if previous is None or previous.response_status == 0:
        raise Conflict(f"A request with this {HEADER} is being processed; retry later.",
                       code="idempotency_key_in_flight", extra={"key": key})
    if (previous.body_sha256, previous.method, previous.path) != (body_sha256, request.method, path):
        raise Conflict(f"This {HEADER} was used for a different request.", code="idempotency_key_reused",
                       extra={"key": key})
    return Response(previous.response_body, status=previous.response_status, headers={REPLAY_HEADER: "true"})


def idempotent(view_method: Callable[..., Response]) -> Callable[..., Response]:
    """Wrap a DRF view's `post`: the whole handler runs in one transaction, keyed or not."""

    @functools.wraps(view_method)
    def wrapper(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            with transaction.atomic():
                return view_method(self, request, *args, **kwargs)
        if not _valid_key(key):
            raise InvalidInput(f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable ASCII characters.",
                               code="idempotency_key_invalid")
        body_sha256 = _body_sha256(request)
        path = request.path[:1000]
        with transaction.atomic():
            # Claim the key first: a concurrent request with the same key waits on the unique index
            # until this transaction ends, then finds the stored response and replays it.
            try:
                with transaction.atomic():
                    record = _record_model()._default_manager.create(
                        user=request.user, key=key, method=request.method, path=path, body_sha256=body_sha256,
                        response_status=0, response_body=None)
            except IntegrityError:
                return _replay(request, key, body_sha256, path)
            response = view_method(self, request, *args, **kwargs)
            if response.status_code >= 500:
                transaction.set_rollback(True)
                return response
            record.response_status = response.status_code
            record.response_body = json.loads(json.dumps(response.data, cls=DjangoJSONEncoder))
            record.save(update_fields=["response_status", "response_body"])
            return response

    return wrapper


def idempotency_records_purge(*, now: datetime | None = None) -> int:
    """Delete stored POST responses past their retention; a retry after that is a new request."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.IDEMPOTENCY_RETENTION_HOURS)
    deleted, _ = _record_model()._default_manager.filter(created_at__lt=cutoff).delete()
    return deleted
