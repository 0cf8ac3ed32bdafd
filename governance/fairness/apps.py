from django.apps import AppConfig


class FairnessConfig(AppConfig):
    name = "governance.fairness"
    label = "fairness"
    verbose_name = "Fairness audits"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance.evidence import FAIRNESS_AUDIT_PASSED, register_evidence_check
        from governance.fairness.services.evidence import fairness_audit_passed

        # Approval policies that require a passing fairness audit ask this check.
        register_evidence_check(FAIRNESS_AUDIT_PASSED, fairness_audit_passed)
