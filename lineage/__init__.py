"""Datasets, training runs, lineage edges, in-toto/DSSE attestations, OpenLineage ingestion."""
