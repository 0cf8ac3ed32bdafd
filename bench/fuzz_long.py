"""The long fuzzing pass: schemathesis over every API operation, several thousand cases.

    python bench/fuzz_long.py [--examples 150] [--database-url postgres://...]

Runs tests/integration/test_fuzz_api.py with FUZZ_EXAMPLES raised (the CI pass uses 12 per
operation) and prints how many cases ran per operation and status code. Exit status is pytest's:
0 means no 5xx and no response that breaks its own schema.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=150, help="examples per operation (default 150)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""),
                        help="default: the environment's DATABASE_URL, else SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "cases.log"
        env = {**os.environ, "FUZZ_EXAMPLES": str(args.examples), "FUZZ_LOG": str(log),
               "VAR_DIR": str(Path(folder) / "var")}
        if args.database_url:
            env["DATABASE_URL"] = args.database_url
        started = time.perf_counter()
        completed = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                    "tests/integration/test_fuzz_api.py"], cwd=ROOT, env=env)
        elapsed = time.perf_counter() - started
        lines = log.read_text().splitlines() if log.exists() else []
    by_status = collections.Counter(line.rsplit(" ", 1)[1] for line in lines)
    by_operation = collections.Counter(line.rsplit(" ", 1)[0] for line in lines)
    print(f"\n{len(lines)} cases over {len(by_operation)} operations in {elapsed:.0f} s; "
          f"status codes: {dict(sorted(by_status.items()))}")
    five_xx = sum(count for code, count in by_status.items() if code.startswith("5"))
    print(f"5xx responses: {five_xx}; pytest exit status {completed.returncode}")
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())
