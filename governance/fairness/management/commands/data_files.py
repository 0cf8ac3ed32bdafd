"""Sensitive data files at rest: rotate the key-encryption key, seal files stored before
encryption, erase expired files or on request. Every change is a ledger entry (vault services)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import ServiceError
from governance.fairness.models import SealedFile
from governance.fairness.services import vault

ACTOR = "system:data_files"


class Command(BaseCommand):
    help = ("rotate: add a new key-encryption key and re-wrap every data key under it (files untouched); "
            "rewrap: re-wrap under the active key; encrypt-existing: seal files stored in clear, in place; "
            "expire: erase files past retention; erase: erase a file (--file-id), or the rows of a person "
            "(--file-id with --column and --value, or --column and --value over every file holding that column); "
            "scan-ledger: fail if a ledger entry holds a value of a declared identifier or sensitive column.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("operation", choices=["rotate", "rewrap", "encrypt-existing", "expire", "erase", "scan-ledger"])
        parser.add_argument("--file-id", default="", help="Hex id of one sealed file")
        parser.add_argument("--column", default="", help="Row-level erasure: the identifier column")
        parser.add_argument("--value", default="", help="Row-level erasure: the person's identifier (never logged)")
        parser.add_argument("--request", default="", help="Reference of the erasure request (ticket id)")

    def handle(self, *args: Any, **options: Any) -> None:
        operation = options["operation"]
        try:
            if operation == "rotate":
                kek_id = vault.keyring_add()
                count = vault.sealed_files_rewrap(by=ACTOR)
                self.stdout.write(f"active key-encryption key {kek_id}; {count} key(s) re-wrapped")
            elif operation == "rewrap":
                self.stdout.write(f"{vault.sealed_files_rewrap(by=ACTOR)} key(s) re-wrapped")
            elif operation == "encrypt-existing":
                names = vault.sealed_files_encrypt_existing(by=ACTOR)
                self.stdout.write(f"{len(names)} file(s) sealed in place")
            elif operation == "scan-ledger":
                findings = vault.ledger_personal_data_findings()
                for finding in findings:
                    self.stdout.write(f"seq {finding['seq']} ({finding['action']}): a value of {finding['column']}")
                if findings:
                    raise CommandError(f"{len(findings)} ledger entr(y/ies) hold personal data")
                self.stdout.write("no declared identifier or singular sensitive value in any ledger entry")
            elif operation == "expire":
                self.stdout.write(f"{len(vault.sealed_files_expire(by=ACTOR))} file(s) erased (retention ended)")
            else:
                self._erase(options)
        except ServiceError as error:
            raise CommandError(f"{error.code}: {error}") from error

    def _erase(self, options: dict[str, Any]) -> None:
        column, value, request = options["column"], options["value"], options["request"]
        live = SealedFile.objects.filter(erased_at__isnull=True)
        if options["file_id"]:
            record = live.filter(file_id=options["file_id"]).first()
            if record is None:
                raise CommandError("no live sealed file has that id")
            records = [record]
        elif column and value:
            records = [r for r in live if column in r.identifier_columns]
        else:
            raise CommandError("give --file-id, or --column and --value")
        for record in records:
            if column and value:
                try:
                    vault.sealed_file_erase_rows(by=ACTOR, record=record, column=column, value=value,
                                                 request_ref=request)
                except ServiceError as error:
                    if error.code != "data_erasure_no_rows":
                        raise
                    continue
                self.stdout.write(f"{record.file_id}: rows erased, rewritten under a new key")
            else:
                vault.sealed_file_erase(by=ACTOR, record=record, reason="erasure_request", request_ref=request)
                self.stdout.write(f"{record.file_id}: erased")
