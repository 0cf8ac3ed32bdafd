"""Every write of lineage, one module per topic; each service is one transaction with its ledger entry.

graph (nodes, edges, names), attestations (the server's and submitted ones), datasets, runs,
model_versions (called by governance) and keys. Import from the topic module; this package
re-exports nothing.
"""
