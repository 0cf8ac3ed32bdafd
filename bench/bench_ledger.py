"""Ledger benchmarks on the real PostgreSQL: appends (8 writers), batch appends, verification, proofs.

Anchors run in the same run on the same database server: a bare serialized INSERT plus
head-row update (what any hash chain must at least do), sent by raw psycopg and again through
Django's transaction and cursor from processes that loaded the service (the way ours is sent),
plain INSERTs from 8 clients, and Python's SHA-256 over short messages.

    python -m bench.bench_ledger [--quick]
    python -m bench.bench_ledger --verify-only [--size N] [--rounds R]
        # only verify_ledger at N entries (1,000,000): bulk, entry by entry and SHA-256 in R interleaved rounds
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time

from bench.common import PG, ROOT, django_setup, recreate_database

BENCH_DB = os.environ.get("BENCH_LEDGER_DB", "governance_bench_ledger" + os.environ.get("BENCH_DB_SUFFIX", ""))
WRITERS = 8


def _writer(key_dir: str, writer: int, count: int, autocommit: bool, ready, finished) -> None:  # type: ignore[no-untyped-def]
    """One entry per transaction: in the caller's `transaction.atomic()`, as services append, or with
    `autocommit` outside any transaction, where the append is one statement and its own transaction."""
    django_setup(BENCH_DB, key_dir)
    from contextlib import nullcontext

    from django.db import transaction

    from audit.ledger import ledger_append

    ledger_append(actor="system:warmup", action="bench.warmup", subject=("bench", f"w{writer}"))
    context = nullcontext if autocommit else transaction.atomic
    ready.wait()
    for index in range(count):
        with context():
            ledger_append(actor=f"system:bench{writer}", action="bench.append",
                          subject=("bench.item", f"{writer}-{index}"), payload={"index": index, "note": "x" * 40})
    finished.put(time.time())


def _anchor_serialized(count: int, ready, finished) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(f"{PG}/{BENCH_DB}", autocommit=True) as conn:
        ready.wait()
        for index in range(count):
            with conn.transaction():
                size, head = conn.execute("SELECT size, head FROM anchor_head WHERE id = 1 FOR UPDATE").fetchone()
                entry = hashlib.sha256(head + str(index).encode()).digest()
                conn.execute("INSERT INTO anchor_log (seq, body, hash) VALUES (%s, %s, %s)",
                             (size, b"x" * 200, entry))
                conn.execute("UPDATE anchor_head SET size = %s, head = %s WHERE id = 1", (size + 1, entry))
    finished.put(time.time())


def _anchor_serialized_django(key_dir: str, count: int, ready, finished) -> None:  # type: ignore[no-untyped-def]
    """The same bare hash chain as `_anchor_serialized`, sent the way ours is: from a process with
    the service's Django loaded, through Django's transaction and cursor."""
    django_setup(BENCH_DB, key_dir)
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    ready.wait()
    for index in range(count):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT size, head FROM anchor_head WHERE id = 1 FOR UPDATE")
            size, head = cursor.fetchone()
            entry = hashlib.sha256(bytes(head) + str(index).encode()).digest()
            cursor.execute("INSERT INTO anchor_log (seq, body, hash) VALUES (%s, %s, %s)", (size, b"x" * 200, entry))
            cursor.execute("UPDATE anchor_head SET size = %s, head = %s WHERE id = 1", (size + 1, entry))
    finished.put(time.time())


def _anchor_plain_insert(count: int, ready, finished) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(f"{PG}/{BENCH_DB}", autocommit=True) as conn:
        ready.wait()
        for _ in range(count):
            conn.execute("INSERT INTO anchor_plain (body) VALUES (%s)", (b"x" * 200,))
    finished.put(time.time())


def _parallel(target, args_for) -> float:  # type: ignore[no-untyped-def]
    """Seconds from the moment every process is ready (imports, settings, connection and a warm-up
    done: a Django process takes about 4 s to get there with 8 starting at once on 2 cores) until the
    last one finishes its work; process start-up and exit are not counted, for ours or the anchors."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(WRITERS + 1)
    finished = context.Queue()
    processes = [context.Process(target=target, args=(*args_for(writer), ready, finished))
                 for writer in range(WRITERS)]
    for process in processes:
        process.start()
    ready.wait(timeout=120)
    started = time.time()
    ends = [finished.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"bench process failed with {process.exitcode}")
    return max(ends) - started


