"""Sensitive data at rest (issue 18): the cost of sealing, measured beside the same work in clear.

Run: ``.venv/bin/python bench/bench_sealed.py [--quick]``.

* auditing an encrypted CSV against the same file in clear: the same reader and engine code, one
  child process each (so peak RSS is that child's own), with the sealed file streamed through
  ``core.sealed.SealedReader`` (every chunk authenticated) and the clear one read natively by pyarrow;
* sealing an upload: ``SealedWriter`` fed 64 KiB pieces (Django's upload chunk size) into a file,
  against writing the same pieces in clear (what the upload path did before).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from bench.bench_fairness import _measure_child, write_csv  # noqa: E402
from core import sealed  # noqa: E402

TARGETS: dict[str, tuple[float, str]] = {
    "wall time, auditing a 10,000,000-row encrypted CSV": (1.15, "x clear"),
    "peak RSS, auditing a 10,000,000-row encrypted CSV": (500.0, "MB"),
    "sealing a 1 GB upload": (500.0, "MB/s"),
}

_AUDIT_CHILD = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from core.sealed import SealedPath
from governance.fairness import reader
from governance.fairness.engine import ConfusionAccumulator, compute_report
key = sys.argv[3]
source = SealedPath(sys.argv[1], data_key=bytes.fromhex(key)) if key else Path(sys.argv[1])
start = time.perf_counter()
accumulator = ConfusionAccumulator(["group"])
rows = reader._accumulate(reader._csv_batches(source, ["y_true", "y_pred", "group"], 1_000_000, None), accumulator,
                          y_true="y_true", y_pred="y_pred", score=None, threshold=None)
report = compute_report(accumulator.counts())
print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows, "groups": report["groups"]}))
"""


def bench_audit(rows: int, say: Any) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-sealed-") as folder:
        clear = Path(folder) / "audit.csv"
        say(f"writing a {rows:,}-row CSV ...")
        write_csv(clear, rows, seed=11)
        size_mb = clear.stat().st_size / 1e6
        key = sealed.new_data_key()
        sealed_path = Path(folder) / "audit.csv.sealed"
        with clear.open("rb") as source, sealed_path.open("wb") as sink:
            sealed.seal_stream(source, sink, data_key=key, file_id=sealed.new_file_id())
        say(f"auditing it in clear and sealed ({size_mb:,.0f} MB), one child process each ...")
        in_clear = _measure_child(_AUDIT_CHILD, str(clear), str(REPO_ROOT), "")
        encrypted = _measure_child(_AUDIT_CHILD, str(sealed_path), str(REPO_ROOT), key.hex())
    assert encrypted["child"]["groups"] == in_clear["child"]["groups"], "the sealed audit differs from the clear one"
    assert encrypted["child"]["rows"] == rows
    return [
        {"what": f"wall time, auditing a {rows:,}-row encrypted CSV", "ours": encrypted["child"]["seconds"],
         "anchor": in_clear["child"]["seconds"], "anchor_name": f"the same audit of the file in clear ({size_mb:,.0f} MB)",
         "unit": "s"},
        {"what": f"peak RSS, auditing a {rows:,}-row encrypted CSV", "ours": encrypted["peak_kib"] / 1024,
         "anchor": in_clear["peak_kib"] / 1024, "anchor_name": "the same audit of the file in clear", "unit": "MB"},
    ]


def bench_seal(megabytes: int, say: Any) -> list[dict[str, Any]]:
    piece = os.urandom(64 << 10)
    pieces = (megabytes << 20) // len(piece)
    say(f"sealing {megabytes:,} MB in 64 KiB pieces, and writing them in clear ...")
    timings = {}
    with tempfile.TemporaryDirectory(prefix="bench-sealed-") as folder:
        for mode in ("clear", "sealed"):
            path = Path(folder) / mode
            start = time.perf_counter()
            with path.open("wb") as sink:
                if mode == "sealed":  # hashes the plaintext as it seals it
                    writer = sealed.SealedWriter(sink, data_key=sealed.new_data_key(), file_id=sealed.new_file_id(),
                                                 close_sink=False)
                    for _ in range(pieces):
                        writer.write(piece)
                    writer.close()
                else:  # the upload path before: hash and write
                    digest = hashlib.sha256()
                    for _ in range(pieces):
                        digest.update(piece)
                        sink.write(piece)
                sink.flush()
            timings[mode] = time.perf_counter() - start
            path.unlink()
    size_mb = pieces * len(piece) / 1e6

    class Discard(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            return len(data)

    start = time.perf_counter()
    writer = sealed.SealedWriter(Discard(), data_key=sealed.new_data_key(), file_id=sealed.new_file_id(),
                                 hash_plaintext=False)
    for _ in range(pieces):
        writer.write(piece)
    writer.close()
    seal_only = size_mb / (time.perf_counter() - start)
    aead = AESGCM(sealed.new_data_key())
    block = os.urandom(sealed.DEFAULT_CHUNK_BYTES)
    start = time.perf_counter()
    for index in range(pieces * len(piece) // len(block)):
        aead.encrypt(index.to_bytes(12, "big"), block, b"")
    raw = size_mb / (time.perf_counter() - start)
    return [{"what": "AES-256-GCM sealing alone (no digest, no disk)", "ours": seal_only, "anchor": raw,
             "anchor_name": "AESGCM.encrypt of 1 MiB blocks, nothing else", "unit": "MB/s"},
            {"what": f"sealing a {megabytes / 1024:g} GB upload" if megabytes >= 1024 else f"sealing a {megabytes} MB upload",
             "ours": size_mb / timings["sealed"], "anchor": size_mb / timings["clear"],
             "anchor_name": "hashing and writing the same pieces in clear (page cache)", "unit": "MB/s"}]


def run(quick: bool) -> list[dict[str, Any]]:
    def say(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    return [*bench_audit(1_000_000 if quick else 10_000_000, say), *bench_seal(128 if quick else 1024, say)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M rows and 128 MB")
    arguments = parser.parse_args()
    rows = run(arguments.quick)
    print(f"load average before/after: {os.getloadavg()}")
    for row in rows:
        ratio = row["ours"] / row["anchor"] if row["anchor"] else float("nan")
        print(f"{row['what']:55} ours {row['ours']:10.3f} {row['unit']:5} anchor {row['anchor']:10.3f} "
              f"ratio {ratio:6.3f}  ({row['anchor_name']})")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
