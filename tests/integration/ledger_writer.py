"""A writer process for the concurrency test: appends COUNT entries, one per transaction."""

import os
import sys

import django


def main() -> None:
    writer, count, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")
    django.setup()
    from django.db import transaction

    from audit.ledger import draft, ledger_append, ledger_append_many

    if batch > 1:
        for start in range(0, count, batch):
            ledger_append_many([draft(actor=f"system:writer{writer}", action="test.concurrent",
                                      subject=("test.item", f"{writer}-{index}"), payload={"index": index})
                                for index in range(start, min(start + batch, count))], checkpoint=False)
        return
    for index in range(count):
        with transaction.atomic():
            ledger_append(actor=f"system:writer{writer}", action="test.concurrent",
                          subject=("test.item", f"{writer}-{index}"), payload={"index": index})


if __name__ == "__main__":
    main()
