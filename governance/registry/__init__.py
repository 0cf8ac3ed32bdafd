"""The registry domain: teams, models, versions, approvals, deployments and access.

Its models live in `governance.models` (app label `governance`); its writes live in
`registry.services`, one module per topic."""
