"""Expired, unused signing challenges are purged by beat; used ones and recently expired ones stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from audit.models import LedgerEntry
from governance.registry.services.approvals import approval_challenge_issue
from governance.signatures.models import SigningChallenge
from governance.signatures.services import approver_passkey_options, signing_challenges_purge
from governance.signatures.tasks import signing_challenges_purge_task

pytestmark = pytest.mark.django_db


def challenge_expired(challenge: SigningChallenge, *, ago_s: int, used: bool = False) -> SigningChallenge:
    now = timezone.now()
    SigningChallenge.objects.filter(pk=challenge.pk).update(
        expires_at=now - timedelta(seconds=ago_s), used_at=now - timedelta(days=1) if used else None)
    return challenge


def passkey_challenge(user) -> SigningChallenge:  # type: ignore[no-untyped-def]
    approver_passkey_options(by=user)
    return SigningChallenge.objects.filter(user=user).latest("pk")


def test_only_unused_challenges_expired_for_over_a_ttl_are_deleted(request_under, approver):
    ttl_s = settings.APPROVAL_CHALLENGE_TTL_S
    request = request_under("dsse")
    stale_statement = challenge_expired(approval_challenge_issue(request=request, by=approver, decision="approve"),
                                        ago_s=ttl_s + 60)
    stale_passkey = challenge_expired(passkey_challenge(approver), ago_s=2 * ttl_s)
    just_expired = challenge_expired(passkey_challenge(approver), ago_s=ttl_s - 60)
    used_long_ago = challenge_expired(passkey_challenge(approver), ago_s=30 * 24 * 3600, used=True)
    live = passkey_challenge(approver)
    ledger_size = LedgerEntry.objects.count()

    assert signing_challenges_purge() == 2

    remaining = set(SigningChallenge.objects.values_list("pk", flat=True))
    assert remaining == {just_expired.pk, used_long_ago.pk, live.pk}
    assert stale_statement.pk not in remaining and stale_passkey.pk not in remaining
    assert LedgerEntry.objects.count() == ledger_size  # working state, not evidence: nothing to record
    assert signing_challenges_purge() == 0  # idempotent


def test_the_beat_task_purges_and_is_scheduled(approver):
    challenge_expired(passkey_challenge(approver), ago_s=2 * settings.APPROVAL_CHALLENGE_TTL_S)
    assert signing_challenges_purge_task.delay().get() == 1
    assert not SigningChallenge.objects.exists()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert signing_challenges_purge_task.name in scheduled
