"""The shared kernel every app builds on: errors and their one registry of codes, the DRF exception
handler, pagination and parameter parsing, request hardening, idempotency, the outbox, the actor context.

The bottom layer: it imports nothing from audit, lineage or governance.
"""
