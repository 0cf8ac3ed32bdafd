"""Request-level hardening: refuse hostile bodies before any parser sees them, and turn a lost
database into a clear 503 the client can retry.

Why here and not in each view: Python's `json` recurses once per nesting level, so a body of
100,000 `[` raises RecursionError inside DRF's parser (a 500), and JSON text may carry `\\u0000`
or a lone surrogate that PostgreSQL refuses only at INSERT time (another 500). One middleware
closes those doors for every endpoint, present and future. Every refusal uses the one error
format `{"code", "message", "extra"}`.

Codes: `payload_too_large` (413), `invalid_utf8`, `json_too_deep`, `malformed_request_body`,
`invalid_unicode_escape`, `invalid_characters` (400, a NUL in the URL), `database_unavailable` (503, with Retry-After).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

from core.errors import json_error

logger = logging.getLogger(__name__)

DEFAULT_MAX_JSON_DEPTH = 64
RETRY_AFTER_S = 5

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
# A `\u` escape is real when it follows an even run of backslashes (an odd run in total).
_ESCAPE = re.compile(rb"(\\+)u([0-9a-fA-F]{4})")


def json_depth_exceeds(body: bytes, max_depth: int) -> bool | None:
    """True if the JSON text nests deeper than `max_depth`; None if its brackets do not balance.

    Runs in C-speed passes (strip strings, keep brackets, peel innermost pairs), so a 10 MB body
    costs milliseconds and a 100,000-level one costs `max_depth` passes at most.
    """
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not brackets:
            return False
        peeled = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(peeled) == len(brackets):
            return None  # unbalanced or crossed: not JSON
        brackets = peeled
    return bool(brackets)


def bad_unicode_escape(body: bytes) -> str | None:
    """The first `\\u` escape PostgreSQL and UTF-8 cannot store (NUL, a lone surrogate), or None."""
    high_end = -1  # where the last unpaired high-surrogate escape ended
    for match in _ESCAPE.finditer(body):
        if len(match.group(1)) % 2 == 0:
            continue  # `\\u....`: an escaped backslash followed by plain text
        code = int(match.group(2), 16)
        is_low = 0xDC00 <= code <= 0xDFFF
        if high_end >= 0 and not (is_low and match.start() == high_end):
            return "lone high surrogate"
        if is_low and high_end < 0:
            return "lone low surrogate"
        if code == 0:
            return "NUL character"
        high_end = match.end() if 0xD800 <= code <= 0xDBFF else -1
    if high_end >= 0:
        return "lone high surrogate"
    return None


def _is_json(request: HttpRequest) -> bool:
    content_type = (request.META.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
    return content_type == "application/json" or (content_type.startswith("application/") and content_type.endswith("+json"))


def _declared_length(request: HttpRequest) -> int | None:
    raw = request.META.get("CONTENT_LENGTH") or ""
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        return -1


def _wants_json(request: HttpRequest | None) -> bool:
    return request is None or request.path.startswith("/api/") or "json" in request.META.get("HTTP_ACCEPT", "")


def database_unavailable(request: HttpRequest | None = None) -> HttpResponse:
    if _wants_json(request):
        response = json_error("database_unavailable", "The database is unavailable; retry later.", 503)
    else:
        response = HttpResponse("<!doctype html><title>Unavailable</title><h1>Temporarily unavailable</h1>"
                                "<p>The database cannot be reached. Retry in a few seconds.</p>", status=503)
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response


class RequestHardeningMiddleware:
    """Size, encoding and nesting limits on request bodies; 503 when the database is gone.

    Place it right after SecurityMiddleware, before anything reads the body or the session.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = self.refuse(request)
        if refusal is not None:
            return refusal
        return self.get_response(request)

    def refuse(self, request: HttpRequest) -> HttpResponse | None:
        # PostgreSQL cannot compare text with NUL: a %00 in a filter or a path id would be a 500.
        if "\x00" in request.path or "%00" in (request.META.get("QUERY_STRING") or ""):
            return json_error("invalid_characters", "NUL characters are not allowed in URLs.", 400)
        length = _declared_length(request)
        if length is None or length == 0:
            return None
        if length < 0:
            return json_error("malformed_request_body", "Content-Length is not a number.", 400)
        content_type = (request.META.get("CONTENT_TYPE") or "").lower()
        limit = (settings.MAX_UPLOAD_BYTES if content_type.startswith("multipart/form-data")
                 else settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        if limit is not None and length > limit:
            return json_error("payload_too_large", "The request body is too large.", 413,
                              {"max_bytes": limit, "content_length": length})
        if not _is_json(request):
            return None
        encoding = (request.META.get("HTTP_CONTENT_ENCODING") or "identity").strip().lower()
        if encoding not in ("", "identity"):
            return None  # compressed bodies are inflated (with their own bounds) by the view that accepts them
        body = request.body
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return json_error("invalid_utf8", "The JSON body is not valid UTF-8.", 400, {"byte_offset": exc.start})
        max_depth = int(getattr(settings, "MAX_JSON_DEPTH", DEFAULT_MAX_JSON_DEPTH))
        too_deep = json_depth_exceeds(body, max_depth)
        if too_deep is None:
            return json_error("malformed_request_body", "The JSON body's brackets do not balance.", 400)
        if too_deep:
            return json_error("json_too_deep", f"The JSON body nests deeper than {max_depth} levels.", 400,
                              {"max_depth": max_depth})
        problem = bad_unicode_escape(body)
        if problem is not None:
            return json_error("invalid_unicode_escape", f"The JSON body contains an escaped {problem}.", 400)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.warning("database unavailable during %s %s: %s", request.method, request.path,
                           type(exception).__name__)
            return database_unavailable(request)
        return None


def server_error(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """handler500: a lost database anywhere (middleware, session, template) is a 503, not a 500;
    API clients get the one error format, people get the 500 page."""
    import sys

    from django.views import defaults

    exception = sys.exc_info()[1]
    if isinstance(exception, (OperationalError, InterfaceError)):
        return database_unavailable(request)
    if _wants_json(request):
        return json_error("server_error", "Internal error; it has been logged.", 500)
    return defaults.server_error(request)


def not_found(request: HttpRequest, exception: Exception | None = None, *args: Any, **kwargs: Any) -> HttpResponse:
    """handler404: a URL that matches no route is a 404 in the one error format under /api/."""
    from django.views import defaults

    if _wants_json(request):
        return json_error("not_found", "No such resource.", 404)
    return defaults.page_not_found(request, exception or Exception("not found"))
