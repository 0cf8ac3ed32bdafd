"""Project wiring and the decision domain: registry, approvals, deployments, audits, reports."""

from governance.celery import app as celery_app

__all__ = ["celery_app"]
