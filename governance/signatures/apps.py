from django.apps import AppConfig


class SignaturesConfig(AppConfig):
    name = "governance.signatures"
    label = "signatures"
    verbose_name = "Approver signatures"
    default_auto_field = "django.db.models.BigAutoField"
