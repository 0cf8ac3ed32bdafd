from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit ledger"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db import connections
        from django.db.backends.signals import connection_created

        from audit.capture.m2m import connect_m2m_targets
        from audit.capture.state import governed_state_problems
        from audit.ledger import install_lock_order
        from audit.verify import register_state_check

        register_state_check(governed_state_problems)
        connect_m2m_targets()
        connection_created.connect(install_lock_order, dispatch_uid="audit-head-first-lock-order")
        for alias in connections:
            install_lock_order(connection=connections[alias])
