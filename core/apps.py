from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.urls import register_converter

        from core.ids import IdConverter

        # One id parser for every URL: `rowid` for object ids, `seq` for ledger sequence numbers.
        register_converter(IdConverter, "rowid")
        register_converter(IdConverter, "seq")
