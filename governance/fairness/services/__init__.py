"""Writes of the fairness app, one module per topic: specs, runs, batches (with access and uploads)."""
