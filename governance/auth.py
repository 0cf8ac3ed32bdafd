"""API tokens for service accounts, and the sign-in rate limit of the admin.

Tokens look like `gov_<prefix>_<secret>`. The row is found by its prefix; the SHA-256 of the
whole token is compared in constant time. Only that hash is stored, so a database leak gives
no usable token. An expired or revoked token, or one whose account is inactive, is refused.
A read-scoped token is refused for unsafe methods here, before any view runs.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from governance.models import ServiceToken, TokenScope

logger = logging.getLogger(__name__)

TOKEN_RE_PREFIX = "gov_"  # noqa: S105 (a format marker, not a secret)


class TokenScopeInsufficient(exceptions.PermissionDenied):
    default_detail = "This token may only read."
    default_code = "token_scope_insufficient"


class ServiceTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer gov_<prefix>_<secret>`; request.user becomes the service account's user."""

    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[Any, ServiceToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Malformed bearer token.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Malformed bearer token.")
        token = lookup_token(raw)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        if request.method not in SAFE_METHODS and token.scope != TokenScope.WRITE:
            raise TokenScopeInsufficient()
        user = token.account.user
        user.service_token = token  # read by governance.permissions to apply the token's scope
        return user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def lookup_token(raw: str) -> ServiceToken | None:
    """The live token matching `raw`, or None (unknown, wrong secret, expired, revoked, inactive account)."""
    from governance.registry.services.access import hash_token

    if not raw.startswith(TOKEN_RE_PREFIX) or len(raw) > 200:
        return None
    prefix, _, secret = raw[len(TOKEN_RE_PREFIX):].partition("_")
    if not prefix or not secret:
        return None
    token = ServiceToken.objects.select_related("account__user").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.token_hash, hash_token(raw)):
        return None
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= timezone.now()):
        return None
    if not token.account.user.is_active:
        return None
    return token


class LoginThrottle:
    """Counts failed sign-ins per username and client address in the cache; too many refuse further tries."""

    def __init__(self, *, max_failures: int = 10, window_s: int = 60) -> None:
        self.max_failures = max_failures
        self.window_s = window_s

    def _key(self, username: str, request: Any) -> str:
        import hashlib

        address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
        digest = hashlib.sha256(f"{username.lower()}|{address}".encode()).hexdigest()[:32]
        return f"governance:login-failures:{digest}"

    def record_failure(self, username: str, request: Any) -> None:
        key = self._key(username, request)
        if cache.add(key, 1, self.window_s):
            return
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, self.window_s)

    def blocked(self, username: str, request: Any) -> bool:
        return int(cache.get(self._key(username, request), 0)) >= self.max_failures

    def reset(self, username: str, request: Any) -> None:
        cache.delete(self._key(username, request))


login_throttle = LoginThrottle()


class RateLimitedAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin sign-in form, refusing before it checks the password once too many attempts failed."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "rate_limited": "Too many failed sign-ins. Wait a minute and try again.",
    }

    def clean(self) -> dict[str, Any]:
        username = str(self.data.get("username") or "")
        if login_throttle.blocked(username, self.request):
            logger.warning("admin sign-in refused: rate limited")
            raise forms.ValidationError(self.error_messages["rate_limited"], code="rate_limited")
        return super().clean()


class RateLimitedAuthenticationForm(AuthenticationForm):
    """The sign-in form for every user (pages), with the same rate limit as the admin's."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "rate_limited": RateLimitedAdminAuthenticationForm.error_messages["rate_limited"],
    }

    def clean(self) -> dict[str, Any]:
        username = str(self.data.get("username") or "")
        if login_throttle.blocked(username, self.request):
            logger.warning("sign-in refused: rate limited")
            raise forms.ValidationError(self.error_messages["rate_limited"], code="rate_limited")
        return super().clean()


class ServiceTokenScheme(OpenApiAuthenticationExtension):
    """Describes the bearer tokens in the OpenAPI schema."""

    target_class = "governance.auth.ServiceTokenAuthentication"
    name = "serviceToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "gov_<prefix>_<secret>"}
