"""The database itself refuses UPDATE, DELETE and TRUNCATE on the ledger tables.

Signing keys may only have their validity window closed (valid_until set once); every other
change, and any delete, is refused. The chain head row is created here; it is a cache that
appends lock and update, so it carries no trigger.
"""

from django.db import migrations

APPEND_ONLY_TABLES = ["audit_ledgerentry", "audit_merklenode", "audit_checkpoint"]

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE OR REPLACE FUNCTION audit_signingkey_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.valid_until IS NULL
       AND NEW.id = OLD.id AND NEW.name = OLD.name AND NEW.purpose = OLD.purpose
       AND NEW.algorithm = OLD.algorithm AND NEW.public_key = OLD.public_key
       AND NEW.key_id = OLD.key_id AND NEW.dsse_keyid = OLD.dsse_keyid AND NEW.vkey = OLD.vkey
       AND NEW.valid_from = OLD.valid_from AND NEW.created_at = OLD.created_at THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'signing keys are append-only (only closing valid_until is allowed): % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
"""


def _pg_statements():
    statements = [PG_FUNCTION]
    for table in APPEND_ONLY_TABLES:
        statements.append(
            f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();"
        )
        statements.append(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();"
        )
    statements.append(
        "CREATE TRIGGER audit_signingkey_guard BEFORE UPDATE OR DELETE ON audit_signingkey "
        "FOR EACH ROW EXECUTE FUNCTION audit_signingkey_guard();"
    )
    statements.append(
        "CREATE TRIGGER audit_signingkey_no_truncate BEFORE TRUNCATE ON audit_signingkey "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();"
    )
    return statements


def _sqlite_statements():
    # SQLite has no TRUNCATE: `DELETE FROM t` without WHERE fires the row trigger (the
    # truncate optimisation is disabled when a DELETE trigger exists).
    statements = []
    for table in APPEND_ONLY_TABLES:
        for operation in ("UPDATE", "DELETE"):
            statements.append(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'ledger table {table} is append-only: {operation} refused'); END;"
            )
    statements.append(
        "CREATE TRIGGER audit_signingkey_no_delete BEFORE DELETE ON audit_signingkey "
        "BEGIN SELECT RAISE(ABORT, 'signing keys are append-only: DELETE refused'); END;"
    )
    statements.append(
        "CREATE TRIGGER audit_signingkey_guard BEFORE UPDATE ON audit_signingkey "
        "WHEN NOT (OLD.valid_until IS NULL AND NEW.id = OLD.id AND NEW.name = OLD.name "
        "AND NEW.purpose = OLD.purpose AND NEW.algorithm = OLD.algorithm AND NEW.public_key = OLD.public_key "
        "AND NEW.key_id = OLD.key_id AND NEW.dsse_keyid = OLD.dsse_keyid AND NEW.vkey = OLD.vkey "
        "AND NEW.valid_from = OLD.valid_from AND NEW.created_at = OLD.created_at) "
        "BEGIN SELECT RAISE(ABORT, 'signing keys are append-only: UPDATE refused'); END;"
    )
    return statements


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        statements = _pg_statements()
    elif vendor == "sqlite":
        statements = _sqlite_statements()
    else:
        raise RuntimeError(f"append-only triggers are not defined for {vendor}")
    for statement in statements:
        schema_editor.execute(statement, params=None)


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    names = []
    for table in APPEND_ONLY_TABLES:
        if vendor == "postgresql":
            names += [(f"{table}_no_update_delete", table), (f"{table}_no_truncate", table)]
        else:
            names += [(f"{table}_no_update", table), (f"{table}_no_delete", table)]
    names += [("audit_signingkey_guard", "audit_signingkey")]
    names += [("audit_signingkey_no_truncate" if vendor == "postgresql" else "audit_signingkey_no_delete",
               "audit_signingkey")]
    for name, table in names:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table};")
        else:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name};")


def create_head(apps, schema_editor):
    apps.get_model("audit", "LedgerHead").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunPython(create_triggers, drop_triggers),
        migrations.RunPython(create_head, migrations.RunPython.noop),
    ]
