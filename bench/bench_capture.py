"""Cost of capturing a governed save in the ledger, against a plain save and the audit libraries.

All on the real PostgreSQL, in autocommit, on one model shape (8 fields): a plain save
(UPDATE of an existing row), our GovernedModel save (one statement: head lock, UPDATE guarded
by the loaded values, hash-chained ledger entry and Merkle nodes; and, interleaved in the same
run, the earlier locked design of five statements and a rejected snapshot design), and the anchors django-simple-history,
django-auditlog, django-reversion and django-pghistory. Each measurement runs in its own
process against a freshly created database `governance_bench`, alternating rounds of plain
and audited saves so both see the same machine state; ratios are audited / plain of the same
process. The anchors are installed only in `bench/.venv-anchors` (created from
`bench/requirements-anchors.txt` when missing), never in the project's environment.

Also reported for ours: the per-row cost of `bulk_create` and `QuerySet.update()` with
capture, the statements per audited save, and the before-state strategies (locked re-read vs
a snapshot taken when the row was loaded).

    .venv/bin/python bench/bench_capture.py [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import recreate_database

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
ANCHOR_VENV = BENCH_DIR / ".venv-anchors"
ANCHOR_REQUIREMENTS = BENCH_DIR / "requirements-anchors.txt"
PG_URL = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
# BENCH_DB_SUFFIX keeps two checkouts benchmarking on one server from dropping each other's database.
DB_NAME = "governance_bench" + os.environ.get("BENCH_DB_SUFFIX", "")
GOAL_RATIO = 1.5

ANCHORS = {
    "simple_history": "django-simple-history",
    "auditlog": "django-auditlog",
    "reversion": "django-reversion",
    "pghistory": "django-pghistory",
}

FIELDS = '''
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    size = models.IntegerField(default=0)
    price = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    ratio = models.FloatField(default=0.0)
    active = models.BooleanField(default=True)
    released_on = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
'''

MODELS = {
    "ours": ("from audit.capture.models import GovernedModel\n", "class Item(GovernedModel):", ""),
    "simple_history": ("from simple_history.models import HistoricalRecords\n", "class Item(models.Model):",
                       "    history = HistoricalRecords()\n"),
    "auditlog": ("from auditlog.registry import auditlog\n", "class Item(models.Model):", ""),
    "reversion": ("import reversion\n", "@reversion.register()\nclass Item(models.Model):", ""),
    "pghistory": ("import pghistory\n", "@pghistory.track()\nclass Item(models.Model):", ""),
}
EXTRA_APPS = {
    "ours": ["core.outbox", "audit"], "simple_history": ["simple_history"],
    "auditlog": ["auditlog"], "reversion": ["reversion"], "pghistory": ["pgtrigger", "pghistory"],
}


# --- Worker: one process, one mode ----------------------------------------------------------

def _write_app(mode: str) -> Path:
    root = OUT_DIR / f"app_{mode}"
    package = root / "benchapp"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    imports, header, extra = MODELS[mode]
    register = "\nauditlog.register(Item)\n" if mode == "auditlog" else ""
    (package / "models.py").write_text(
        f"from django.db import models\n{imports}\n\nclass PlainItem(models.Model):\n{FIELDS}\n\n"
        f"{header}\n{FIELDS}{extra}{register}")
    return root


def _configure(mode: str) -> None:
    import django
    from django.conf import settings

    sys.path.insert(0, str(_write_app(mode)))
    if mode == "ours":
        sys.path.insert(0, str(REPO_ROOT))
    keys = OUT_DIR / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    if mode == "ours":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        for name in ("ledger.key", "attestation.key"):
            if not (keys / name).exists():
                (keys / name).write_bytes(Ed25519PrivateKey.generate().private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", *EXTRA_APPS[mode], "benchapp"],
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": DB_NAME, "USER": "postgres",
                               "HOST": "127.0.0.1", "PORT": "5432", "CONN_MAX_AGE": None}},
        LEDGER_ORIGIN="bench.example.org/ledger",
        WITNESS_POLICY_FILE="",  # no witnesses: the checkpoint after a batch is not pushed anywhere
        WITNESS_TIMEOUT_S=10.0,
        WITNESS_ALERT_EMAILS=[],
        LEDGER_SIGNING_KEY_FILE=keys / "ledger.key",
        ATTESTATION_SIGNING_KEY_FILE=keys / "attestation.key",
        PGTRIGGER_INSTALL_ON_MIGRATE=False,  # installed below, once the bench app's tables exist
        LOGGING_CONFIG=None,
    )
    django.setup()


def _new_item(model: Any, index: int) -> Any:
    from datetime import date
    from decimal import Decimal

    return model(name=f"item-{index}", description="a model under governance", size=index,
                 price=Decimal("12.50"), ratio=0.5, active=True, released_on=date(2026, 1, 1))


def _timed_rounds(actions: dict[str, Any], rounds: int, per_round: int) -> dict[str, float]:
    """Mean ms per call of each action, median over rounds, plus `ratio` (audited / plain).

    The actions interleave call by call (plain, audited, audited, plain, ...), each call timed
    on its own, so both see the same moment of the machine's load; `ratio` is the median over
    rounds of the two means of the same round."""
    samples: dict[str, list[float]] = {name: [] for name in actions}
    items = list(actions.items())
    for round_index in range(rounds):
        spent = dict.fromkeys(actions, 0.0)
        for step in range(per_round):
            for name, action in (items if step % 2 == 0 else items[::-1]):
                started = time.perf_counter()
                action(round_index * per_round + step)
                spent[name] += time.perf_counter() - started
        for name in actions:
            samples[name].append(spent[name] * 1000 / per_round)
    result = {name: statistics.median(values) for name, values in samples.items()}
    for name in samples:
        if name != "plain":
            key = "ratio" if name == "audited" else f"{name}_ratio"
            result[key] = statistics.median(
                audited / plain for audited, plain in zip(samples[name], samples["plain"], strict=True))
    return result


def worker(mode: str, quick: bool) -> dict[str, Any]:
    recreate_database(DB_NAME)
    _configure(mode)
    from contextlib import nullcontext

    from django.core.management import call_command
    from django.db import connection

    # Migrated apps first (history tables point at auth_user), then the bench app's tables.
    call_command("migrate", verbosity=0)
    call_command("migrate", run_syncdb=True, verbosity=0)
    if mode == "pghistory":
        import pgtrigger

        pgtrigger.install()
    from benchapp.models import Item, PlainItem

    context: Any = nullcontext
    if mode == "ours":
        from audit.capture import models as governed
        from audit.capture import record as capture_record
        from core.actor import acting_as

        actor_context = acting_as("system:bench")
        actor_context.__enter__()
    if mode == "reversion":
        import reversion

        context = reversion.create_revision

    rounds, per_round = (5, 100) if quick else (15, 200)
    plain_rows = [PlainItem.objects.create(name=f"p{i}") for i in range(50)]
    audited_rows = []
    for index in range(50):
        with context():
            audited_rows.append(Item.objects.create(name=f"a{index}"))

    def plain_save(step: int) -> None:
        row = plain_rows[step % len(plain_rows)]
        row.size = step
        row.save()

    def audited_save(step: int) -> None:
        row = audited_rows[step % len(audited_rows)]
        row.size = step
        with context():
            row.save()

    def plain_create(step: int) -> None:
        _new_item(PlainItem, step).save()

    def audited_create(step: int) -> None:
        with context():
            _new_item(Item, step).save()

    save_actions = {"plain": plain_save, "audited": audited_save}
    if mode == "ours":
        # The other before-state designs, interleaved in the same run: "locked" (the head locked
        # and the row re-read in a transaction of five statements, before the one-statement
        # save) and "snapshot" (rejected: the state the instance was loaded with, unchecked).
        def other_design(design: str) -> Any:
            rows = [Item.objects.create(name=f"{design}{index}") for index in range(50)]

            def design_save(step: int) -> None:
                row = rows[step % len(rows)]
                row.size = step
                previous, governed.BEFORE_STATE = governed.BEFORE_STATE, design
                try:
                    row.save()
                finally:
                    governed.BEFORE_STATE = previous

            return design_save

        save_actions["locked"] = other_design("locked")
        save_actions["snapshot"] = other_design("snapshot")
    for step in range(300):  # warm-up: connections, caches, ledger head
        for action in save_actions.values():
            action(step)
    saves = _timed_rounds(save_actions, rounds, per_round)
    creates = _timed_rounds({"plain": plain_create, "audited": audited_create}, rounds, per_round)
    result: dict[str, Any] = {
        "mode": mode,
        "plain_save_ms": saves["plain"], "audited_save_ms": saves["audited"], "save_ratio": saves["ratio"],
        "plain_create_ms": creates["plain"], "audited_create_ms": creates["audited"],
        "create_ratio": creates["ratio"],
    }
    for design in ("locked", "snapshot"):
        if f"{design}_ratio" in saves:
            result[f"{design}_save_ratio"] = saves[f"{design}_ratio"]
            result[f"{design}_save_ms"] = saves[design]
    if mode == "ours":
        from django.db import reset_queries
        from django.test.utils import CaptureQueriesContext

        # The ledger writes its rows on a raw psycopg cursor that Django does not log: count
        # the appends and add one statement for each (entries + Merkle nodes + head in one).
        appends = []
        original = capture_record.ledger_append_many

        def counting(*args: Any, **kwargs: Any) -> Any:
            appends.append(1)
            return original(*args, **kwargs)

        capture_record.ledger_append_many = counting
        with CaptureQueriesContext(connection) as captured:
            audited_save(10_000)
        capture_record.ledger_append_many = original
        # BEGIN and COMMIT are in Django's log already.
        result["statements_per_save"] = len(captured.captured_queries) + len(appends)
        result["statements"] = [query["sql"][:100] for query in captured.captured_queries] + \
            ["(ledger append: INSERT entries, INSERT nodes, UPDATE head in one statement)"] * len(appends)
        reset_queries()
        batch = 1000 if quick else 5000
        result.update(_bulk(Item, PlainItem, batch))
    return result


def _bulk(Item: Any, PlainItem: Any, batch: int) -> dict[str, float]:
    from django.db.models import F

    timings: dict[str, list[float]] = {key: [] for key in ("plain_bulk_create", "ours_bulk_create",
                                                             "plain_update", "ours_update")}
    for repeat in range(3):
        for model, key in ((PlainItem, "plain"), (Item, "ours")):
            objs = [_new_item(model, repeat * batch + i) for i in range(batch)]
            started = time.perf_counter()
            created = model.objects.bulk_create(objs, batch_size=1000)
            timings[f"{key}_bulk_create"].append((time.perf_counter() - started) * 1000 / batch)
            first, last = created[0].pk, created[-1].pk
            started = time.perf_counter()
            model.objects.filter(pk__gte=first, pk__lte=last).update(size=F("size") + 1, description="bulk")
            timings[f"{key}_update"].append((time.perf_counter() - started) * 1000 / batch)
    return {f"{key}_ms_per_row": statistics.median(values) for key, values in timings.items()}


# --- Driver ---------------------------------------------------------------------------------

def _anchor_python() -> Path | None:
    python = ANCHOR_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ANCHOR_VENV)], check=True)
        installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(ANCHOR_REQUIREMENTS)],
                                   capture_output=True, text=True)
        if installed.returncode != 0:
            print(f"anchors not installed: {installed.stderr[-500:]}", file=sys.stderr)
            return None
    return python


def _pinned(package: str) -> str:
    for line in ANCHOR_REQUIREMENTS.read_text().splitlines():
        if line.lower().startswith(package.lower() + "=="):
            return line.strip()
    return package


def _run_worker(python: Path, mode: str, quick: bool) -> dict[str, Any] | None:
    command = [str(python), str(Path(__file__).resolve()), "--worker", mode] + (["--quick"] if quick else [])
    # The worker imports bench.common: the repository on its path (the anchors' venv has no install of it).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, cwd=str(BENCH_DIR), timeout=1800, env=env)
    if done.returncode != 0:
        print(f"{mode} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict[str, Any]]:
    ours = _run_worker(Path(sys.executable), "ours", quick)
    anchor_python = _anchor_python()
    anchors = {mode: _run_worker(anchor_python, mode, quick) if anchor_python else None for mode in ANCHORS}
    rows: list[dict[str, Any]] = []
    if ours is None:
        return rows

    def ratio(result: dict[str, Any] | None, kind: str = "save") -> float | None:
        return None if result is None else round(result[f"{kind}_ratio"], 2)

    for mode, name in ANCHORS.items():
        rows.append({"what": "audited save (UPDATE), PostgreSQL autocommit, x plain save", "ours": ratio(ours),
                     "anchor": ratio(anchors[mode]), "anchor_name": _pinned(name), "unit": "x plain",
                     "goal": f"<= {GOAL_RATIO}"})
    for mode, name in ANCHORS.items():
        rows.append({"what": "audited create (INSERT), PostgreSQL autocommit, x plain create",
                     "ours": ratio(ours, "create"), "anchor": ratio(anchors[mode], "create"),
                     "anchor_name": _pinned(name), "unit": "x plain", "goal": f"<= {GOAL_RATIO}"})
    rows.append({"what": "save, ms (plain | ours)", "ours": round(ours["audited_save_ms"], 3),
                 "anchor": round(ours["plain_save_ms"], 3), "anchor_name": "plain Django save, same run",
                 "unit": "ms", "goal": f"<= {GOAL_RATIO} x plain"})
    rows.append({"what": "statements per audited save (incl. BEGIN/COMMIT)", "ours": ours["statements_per_save"],
                 "anchor": 1, "anchor_name": "plain save in autocommit", "unit": "statements", "goal": "-"})
    rows.append({"what": "one-statement guarded save vs the locked 5-statement save, x plain save",
                 "ours": ratio(ours), "anchor": round(ours["locked_save_ratio"], 2),
                 "anchor_name": "ours, head lock + re-read in a transaction (same run)", "unit": "x plain",
                 "goal": f"<= {GOAL_RATIO}"})
    rows.append({"what": "before-state: guarded (true before) vs snapshot from load, x plain save",
                 "ours": ratio(ours), "anchor": round(ours["snapshot_save_ratio"], 2),
                 "anchor_name": "ours with a stale-prone snapshot (same run)", "unit": "x plain",
                 "goal": "correct under concurrency"})
    for kind in ("bulk_create", "update"):
        rows.append({"what": f"{'bulk_create' if kind == 'bulk_create' else 'QuerySet.update()'} per row, captured",
                     "ours": round(ours[f"ours_{kind}_ms_per_row"], 4),
                     "anchor": round(ours[f"plain_{kind}_ms_per_row"], 4),
                     "anchor_name": "same call on the plain model (none of the anchors captures it)",
                     "unit": "ms/row", "goal": "captured"})
    return rows


def main() -> None:
    if "--worker" in sys.argv:
        mode = sys.argv[sys.argv.index("--worker") + 1]
        print(json.dumps(worker(mode, "--quick" in sys.argv)))
        return
    rows = run(quick="--quick" in sys.argv)
    for row in rows:
        ours, anchor = row["ours"], row["anchor"]
        print(f"{row['what']:<72} ours={ours!s:<8} {row['anchor_name']:<42} anchor={anchor!s:<8} "
              f"[{row['unit']}] goal {row['goal']}")


if __name__ == "__main__":
    main()
