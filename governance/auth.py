"""API tokens for service accounts (sign-in limits: governance.signin, with django-axes).

Tokens look like `gov_<prefix>_<secret>`. The row is found by its prefix; the SHA-256 of the
whole token is compared in constant time. Only that hash is stored, so a database leak gives
no usable token. An expired or revoked token, or one whose account is inactive, is refused.
A read-scoped token is refused for unsafe methods here, before any view runs.
"""

from __future__ import annotations

import hmac
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from governance.models import ServiceToken, TokenScope

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


class ServiceTokenScheme(OpenApiAuthenticationExtension):
    """Describes the bearer tokens in the OpenAPI schema."""

    target_class = "governance.auth.ServiceTokenAuthentication"
    name = "serviceToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "gov_<prefix>_<secret>"}
