"""Registry, approval and deployment API for pipelines and people, one module per topic (like
`registry/services/`): `registry`, `approvals`, `deployments`, `policies`; `common` holds the base view.

Every POST accepts an `Idempotency-Key`. A model the caller cannot see answers 404. Errors are
`{"code", "message", "extra"}` with stable codes (see ERROR_RESPONSES in the schema).
"""
