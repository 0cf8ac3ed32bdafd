"""What an audit bundle carries of monitoring: the ledger subjects (profiles, monitors, threshold
changes, runs, alerts with their acknowledgements) and each run's result as a file whose SHA-256 is
the `result_sha256` its `monitor_run.completed` entry records, so `verify.py` can recompute PSI,
Jensen-Shannon and chi-square from the stored counts offline."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from governance.monitoring.models import Alert, Monitor, MonitorRun, ReferenceProfile, ThresholdChange


def run_result_bytes(run: MonitorRun) -> bytes:
    """The canonical JSON the run's digest was computed over (sorted keys, no spaces)."""
    return json.dumps(run.result, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def bundle_subjects(versions: Iterable[Any]) -> set[tuple[str, str]]:
    versions = list(versions)
    monitors = list(Monitor.objects.filter(version__in=versions).values_list("pk", flat=True))
    subjects: set[tuple[str, str]] = {("monitoring.monitor", str(pk)) for pk in monitors}
    subjects.update(("monitoring.referenceprofile", str(pk))
                    for pk in ReferenceProfile.objects.filter(version__in=versions).values_list("pk", flat=True))
    subjects.update(("monitoring.thresholdchange", str(pk))
                    for pk in ThresholdChange.objects.filter(monitor__in=monitors).values_list("pk", flat=True))
    subjects.update(("monitoring.monitorrun", str(pk))
                    for pk in MonitorRun.objects.filter(monitor__in=monitors).values_list("pk", flat=True))
    subjects.update(("monitoring.alert", str(pk))
                    for pk in Alert.objects.filter(monitor__in=monitors).values_list("pk", flat=True))
    return subjects


def bundle_files(versions: Iterable[Any]) -> dict[str, bytes]:
    """monitoring/run-<id>.json per run of the versions' monitors; a run whose stored result no
    longer hashes to its recorded digest is carried anyway (the verifier then fails on it)."""
    files: dict[str, bytes] = {}
    for run in MonitorRun.objects.filter(monitor__version__in=list(versions)).order_by("pk").iterator(100):
        files[f"monitoring/run-{run.pk:06d}.json"] = run_result_bytes(run)
    return files


def result_digest_matches(run: MonitorRun) -> bool:
    return hashlib.sha256(run_result_bytes(run)).hexdigest() == run.result_sha256
