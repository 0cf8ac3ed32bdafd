"""Sign-in: limits with backoff (django-axes, counted in the database) and failures aggregated in the ledger.

Limits. django-axes counts failed sign-ins in its `AccessAttempt` table (one row per username,
address and user agent), so every gunicorn worker sees the same counts. `SignInHandler` applies
three limits to those rows:

- per username at one address: `SIGN_IN_FAILURES_PER_USER_ADDRESS` (axes' `AXES_FAILURE_LIMIT`);
- per address, across usernames: `SIGN_IN_FAILURES_PER_ADDRESS`;
- per username, across addresses: `SIGN_IN_FAILURES_PER_USER`, where each address counts at most
  `SIGN_IN_FAILURES_PER_USER_ADDRESS` failures. So an attacker at one address never locks the user
  out at another; only many addresses together can.

A scope that reaches its limit is refused for `SIGN_IN_COOLOFF_S`, doubled by every further failure
in that scope (up to `SIGN_IN_COOLOFF_MAX_S`): a backoff, not a permanent lockout. Every counted
attempt expires on its own (axes' attempt expiration); once the attempts of a scope expired, the
genuine password works again. The refusal happens in axes' backend before any password is checked,
for the admin's sign-in and the pages' (`/accounts/login/`) alike, and is answered by
`lockout_response`: 429 with `Retry-After`, in the API's error format (`rate_limited`) for API and
JSON callers, as a page otherwise.

Ledger. A failed sign-in is counted in `SignInFailureWindow` (username, window of
`SIGN_IN_FAILURE_WINDOW_S`). The first failure of a window writes `auth.sign_in_failed` (with the
window's start); closing the window writes `auth.sign_in_failures` with the final count. A window is
closed by the next failure of the same username in a later window, or by the beat task
(`sign_in_failures_close`). Usernames that name no user share one window (people type passwords
into the username field, so those are never written down). So the ledger grows by at most two
entries per user (and two for unknown names) per window, however many tries an anonymous caller makes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt, AccessAttemptExpiration
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from audit.ledger import ledger_append
from core.errors import json_error
from governance.models import SignInFailureWindow

SIGN_IN_ACTOR = "system:auth"
CLOSED_WINDOWS_KEPT_DAYS = 30


# --- Limits and backoff (django-axes handler) ---------------------------------------------------

@dataclass(frozen=True)
class Pressure:
    """Live (unexpired) failures counted against each limit for one username at one address."""

    username: str | None
    address: str | None
    user_at_address: int
    at_address: int
    user_everywhere: int  # each address counting at most SIGN_IN_FAILURES_PER_USER_ADDRESS

    def scopes_over(self) -> list[Q]:
        """The attempt rows of each scope whose limit is reached."""
        scopes = []
        if self.user_at_address >= settings.SIGN_IN_FAILURES_PER_USER_ADDRESS:
            scopes.append(Q(username=self.username, ip_address=self.address))
        if self.at_address >= settings.SIGN_IN_FAILURES_PER_ADDRESS:
            scopes.append(Q(ip_address=self.address))
        if self.user_everywhere >= settings.SIGN_IN_FAILURES_PER_USER:
            scopes.append(Q(username=self.username))
        return scopes

    def excess(self) -> int:
        """Failures beyond the most exceeded limit (-1 or less: no limit reached)."""
        return max(self.user_at_address - settings.SIGN_IN_FAILURES_PER_USER_ADDRESS,
                   self.at_address - settings.SIGN_IN_FAILURES_PER_ADDRESS,
                   self.user_everywhere - settings.SIGN_IN_FAILURES_PER_USER)

    def normalised(self) -> int:
        """One number for axes, reaching AXES_FAILURE_LIMIT exactly when any of the three limits is reached."""
        limit = settings.SIGN_IN_FAILURES_PER_USER_ADDRESS
        return max(self.user_at_address,
                   self.at_address * limit // settings.SIGN_IN_FAILURES_PER_ADDRESS,
                   self.user_everywhere * limit // settings.SIGN_IN_FAILURES_PER_USER)


def _live_attempts() -> Any:
    return AccessAttempt.objects.filter(expiration__expires_at__gt=timezone.now())


def pressure(username: str | None, address: str | None) -> Pressure:
    rows = _live_attempts().filter(Q(ip_address=address) | Q(username=username)).values_list(
        "username", "ip_address", "failures_since_start")
    per_address: dict[str | None, int] = defaultdict(int)
    at_address = 0
    for row_username, row_address, failures in rows:
        if row_address == address:
            at_address += failures
        if row_username == username:
            per_address[row_address] += failures
    cap = settings.SIGN_IN_FAILURES_PER_USER_ADDRESS
    return Pressure(username=username, address=address, user_at_address=per_address.get(address, 0),
                    at_address=at_address, user_everywhere=sum(min(count, cap) for count in per_address.values()))


def cool_off_for(excess: int) -> timedelta:
    """The refusal after reaching a limit: SIGN_IN_COOLOFF_S, doubled by each failure beyond it, capped."""
    seconds = settings.SIGN_IN_COOLOFF_S * 2 ** min(max(excess, 0), 32)
    return timedelta(seconds=min(seconds, settings.SIGN_IN_COOLOFF_MAX_S))


def _request_pressure(request: HttpRequest, credentials: dict[str, Any] | None) -> Pressure:
    return pressure(get_client_username(request, credentials), getattr(request, "axes_ip_address", None))


class SignInHandler(AxesDatabaseHandler):
    """axes' database handler with three limits (see the module docstring) and a growing cool-off."""

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        return _request_pressure(request, credentials).normalised()

    def user_login_failed(self, sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None,
                          **kwargs: Any) -> None:
        super().user_login_failed(sender, credentials, request, **kwargs)  # counts it, expiring after SIGN_IN_COOLOFF_S
        if request is None:
            return
        current = _request_pressure(request, credentials)
        scopes = current.scopes_over()
        if not scopes:
            return
        until = timezone.now() + cool_off_for(current.excess())
        rows = AccessAttempt.objects.filter(Q(*scopes, _connector=Q.OR))
        AccessAttemptExpiration.objects.filter(access_attempt__in=rows, expires_at__lt=until).update(expires_at=until)

    def reset_user_attempts(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        """After a successful sign-in, forget that username's failures at that address only (not an
        attacker's at other addresses, nor other usernames' at this one)."""
        username = get_client_username(request, credentials)
        count, _ = AccessAttempt.objects.filter(username=username, ip_address=request.axes_ip_address).delete()
        return count


def retry_after_s(username: str | None, address: str | None) -> int:
    """Seconds until the refused scopes of this username at this address may sign in again (at least 1)."""
    scopes = pressure(username, address).scopes_over()
    if not scopes:
        return 1
    last = (AccessAttemptExpiration.objects.filter(access_attempt__in=_live_attempts().filter(Q(*scopes, _connector=Q.OR)))
            .order_by("-expires_at").values_list("expires_at", flat=True).first())
    if last is None:
        return 1
    return max(1, math.ceil((last - timezone.now()).total_seconds()))


def _wants_json(request: HttpRequest) -> bool:
    accept = request.META.get("HTTP_ACCEPT", "")
    return request.path.startswith("/api/") or ("application/json" in accept and "text/html" not in accept)


def lockout_response(request: HttpRequest, original_response: HttpResponse | None = None,
                     credentials: dict[str, Any] | None = None) -> HttpResponse:
    """axes' refusal, in our formats: 429, `rate_limited`, Retry-After (AXES_LOCKOUT_CALLABLE)."""
    seconds = retry_after_s(get_client_username(request, credentials), getattr(request, "axes_ip_address", None))
    minutes = math.ceil(seconds / 60)
    message = f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    response: HttpResponse
    if _wants_json(request):
        response = json_error("rate_limited", message, 429, {"retry_after_s": seconds})
    else:
        response = render(request, "registration/sign_in_refused.html",
                          {"message": message, "retry_after_s": seconds, "code": "rate_limited"}, status=429)
    response["Retry-After"] = str(seconds)
    return response


# --- Failures in the ledger: one entry per username and window, with the count ----------------

def window_start(at: datetime) -> datetime:
    size = settings.SIGN_IN_FAILURE_WINDOW_S
    return datetime.fromtimestamp(int(at.timestamp()) // size * size, tz=at.tzinfo or timezone.get_current_timezone())


def _subject_and_name(username: str) -> tuple[tuple[str, str], dict[str, Any]]:
    user = get_user_model().objects.filter(username=username).only("pk").first() if username else None
    if user is None:
        return ("auth.user", "unknown"), {"username": None}
    return ("auth.user", str(user.pk)), {"username": username}


def sign_in_failure_record(username: str, *, path: str, now: datetime | None = None) -> SignInFailureWindow:
    """Count one failed sign-in; the first of its (username, window) writes `auth.sign_in_failed`.

    A username naming no user is counted as the unknown one ("").
    """
    now = now or timezone.now()
    known = bool(username) and get_user_model().objects.filter(username=username).exists()
    key = username if known else ""
    start = window_start(now)
    with transaction.atomic():
        row, created = SignInFailureWindow.objects.get_or_create(username=key, window_start=start,
                                                                 defaults={"failures": 1})
        if not created:
            SignInFailureWindow.objects.filter(pk=row.pk).update(failures=F("failures") + 1)
            return row
        sign_in_failures_close(now=now, username=key)  # this username's earlier windows get their count
        subject, payload = _subject_and_name(key)
        ledger_append(actor=SIGN_IN_ACTOR, action="auth.sign_in_failed", subject=subject,
                      payload={**payload, "window_start": start.isoformat(),
                               "window_s": settings.SIGN_IN_FAILURE_WINDOW_S, "path": path[:200]})
    return row


def sign_in_failures_close(*, now: datetime | None = None, username: str | None = None) -> int:
    """Write `auth.sign_in_failures` (the final count) for every window that ended; returns how many.

    Run by beat every window, and for one username by its next failure. Closed windows older than
    CLOSED_WINDOWS_KEPT_DAYS are forgotten (their counts are in the ledger).
    """
    now = now or timezone.now()
    current = window_start(now)
    size = timedelta(seconds=settings.SIGN_IN_FAILURE_WINDOW_S)
    due = SignInFailureWindow.objects.filter(closed_at__isnull=True, window_start__lt=current)
    if username is not None:
        due = due.filter(username=username)
    closed = 0
    with transaction.atomic():
        for row in due.select_for_update(skip_locked=True).order_by("window_start", "username"):
            subject, payload = _subject_and_name(row.username)
            ledger_append(actor=SIGN_IN_ACTOR, action="auth.sign_in_failures", subject=subject,
                          payload={**payload, "window_start": row.window_start.isoformat(),
                                   "window_end": (row.window_start + size).isoformat(), "failures": row.failures})
            row.closed_at = now
            row.save(update_fields=["closed_at"])
            closed += 1
        if username is None:
            SignInFailureWindow.objects.filter(
                closed_at__lt=now - timedelta(days=CLOSED_WINDOWS_KEPT_DAYS)).delete()
    return closed
