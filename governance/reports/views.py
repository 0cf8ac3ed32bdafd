"""The verifier, published: `GET /verify.py` serves the repository's file (no sign-in: it is public)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from governance.reports.verifier import verify_py_bytes, verify_py_sha256


@require_GET
def verify_py(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(verify_py_bytes(), content_type="text/x-python; charset=utf-8")
    response["Content-Disposition"] = 'inline; filename="verify.py"'
    response["X-Content-SHA256"] = verify_py_sha256()
    response["X-Content-Type-Options"] = "nosniff"
    return response
