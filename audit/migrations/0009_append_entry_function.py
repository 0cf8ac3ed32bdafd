"""PostgreSQL: one entry's append in one function, `audit_ledger_append_entry`, shared by both callers.

The per-entry work of an append (the previous entry about the subject, the canonical bytes with
seq, time and prev_hash spliced in, the SHA-256 chain and RFC 9162 leaf hashes, the entry row,
the Merkle nodes the leaf completes, the new frontier) moves out of `audit_ledger_append`
(audit/0008) into `audit_ledger_append_entry`. Its callers hold the head lock and move the head:

- `audit_ledger_append` (a batch, by `audit.ledger`): locks the head, calls it once per entry,
  moves the head once;
- `audit_governed_write` (a governed save, create or delete, by `audit.capture.guarded`): now
  locks the head ONCE, reading it (audit/0007 locked it, then `audit_ledger_append` locked and
  read it again), runs the row's statement and, when it touched a row, calls it for the one entry,
  with no arrays built and no result set materialized in between.

The bytes, the arguments and the result columns of both callers are unchanged; `verify_ledger`
recomputes every hash in Python, and the tests compare the bytes with the Python append's.
"""

from django.db import migrations

ENTRY_FUNCTION = r"""
CREATE OR REPLACE FUNCTION audit_ledger_append_entry(
    p_prefix bytea, p_subject bytea, p_actor text, p_action text, p_subject_type text, p_subject_id text,
    p_seq bigint, p_prev_hash bytea, p_frontier bytea, p_now timestamptz, p_time bytea,
    OUT out_canonical bytea, OUT out_entry_hash bytea, OUT out_leaf_hash bytea, OUT out_frontier bytea)
LANGUAGE plpgsql VOLATILE AS $$
-- The caller holds the head lock: p_seq, p_prev_hash and p_frontier are the head's, and p_time is
-- p_now as the canonical bytes spell it (read once per call of the caller, with the head held).
DECLARE
    v_subject_prev bigint;
    v_carry bytea;
    v_level int := 0;
BEGIN
    -- The previous entry about the same subject: ONE index entry (ledger_subject_idx read
    -- backwards, LIMIT 1; not max(seq), see audit/0008); it sees the entries the caller's
    -- transaction inserted before.
    SELECT e.seq INTO v_subject_prev FROM audit_ledgerentry e
     WHERE e.subject_type = p_subject_type AND e.subject_id = p_subject_id
     ORDER BY e.seq DESC LIMIT 1;
    -- RFC 8785 key order: action, actor, payload (all in the prefix), prev_hash,
    -- recorded_at, seq, subject, subject_prev.
    out_canonical := p_prefix || convert_to(encode(p_prev_hash, 'hex'), 'UTF8')
        || convert_to('","recorded_at":"', 'UTF8') || p_time
        || convert_to('","seq":' || p_seq::text || ',"subject":', 'UTF8')
        || p_subject
        || convert_to(',"subject_prev":' || coalesce(v_subject_prev::text, 'null') || '}', 'UTF8');
    out_entry_hash := sha256(out_canonical);
    out_leaf_hash := sha256('\x00'::bytea || out_canonical);
    INSERT INTO audit_ledgerentry (seq, recorded_at, actor, action, subject_type, subject_id,
                                   canonical, prev_hash, entry_hash, leaf_hash)
         VALUES (p_seq, p_now, p_actor, p_action, p_subject_type, p_subject_id,
                 out_canonical, p_prev_hash, out_entry_hash, out_leaf_hash);
    -- RFC 9162 frontier: the leaf closes one complete subtree per trailing 1 bit of its index.
    v_carry := out_leaf_hash;
    out_frontier := p_frontier;
    WHILE (p_seq >> v_level) & 1 = 1 LOOP
        v_carry := sha256('\x01'::bytea || substring(out_frontier FROM length(out_frontier) - 31 FOR 32) || v_carry);
        out_frontier := substring(out_frontier FROM 1 FOR length(out_frontier) - 32);
        v_level := v_level + 1;
        INSERT INTO audit_merklenode (node_id, hash) VALUES ((v_level::bigint << 56) | (p_seq >> v_level), v_carry);
    END LOOP;
    out_frontier := out_frontier || v_carry;
END
$$;
"""

