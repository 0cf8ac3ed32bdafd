"""RFC 3161 time-stamp tokens over checkpoints, in an append-only table (the ledger's trigger rule)."""

import django.db.models.deletion
from django.db import migrations, models

TABLE = "audit_checkpointtimestamp"


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        # audit_refuse_change() is the ledger's own trigger function (migration audit/0002).
        statements = [
            f"CREATE TRIGGER {TABLE}_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();",
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();",
        ]
    elif vendor == "sqlite":
        statements = [
            f"CREATE TRIGGER {TABLE}_no_{operation.lower()} BEFORE {operation} ON {TABLE} "
            f"BEGIN SELECT RAISE(ABORT, 'ledger table {TABLE} is append-only: {operation} refused'); END;"
            for operation in ("UPDATE", "DELETE")
        ]
    else:
        raise RuntimeError(f"append-only triggers are not defined for {vendor}")
    for statement in statements:
        schema_editor.execute(statement, params=None)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in (f"{TABLE}_no_update_delete", f"{TABLE}_no_truncate"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name} ON {TABLE};")
    else:
        for name in (f"{TABLE}_no_update", f"{TABLE}_no_delete"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name};")


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_subject_prev")]

    operations = [
        migrations.CreateModel(
            name="CheckpointTimestamp",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("token", models.BinaryField()),
                ("token_sha256", models.CharField(max_length=64, unique=True)),
                ("gen_time", models.DateTimeField()),
                ("serial_number", models.CharField(max_length=100)),
                ("policy", models.CharField(max_length=200)),
                ("tsa_url", models.CharField(max_length=500)),
                ("created_at", models.DateTimeField()),
                ("checkpoint", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT,
                                                 related_name="timestamps", to="audit.checkpoint")),
            ],
            options={"ordering": ["checkpoint__tree_size", "gen_time"], "verbose_name": "checkpoint timestamp"},
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
