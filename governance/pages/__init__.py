"""Server-rendered pages for approvers, risk officers and auditors: dashboard, models, ledger explorer."""