# What both callers declare for the head, the time and the entry that _LOCK_HEAD and _TAKE_TIME fill.
_HEAD_VARIABLES = r"""    v_size bigint;
    v_head bytea;
    v_frontier bytea;
    v_now timestamptz;
    v_time bytea;
    v_entry record;
"""
# The head as a caller locks it: created when missing (by the migration normally; first append wins).
_LOCK_HEAD = r"""
    SELECT h.tree_size, h.head_hash, h.frontier INTO v_size, v_head, v_frontier
      FROM audit_ledgerhead h WHERE h.id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit_ledgerhead (id, tree_size, head_hash, frontier, subject_prev_from)
             VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea, ''::bytea, 0)
        ON CONFLICT (id) DO NOTHING;
        SELECT h.tree_size, h.head_hash, h.frontier INTO v_size, v_head, v_frontier
          FROM audit_ledgerhead h WHERE h.id = 1 FOR UPDATE;
    END IF;
"""
# The time, read with the head held (so it never goes backwards along the chain), and as spelled.
_TAKE_TIME = r"""
    v_now := date_trunc('microseconds', clock_timestamp());
    v_time := convert_to(to_char(v_now AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'UTF8');
"""

APPEND_FUNCTION = r"""
CREATE OR REPLACE FUNCTION audit_ledger_append(
    p_prefix bytea[], p_subject bytea[], p_actor text[], p_action text[],
    p_subject_type text[], p_subject_id text[]
) RETURNS TABLE (out_seq bigint, out_recorded_at timestamptz, out_canonical bytea,
                 out_prev_hash bytea, out_entry_hash bytea, out_leaf_hash bytea)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
""" + _HEAD_VARIABLES + r"""    v_count int := coalesce(array_length(p_prefix, 1), 0);
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
""" + _LOCK_HEAD + _TAKE_TIME + r"""
    FOR i IN 1 .. v_count LOOP
        v_entry := audit_ledger_append_entry(p_prefix[i], p_subject[i], p_actor[i], p_action[i], p_subject_type[i],
                                             p_subject_id[i], v_size, v_head, v_frontier, v_now, v_time);
        out_seq := v_size;
        out_recorded_at := v_now;
        out_canonical := v_entry.out_canonical;
        out_prev_hash := v_head;
        out_entry_hash := v_entry.out_entry_hash;
        out_leaf_hash := v_entry.out_leaf_hash;
        RETURN NEXT;
        v_head := v_entry.out_entry_hash;
        v_frontier := v_entry.out_frontier;
        v_size := v_size + 1;
    END LOOP;
    UPDATE audit_ledgerhead SET tree_size = v_size, head_hash = v_head, frontier = v_frontier WHERE id = 1;
END
$$;
"""

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
""" + _HEAD_VARIABLES + r"""BEGIN
    -- The head first, before the row: the lock order of every governed write.
""" + _LOCK_HEAD + r"""
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
""" + _TAKE_TIME + r"""
        v_entry := audit_ledger_append_entry(p_prefix, v_subject, p_actor, p_action, p_subject_type, v_subject_id,
                                             v_size, v_head, v_frontier, v_now, v_time);
        UPDATE audit_ledgerhead SET tree_size = v_size + 1, head_hash = v_entry.out_entry_hash,
                                    frontier = v_entry.out_frontier WHERE id = 1;
        out_seq := v_size;
    END IF;
    out_rows := v_rows;
    out_key := v_key;
    RETURN NEXT;
END
$$;
"""

DROP_ENTRY_FUNCTION = ("DROP FUNCTION IF EXISTS audit_ledger_append_entry(bytea, bytea, text, text, text, text, "
                       "bigint, bytea, bytea, timestamptz, bytea);")


def create_functions(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in (ENTRY_FUNCTION, APPEND_FUNCTION, WRITE_FUNCTION):
            schema_editor.execute(sql, params=None)


def restore_functions(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        from importlib import import_module

        schema_editor.execute(import_module("audit.migrations.0008_append_subject_prev_limit").APPEND_FUNCTION,
                              params=None)
        schema_editor.execute(import_module("audit.migrations.0007_governed_write_perf").WRITE_FUNCTION, params=None)
        schema_editor.execute(DROP_ENTRY_FUNCTION, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0008_append_subject_prev_limit")]

    operations = [migrations.RunPython(create_functions, restore_functions)]
