"""The MLflow integration's writes: connections, webhook deliveries, reconcile, violations."""
