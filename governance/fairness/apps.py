from django.apps import AppConfig


class FairnessConfig(AppConfig):
    name = "governance.fairness"
    label = "fairness"
    verbose_name = "Fairness audits"
    default_auto_field = "django.db.models.BigAutoField"
