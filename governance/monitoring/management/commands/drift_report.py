"""Drift of a current file against a reference file, for analysts: nothing is stored or recorded."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.monitoring.drift import CORRECTIONS, DriftInputError, build_profiles, drift_report
from governance.monitoring.reader import choose_columns, file_columns, read_columns

EXIT_BAD_INPUT = 2
JSON_COLUMN_KEYS = ("column", "kind", "n_ref", "n_cur", "missing", "ks", "wasserstein", "wasserstein_normed", "psi", "js",
                    "chi2", "novel", "drift")


def file_drift_report(reference: str, current: str, *, columns: list[str], categorical: list[str],
                      correction: str = "benjamini-hochberg", alpha: float = 0.05) -> dict[str, Any]:
    """Profile the reference file, compare the current file with it; raises DriftInputError."""
    _, names, text_columns = file_columns(reference)
    file_columns(current)
    numeric_names, categorical_names = choose_columns(names, text_columns, columns, categorical)
    reference_columns = dict(read_columns(reference, numeric_names, categorical_names))
    rows_reference = len(next(iter(reference_columns.values()))) if reference_columns else 0
    if rows_reference == 0:
        raise DriftInputError("drift_empty_input", f"{reference} has no data rows")
    profiles = build_profiles(reference_columns, categorical=categorical_names)
    del reference_columns
    current_columns = dict(read_columns(current, numeric_names, categorical_names))
    rows_current = len(next(iter(current_columns.values()))) if current_columns else 0
    if rows_current == 0:
        raise DriftInputError("drift_empty_input", f"{current} has no data rows")
    report = drift_report(profiles, current_columns, correction=correction, alpha=alpha)  # type: ignore[arg-type]
    report["rows"] = {"reference": rows_reference, "current": rows_current}
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
