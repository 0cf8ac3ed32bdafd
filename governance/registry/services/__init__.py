"""The registry's writes by topic: `registry` (teams, models, versions), `approvals`,
`deployments` and `access`; `common` holds their shared errors and helpers. One transaction per
service; the ledger gets one entry per changed row, named by the action at the write.

Rules (separation of duties, quorum, evidence, production gate) live here and only here, so the
API, the admin and the pages, which all call these functions, enforce the same ones."""
