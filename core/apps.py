from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


def sqlite_folders_ensure() -> None:
    """Create the folders of embedded SQLite databases (and their test copies) when the app starts,
    so that importing the settings writes nothing."""
    for database in settings.DATABASES.values():
        if not database.get("ENGINE", "").endswith("sqlite3"):
            continue
        for name in (database.get("NAME"), (database.get("TEST") or {}).get("NAME")):
            if name and str(name) != ":memory:" and not str(name).startswith("file:"):
                Path(name).parent.mkdir(parents=True, exist_ok=True)


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
        sqlite_folders_ensure()
