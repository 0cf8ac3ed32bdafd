"""PostgreSQL: the append's subject_prev lookup reads one index entry, not every entry about the subject.

`audit_ledger_append` (audit/0005) found the previous entry about the subject with
`SELECT max(e.seq) ... WHERE subject_type = ... AND subject_id = ...`. With the statistics of a
young or fast-growing ledger the planner estimates one matching row and runs it as an aggregate
over an index-only scan of EVERY entry about the subject (and a heap fetch for each one not yet
all-visible): a governed save of a row with 600 entries spent 5 ms there, under the head lock,
and the cost grows with each save of the row. `ORDER BY e.seq DESC LIMIT 1` is the same value
(NULL when there is none) read from the end of `ledger_subject_idx`, one index entry, whatever
the statistics say. Nothing else changes: the arguments, the result columns and the bytes.
"""

from django.db import migrations

APPEND_FUNCTION = r"""
CREATE OR REPLACE FUNCTION audit_ledger_append(
    p_prefix bytea[], p_subject bytea[], p_actor text[], p_action text[],
    p_subject_type text[], p_subject_id text[]
) RETURNS TABLE (out_seq bigint, out_recorded_at timestamptz, out_canonical bytea,
                 out_prev_hash bytea, out_entry_hash bytea, out_leaf_hash bytea)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_size bigint;
    v_head bytea;
    v_frontier bytea;
    v_now timestamptz;
    v_time bytea;
    v_canonical bytea;
    v_entry bytea;
    v_leaf bytea;
    v_carry bytea;
    v_level int;
    v_subject_prev bigint;
    v_count int := coalesce(array_length(p_prefix, 1), 0);
BEGIN
    IF v_count = 0 THEN
        RETURN;
    END IF;
    IF coalesce(array_length(p_subject, 1), 0) <> v_count OR coalesce(array_length(p_actor, 1), 0) <> v_count
       OR coalesce(array_length(p_action, 1), 0) <> v_count
       OR coalesce(array_length(p_subject_type, 1), 0) <> v_count
       OR coalesce(array_length(p_subject_id, 1), 0) <> v_count THEN
        RAISE EXCEPTION 'audit_ledger_append: argument arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT h.tree_size, h.head_hash, h.frontier INTO v_size, v_head, v_frontier
      FROM audit_ledgerhead h WHERE h.id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit_ledgerhead (id, tree_size, head_hash, frontier, subject_prev_from)
             VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea, ''::bytea, 0)
        ON CONFLICT (id) DO NOTHING;
        SELECT h.tree_size, h.head_hash, h.frontier INTO v_size, v_head, v_frontier
          FROM audit_ledgerhead h WHERE h.id = 1 FOR UPDATE;
    END IF;
    -- The time is read with the head held, so it never goes backwards along the chain.
    v_now := date_trunc('microseconds', clock_timestamp());
    v_time := convert_to(to_char(v_now AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'UTF8');
    FOR i IN 1 .. v_count LOOP
        -- The previous entry about the same subject: ONE index entry (ledger_subject_idx read
        -- backwards, LIMIT 1), under the head lock; it sees the rows this call inserted before
        -- (same transaction). Not max(seq): the planner may then read every entry about the
        -- subject (it did, with stale statistics: 5 ms for a subject of 600 entries).
        SELECT e.seq INTO v_subject_prev FROM audit_ledgerentry e
         WHERE e.subject_type = p_subject_type[i] AND e.subject_id = p_subject_id[i]
         ORDER BY e.seq DESC LIMIT 1;
        -- RFC 8785 key order: action, actor, payload (all in the prefix), prev_hash,
        -- recorded_at, seq, subject, subject_prev.
        v_canonical := p_prefix[i] || convert_to(encode(v_head, 'hex'), 'UTF8')
            || convert_to('","recorded_at":"', 'UTF8') || v_time
            || convert_to('","seq":' || v_size::text || ',"subject":', 'UTF8')
            || p_subject[i]
            || convert_to(',"subject_prev":' || coalesce(v_subject_prev::text, 'null') || '}', 'UTF8');
        v_entry := sha256(v_canonical);
        v_leaf := sha256('\x00'::bytea || v_canonical);
        INSERT INTO audit_ledgerentry (seq, recorded_at, actor, action, subject_type, subject_id,
                                       canonical, prev_hash, entry_hash, leaf_hash)
             VALUES (v_size, v_now, p_actor[i], p_action[i], p_subject_type[i], p_subject_id[i],
                     v_canonical, v_head, v_entry, v_leaf);
        -- RFC 9162 frontier: the leaf closes one complete subtree per trailing 1 bit of its index.
        v_carry := v_leaf;
        v_level := 0;
        WHILE (v_size >> v_level) & 1 = 1 LOOP
            v_carry := sha256('\x01'::bytea || substring(v_frontier FROM length(v_frontier) - 31 FOR 32) || v_carry);
            v_frontier := substring(v_frontier FROM 1 FOR length(v_frontier) - 32);
            v_level := v_level + 1;
            INSERT INTO audit_merklenode (node_id, hash) VALUES ((v_level::bigint << 56) | (v_size >> v_level), v_carry);
        END LOOP;
        v_frontier := v_frontier || v_carry;
        out_seq := v_size;
        out_recorded_at := v_now;
        out_canonical := v_canonical;
        out_prev_hash := v_head;
        out_entry_hash := v_entry;
        out_leaf_hash := v_leaf;
        RETURN NEXT;
        v_head := v_entry;
        v_size := v_size + 1;
    END LOOP;
    UPDATE audit_ledgerhead SET tree_size = v_size, head_hash = v_head, frontier = v_frontier WHERE id = 1;
END
$$;
"""

PREVIOUS_FUNCTION_MODULE = "audit.migrations.0005_subject_prev"


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(APPEND_FUNCTION, params=None)


def restore_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        from importlib import import_module

        schema_editor.execute(import_module(PREVIOUS_FUNCTION_MODULE).APPEND_FUNCTION, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0007_governed_write_perf")]

    operations = [migrations.RunPython(create_function, restore_function)]
