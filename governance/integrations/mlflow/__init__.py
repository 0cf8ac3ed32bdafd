"""Governance of an MLflow model registry: webhook receiver, reconcile, import, aliases as deployments.

The service talks to MLflow's REST API only (no `mlflow` package): `client.py`. The webhook's
signature is the fairness webhooks' construction (`governance.fairness.notifications.sign`).
"""
