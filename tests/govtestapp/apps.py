from django.apps import AppConfig


class GovTestAppConfig(AppConfig):
    name = "tests.govtestapp"
    label = "govtestapp"
    default_auto_field = "django.db.models.BigAutoField"
