from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit ledger"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audit.capture.m2m import connect_m2m_targets
        from audit.capture.state import governed_state_problems
        from audit.verify import register_state_check

        register_state_check(governed_state_problems)
        connect_m2m_targets()
