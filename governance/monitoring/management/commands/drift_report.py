"""Drift of a current file against a reference file, for analysts: nothing is stored or recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.monitoring.drift import (
    CORRECTIONS,
    ColumnProfile,
    DriftInputError,
    drift_report_columns,
    profile_categorical,
    profile_numeric,
)
from governance.monitoring.reader import choose_columns, file_columns, read_columns

EXIT_BAD_INPUT = 2
JSON_COLUMN_KEYS = ("column", "kind", "n_ref", "n_cur", "missing", "ks", "wasserstein", "wasserstein_normed", "psi", "js",
                    "chi2", "novel", "drift")


def file_drift_report(reference: str, current: str, *, columns: list[str], categorical: list[str],
                      correction: str = "benjamini-hochberg", alpha: float = 0.05) -> dict[str, Any]:
    """Profile the reference file and compare the current file with it, one column at a time (the
    reference column, its profile and the current column are all that is held); raises DriftInputError."""
    _, names, text_columns = file_columns(reference)
    file_columns(current)
    numeric_names, categorical_names = choose_columns(names, text_columns, columns, categorical)
    rows: dict[str, int] = {}

    def pairs() -> Iterator[tuple[ColumnProfile, Any]]:
        sides = (read_columns(reference, numeric_names, categorical_names, arrow_text=True),
                 read_columns(current, numeric_names, categorical_names, arrow_text=True))
        for _ in range(len(numeric_names) + len(categorical_names)):
            for side, path, columns_of in zip(("reference", "current"), (reference, current), sides, strict=True):
                name, values = next(columns_of)
                rows.setdefault(side, len(values))
                if rows[side] == 0:
                    raise DriftInputError("drift_empty_input", f"{path} has no data rows")
                if side == "reference":
                    profile = (profile_categorical(name, values) if name in categorical_names
                               else profile_numeric(name, values, sort_in_place=True))
                    del values
            yield profile, values
            del profile, values

    report = drift_report_columns(pairs(), correction=correction, alpha=alpha, given_up=True)  # type: ignore[arg-type]
    if not rows:
        raise DriftInputError("drift_empty_input", f"{reference} has no columns to compare")
    report["rows"] = rows
    return report


class Command(BaseCommand):
    help = ("Drift of a current CSV or Parquet file against a reference file: per numeric column KS, Wasserstein, "
            "PSI and Jensen-Shannon; per categorical column chi-square of homogeneity; p-values adjusted across columns. "
            "Nothing is stored or recorded. Bad input exits with 2.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reference", required=True, metavar="FILE", help="Reference CSV or Parquet file")
        parser.add_argument("--current", required=True, metavar="FILE", help="Current CSV or Parquet file")
        parser.add_argument("--column", action="append", default=[], metavar="C",
                            help="Numeric column to compare; repeat for several (default: every column)")
        parser.add_argument("--categorical", action="append", default=[], metavar="C",
                            help="Categorical column to compare; repeat for several")
        parser.add_argument("--correction", default="benjamini-hochberg", choices=CORRECTIONS,
                            help="Adjustment across columns (default benjamini-hochberg)")
        parser.add_argument("--alpha", type=float, default=0.05, help="Significance level (default 0.05)")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = file_drift_report(options["reference"], options["current"], columns=options["column"],
                                       categorical=options["categorical"], correction=options["correction"],
                                       alpha=options["alpha"])
        except DriftInputError as error:
            raise CommandError(f"{error.code}: {error}", returncode=EXIT_BAD_INPUT) from error
        if options["json"]:
            shape = {"rows": report["rows"],
                     "columns": [{key: column[key] for key in JSON_COLUMN_KEYS} for column in report["columns"]],
                     "correction": report["correction"]}
            for column in shape["columns"]:
                if column["ks"] is not None:
                    column["ks"] = {"statistic": column["ks"]["statistic"], "pvalue": column["ks"]["pvalue"]}
            self.stdout.write(json.dumps(shape, indent=2))
            return
        write = self.stdout.write
        write(f"rows: reference {report['rows']['reference']}, current {report['rows']['current']}; "
              f"p-values adjusted by {report['correction']}")
        for column in report["columns"]:
            effect = column["effect_size"]
            flag = "DRIFT" if column["drift"] else ("significant, small effect" if column["significant"] else "ok")
            write(f"  {column['column']} ({column['kind']}): p={column['pvalue']:.3g} adjusted={column['pvalue_adjusted']:.3g} "
                  f"{effect['name']}={effect['value']:.4f} psi={column['psi']:.4f} js={column['js']:.4f}"
                  + (f" novel={','.join(column['novel'])}" if column["novel"] else "") + f"  {flag}")
