"""A writer process for the concurrency test: appends COUNT entries, one per transaction.

    ledger_writer.py WRITER COUNT BATCH MODE
MODE: `own` (subjects of its own) or `shared` (a few subjects every writer appends about), with
`+autocommit` to append single entries outside any transaction (one statement each).
"""

import os
import sys
from contextlib import nullcontext

import django


def _subject(writer: str, index: int, shared: bool) -> tuple[str, str]:
    return ("test.shared", f"s{index % 3}") if shared else ("test.item", f"{writer}-{index}")


def main() -> None:
    writer, count, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # "shared": every writer appends about the same few subjects (subject_prev under contention).
    mode = sys.argv[4] if len(sys.argv) > 4 else "own"
    shared = mode.startswith("shared")
    autocommit = mode.endswith("+autocommit")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")
    django.setup()
    from django.db import transaction

    from audit.ledger import draft, ledger_append, ledger_append_many

    if batch > 1:
        for start in range(0, count, batch):
            ledger_append_many([draft(actor=f"system:writer{writer}", action="test.concurrent",
                                      subject=_subject(writer, index, shared), payload={"index": index})
                                for index in range(start, min(start + batch, count))], checkpoint=False)
        return
    for index in range(count):
        with nullcontext() if autocommit else transaction.atomic():
            ledger_append(actor=f"system:writer{writer}", action="test.concurrent",
                          subject=_subject(writer, index, shared), payload={"index": index})


if __name__ == "__main__":
    main()
