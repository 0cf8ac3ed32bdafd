"""Approvals signed by the approver: the approval statement, its challenges, and the approvers' own
signing credentials (WebAuthn passkeys and Ed25519 keys for DSSE envelopes)."""
