from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit ledger"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audit.capture.m2m import connect_m2m_targets
        from audit.capture.state import governed_state_problems
        from audit.refusals import refusal_ensure
        from audit.verify import register_state_check
        from core.errors import SURFACED_HOOKS

        register_state_check(governed_state_problems)
        connect_m2m_targets()
        if refusal_ensure not in SURFACED_HOOKS:
            SURFACED_HOOKS.append(refusal_ensure)
