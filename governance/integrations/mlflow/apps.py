from django.apps import AppConfig


class MlflowIntegrationConfig(AppConfig):
    name = "governance.integrations.mlflow"
    label = "mlflow_integration"
    verbose_name = "MLflow integration"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance.integrations.mlflow import hooks

        hooks.register()