def _jcs_row(quick: bool) -> dict:
    """Canonical bytes of a governed save's payload (before, after, state with float metrics)."""
    import rfc8785

    sys.path.insert(0, str(ROOT))
    from audit import jcs

    rng = random.Random(3)
    state = {"name": "credit-scorer", "threshold": 0.55, "auc": 0.8123, "rows": 1000, "approved": True,
             "metrics": {group: {"selection_rate": rng.random(), "tpr": rng.random(), "count": 1000.0}
                         for group in "ABCDE"}}
    payload = {"before": {"threshold": 0.5}, "after": {"threshold": 0.55}, "state": state}
    assert jcs.canonicalize(payload) == rfc8785.dumps(payload)
    count = 5_000 if quick else 50_000

    def per_call_us(function) -> float:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        for _ in range(count):
            function(payload)
        return (time.perf_counter() - started) / count * 1e6

    return {"what": "RFC 8785 bytes of a governed save's payload (floats included)", "ours": per_call_us(jcs.canonicalize),
            "anchor": per_call_us(rfc8785.dumps), "anchor_name": "rfc8785 reference encoder", "unit": "µs",
            "goal": "reported"}


def run(quick: bool = False) -> list[dict]:
    key_dir = tempfile.mkdtemp(prefix="bench-keys-")
    recreate_database(BENCH_DB)
    django_setup(BENCH_DB, key_dir)
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    call_command("signing_key", "create", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE anchor_head (id int primary key, size bigint, head bytea)")
        cursor.execute("INSERT INTO anchor_head VALUES (1, 0, %s)", [bytes(32)])
        cursor.execute("CREATE TABLE anchor_log (seq bigint primary key, body bytea, hash bytea)")
        cursor.execute("CREATE TABLE anchor_plain (id bigserial primary key, body bytea)")
    connection.close()

    from audit.ledger import (
        consistency_proof,
        current_tree_size,
        draft,
        inclusion_proof,
        ledger_append_many,
    )
    from audit.verify import verify_ledger

    rows: list[dict] = [_jcs_row(quick)]
    per_writer = 150 if quick else 1000
    rates: dict[str, list[float]] = {"ours": [], "anchor": [], "django": [], "ours outside a transaction": []}
    for _ in range(1 if quick else 3):  # interleaved rounds; the medians are reported
        elapsed = _parallel(_writer, lambda writer: (key_dir, writer, per_writer, False))
        rates["ours"].append(WRITERS * per_writer / elapsed)
        elapsed = _parallel(_writer, lambda writer: (key_dir, writer, per_writer, True))
        rates["ours outside a transaction"].append(WRITERS * per_writer / elapsed)
        elapsed = _parallel(_anchor_serialized, lambda writer: (per_writer,))
        rates["anchor"].append(WRITERS * per_writer / elapsed)
        elapsed = _parallel(_anchor_serialized_django, lambda writer: (key_dir, per_writer))
        rates["django"].append(WRITERS * per_writer / elapsed)
    print("appends, 8 writers, entries/s per round: " + "; ".join(
        f"{name} " + ", ".join(f"{rate:,.0f}" for rate in values) for name, values in rates.items()), file=sys.stderr)
    rows.append({"what": "appends, 8 writer processes, 1 entry/transaction (median of rounds)",
                 "ours": statistics.median(rates["ours"]), "anchor": statistics.median(rates["anchor"]),
                 "anchor_name": "serialized INSERT+head update", "unit": "entries/s", "goal": ">= 1,000/s"})
    rows.append({"what": "  the same, each append outside a transaction (one statement)",
                 "ours": statistics.median(rates["ours outside a transaction"]),
                 "anchor": statistics.median(rates["anchor"]),
                 "anchor_name": "serialized INSERT+head update", "unit": "entries/s", "goal": "reported"})
    rows.append({"what": "  the same, anchor sent through Django as ours is (median of rounds)",
                 "ours": statistics.median(rates["ours"]), "anchor": statistics.median(rates["django"]),
                 "anchor_name": "same chain, Django atomic+cursor", "unit": "entries/s", "goal": "reported"})
    result = verify_ledger()
    assert result.ok, result.problems  # 0 forks, no gaps

    batch_total = 20_000 if quick else 200_000
    started = time.perf_counter()
    for _ in range(batch_total // 1000):
        ledger_append_many([draft(actor="system:bench", action="bench.batch", subject=("bench.item", str(index)),
                                  payload={"index": index, "note": "x" * 40}) for index in range(1000)],
                           checkpoint=False)
    ours = batch_total / (time.perf_counter() - started)
    plain_each = 300 if quick else 2000
    elapsed = _parallel(_anchor_plain_insert, lambda writer: (plain_each,))
    anchor = WRITERS * plain_each / elapsed
    rows.append({"what": "batch appends (1,000 per transaction, 1 process)", "ours": ours, "anchor": anchor,
                 "anchor_name": "plain INSERT, 8 clients", "unit": "entries/s", "goal": ">= 20,000/s"})

    target = 100_000 if quick else 1_000_000
    while current_tree_size() < target:
        missing = min(5000, target - current_tree_size())
        ledger_append_many([draft(actor="system:bench", action="bench.fill", subject=("bench.item", str(index)),
                                  payload={"index": index}) for index in range(missing)], checkpoint=False)
    from audit.ledger import checkpoint_create

    checkpoint_create()
    started = time.perf_counter()
    result = verify_ledger()
    verify_s = time.perf_counter() - started
    assert result.ok, result.problems
    messages = [os.urandom(200) for _ in range(200_000)]
    started = time.perf_counter()
    for message in messages:
        hashlib.sha256(message).digest()
    sha_rate = len(messages) / (time.perf_counter() - started)
    rows.append({"what": f"verify_ledger, {result.entries_checked:,} entries", "ours": result.entries_checked / verify_s,
                 "anchor": sha_rate, "anchor_name": "Python SHA-256, 200-byte msgs", "unit": "entries/s",
                 "goal": ">= 300,000/s"})

    size = current_tree_size()
    rng = random.Random(7)
    samples = 300
    started = time.perf_counter()
    for _ in range(samples):
        inclusion_proof(leaf_index=rng.randrange(size), tree_size=size)
    inclusion_ms = (time.perf_counter() - started) / samples * 1000
    started = time.perf_counter()
    for _ in range(samples):
        consistency_proof(first_size=rng.randrange(1, size), second_size=size)
    consistency_ms = (time.perf_counter() - started) / samples * 1000
    rows.append({"what": f"inclusion proof at {size:,} entries (server side)", "ours": inclusion_ms, "anchor": None,
                 "anchor_name": "", "unit": "ms", "goal": "< 5 ms"})
    rows.append({"what": f"consistency proof at {size:,} entries (server side)", "ours": consistency_ms,
                 "anchor": None, "anchor_name": "", "unit": "ms", "goal": "< 5 ms"})
    return rows


def run_verify_only(size: int, rounds: int = 3) -> list[dict]:
    """Fill a ledger to `size` entries (batches through the append path), then time verify_ledger
    (its bulk path and its entry-by-entry path) and Python's SHA-256 of 200-byte messages in the
    same process, in interleaved rounds."""
    key_dir = tempfile.mkdtemp(prefix="bench-keys-")
    recreate_database(BENCH_DB)
    django_setup(BENCH_DB, key_dir)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("signing_key", "create", verbosity=0)
    from audit.ledger import checkpoint_create, current_tree_size, draft, ledger_append_many
    from audit.verify import verify_ledger

    while current_tree_size() < size:
        base = current_tree_size()
        missing = min(5000, size - base)
        # Subjects repeat (1 in 4 entries is about one of 1,000 models), so subject_prev links are checked too.
        ledger_append_many([draft(actor="system:bench", action="bench.fill",
                                  subject=("bench.model", str((base + index) % 1000)) if (base + index) % 4 == 0
                                  else ("bench.item", str(base + index)),
                                  payload={"index": base + index, "note": "x" * 40}) for index in range(missing)],
                           checkpoint=False)
    checkpoint_create()
    messages = [os.urandom(200) for _ in range(200_000)]

    def sha_rate() -> float:
        started = time.perf_counter()
        for message in messages:
            hashlib.sha256(message).digest()
        return len(messages) / (time.perf_counter() - started)

    # Interleaved rounds: the bulk path, the entry-by-entry path (the one before it) and the
    # SHA-256 anchor, so shared load hits all three alike; medians reported.
    rates: dict[str, list[float]] = {"bulk": [], "per_entry": [], "sha": []}
    entries = 0
    for _ in range(rounds):
        for name, bulk in (("bulk", True), ("per_entry", False)):
            started = time.perf_counter()
            result = verify_ledger(bulk=bulk)
            elapsed = time.perf_counter() - started
            assert result.ok, result.problems
            entries = result.entries_checked
            rates[name].append(entries / elapsed)
        rates["sha"].append(sha_rate())
    bulk_rate, per_entry_rate, anchor = (statistics.median(rates[name]) for name in ("bulk", "per_entry", "sha"))
    return [{"what": f"verify_ledger, {entries:,} entries", "ours": bulk_rate, "anchor": anchor,
             "anchor_name": "Python SHA-256, 200-byte msgs", "unit": "entries/s", "goal": ">= 300,000/s",
             "entry_by_entry": per_entry_rate, "bulk_over_entry_by_entry": bulk_rate / per_entry_rate,
             "rounds": rates, "load": os.getloadavg()}]


if __name__ == "__main__":
    if "--verify-only" in sys.argv:
        size = int(sys.argv[sys.argv.index("--size") + 1]) if "--size" in sys.argv else 1_000_000
        rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
        for row in run_verify_only(size, rounds):
            print(row)
        sys.exit(0)
    for row in run(quick="--quick" in sys.argv):
        print(row)
