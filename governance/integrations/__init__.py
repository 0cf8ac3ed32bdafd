"""Integrations with other systems the teams already use (MLflow)."""
