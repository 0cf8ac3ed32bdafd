"""PostgreSQL: a governed row write and its ledger entry as one statement, `audit_governed_write`.

`audit.capture` sends a governed save (or create, or delete) as one call of this function: it
locks the ledger head FIRST (the lock order of every governed write), runs the row's statement
(a guarded `UPDATE ... WHERE pk = ... AND <each recorded column> IS NOT DISTINCT FROM <the value
the instance was loaded with>`, an `INSERT ... RETURNING pk`, or a guarded `DELETE`), and, only
when the statement touched a row, appends the entry through `audit_ledger_append` (migration
0003): the append logic lives there only, so any change to it applies to this path too.

When the guard finds the row changed by someone else, the statement touches nothing, nothing is
appended, and the function returns no row: the client re-reads the row and sends the call again
with the true "before" (the JCS bytes of the payload are built by the client, so that floats stay
exact). With the head held no governed writer can commit in between, and the UPDATE re-checks
the guard on the newest row version, so a recorded "before" is always the row as it was.

For an INSERT whose key the database assigns, the entry's subject is completed here: the client
sends only the JCS of the subject type, and the function writes `{"id":"<key>","type":<type>}`
(an integer key needs no JSON escaping).
"""

from django.db import migrations

WRITE_FUNCTION = r"""
CREATE OR REPLACE FUNCTION audit_governed_write(
    p_statement text, p_returning boolean, p_prefix bytea, p_subject bytea, p_actor text, p_action text,
    p_subject_type text, p_subject_id text
) RETURNS TABLE (out_rows bigint, out_key text, out_seq bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_rows bigint;
    v_key text;
    v_subject bytea := p_subject;
    v_subject_id text := p_subject_id;
    v_seq bigint;
BEGIN
    -- The head first, before the row: the lock order of every governed write.
    PERFORM 1 FROM audit_ledgerhead h WHERE h.id = 1 FOR UPDATE;
    IF p_returning THEN
        EXECUTE p_statement INTO v_key;
    ELSE
        EXECUTE p_statement;
    END IF;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows = 0 THEN
        -- The guard failed (the row changed or is gone): nothing written, nothing appended.
        RETURN;
    END IF;
    IF p_prefix IS NOT NULL THEN
        IF v_subject_id IS NULL THEN
            v_subject_id := v_key;
            v_subject := convert_to('{"id":"' || v_key || '","type":', 'UTF8') || p_subject
                || convert_to('}', 'UTF8');
        END IF;
        SELECT min(a.out_seq) INTO v_seq
          FROM audit_ledger_append(ARRAY[p_prefix], ARRAY[v_subject], ARRAY[p_actor], ARRAY[p_action],
                                   ARRAY[p_subject_type], ARRAY[v_subject_id]) a;
    END IF;
    out_rows := v_rows;
    out_key := v_key;
    out_seq := v_seq;
    RETURN NEXT;
END
$$;
"""

DROP_FUNCTION = "DROP FUNCTION IF EXISTS audit_governed_write(text, boolean, bytea, bytea, text, text, text, text);"


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(WRITE_FUNCTION, params=None)


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_FUNCTION, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_checkpoint_timestamps")]

    operations = [migrations.RunPython(create_function, drop_function)]
