"""The real witness process (witness/witness.py) for tests, and a small in-memory log to feed it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import merkle, note

WITNESS_PY = Path(__file__).resolve().parents[2] / "witness" / "witness.py"


@dataclass
class WitnessProcess:
    state: Path
    vkey: str
    url: str = ""
    process: subprocess.Popen[str] | None = None

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(WITNESS_PY), "--state", str(self.state), *args],
                              capture_output=True, text=True, timeout=60, check=False)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WITNESS_PY), "--state", str(self.state), "serve", "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on " not in line:
            self.stop()
            raise RuntimeError(f"the witness did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1].strip().rstrip("/")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def witness_create(state: Path, *, name: str = "witness.test/w1") -> WitnessProcess:
    """Run `keygen` in a fresh state folder; the process is not started yet."""
    result = subprocess.run([sys.executable, str(WITNESS_PY), "--state", str(state), "keygen", "--name", name],
                            capture_output=True, text=True, timeout=60, check=True)
    return WitnessProcess(state=state, vkey=result.stdout.strip())


@dataclass
class MemoryLog:
    """A log held in memory: leaves, RFC 9162 roots and proofs, checkpoints signed with its own key."""

    origin: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    leaves: list[bytes] = field(default_factory=list)

    @property
    def vkey(self) -> str:
        return note.vkey(self.origin, self.key.public_key().public_bytes_raw())

    def append(self, *items: bytes) -> None:
        self.leaves.extend(merkle.leaf_hash(item) for item in items)

    def root(self, size: int | None = None) -> bytes:
        return merkle.root_hash(self.leaves[: len(self.leaves) if size is None else size])

    def checkpoint(self, size: int | None = None) -> str:
        size = len(self.leaves) if size is None else size
        body = note.checkpoint_body(self.origin, size, self.root(size))
        return note.sign_note(body, name=self.origin, private_key=self.key)

    def consistency(self, first: int, second: int | None = None) -> list[bytes]:
        second = len(self.leaves) if second is None else second

        def lookup(wanted: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
            return {(level, index): merkle.root_hash(self.leaves[index << level: (index + 1) << level])
                    for level, index in wanted}

        return merkle.build_proof(merkle.consistency_proof_ranges(first, second), lookup)
