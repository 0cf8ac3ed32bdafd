"""The ledger in the admin: strictly read-only for everyone, superusers included.

No add, change or delete permission and no actions; viewing needs `audit.view_ledgerentry`
(auditors and admins). The database refuses changes anyway (append-only triggers); this
keeps the admin from even offering them.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from audit.models import Checkpoint, LedgerEntry, SigningKey, WitnessCosignature
from audit.selectors import can_read_ledger
from core.admin import ReadOnlyModelAdmin


class ReadOnlyLedgerAdmin(ReadOnlyModelAdmin):
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_read_ledger(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_read_ledger(request.user)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyLedgerAdmin):
    list_display = ("seq", "recorded_at", "actor", "action", "subject_type", "subject_id")
    list_filter = ("action", "subject_type")
    search_fields = ("actor", "action", "subject_id")
    fields = ("seq", "recorded_at", "actor", "action", "subject_type", "subject_id", "payload_pretty",
              "prev_hash_hex", "entry_hash_hex")
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="payload")
    def payload_pretty(self, entry: LedgerEntry) -> str:
        return format_html("<pre>{}</pre>", json.dumps(entry.payload, indent=2, sort_keys=True))

    @admin.display(description="prev hash")
    def prev_hash_hex(self, entry: LedgerEntry) -> str:
        return bytes(entry.prev_hash).hex()

    @admin.display(description="entry hash")
    def entry_hash_hex(self, entry: LedgerEntry) -> str:
        return bytes(entry.entry_hash).hex()


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyLedgerAdmin):
    list_display = ("tree_size", "created_at", "key")
    fields = ("tree_size", "created_at", "key", "note")
    readonly_fields = fields


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyLedgerAdmin):
    list_display = ("name", "purpose", "key_id", "valid_from", "valid_until")
    fields = ("name", "purpose", "algorithm", "key_id", "dsse_keyid", "vkey", "valid_from", "valid_until")
    readonly_fields = fields


@admin.register(WitnessCosignature)
class WitnessCosignatureAdmin(ReadOnlyLedgerAdmin):
    list_display = ("checkpoint", "witness_name", "cosigned_at", "received_at")
    list_filter = ("witness_name",)
    fields = ("checkpoint", "witness_name", "witness_vkey", "cosigned_at", "received_at", "line")
    readonly_fields = fields
    list_select_related = ("checkpoint",)
