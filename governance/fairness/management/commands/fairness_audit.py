"""Audit a CSV or Parquet file directly, for analysts: nothing is stored and nothing is recorded."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.fairness.engine import RATE_NAMES, FairnessInputError
from governance.fairness.reader import audit_file

EXIT_BAD_INPUT = 2
DISPARITY_COLUMNS = ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference",
                     "equalized_odds_ratio", "equal_opportunity_difference")


def _number(value: Any) -> str:
    return "null" if value is None else f"{value:.4f}"


class Command(BaseCommand):
    help = ("Fairness metrics of a CSV or Parquet file: per-group rates (and every intersection of the "
            "sensitive columns), bootstrap intervals and Fairlearn-style disparities. Bad input exits with 2.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--csv", required=True, metavar="FILE", help="CSV or Parquet file (detected by content)")
        parser.add_argument("--y-true", required=True, metavar="COL", help="Column of true labels")
        prediction = parser.add_mutually_exclusive_group(required=True)
        prediction.add_argument("--y-pred", metavar="COL", help="Column of predicted labels")
        prediction.add_argument("--score", metavar="COL", help="Column of scores (needs --threshold)")
        parser.add_argument("--threshold", type=float, metavar="T",
                            help="A score at or above T is a positive prediction")
        parser.add_argument("--sensitive", action="append", required=True, metavar="COL",
                            help="Sensitive column; repeat for several (intersections are reported too)")
        parser.add_argument("--pos-label", metavar="V", help="The positive label (default 1)")
        parser.add_argument("--bootstrap", type=int, default=0, metavar="N", help="Bootstrap replicates for CIs")
        parser.add_argument("--seed", type=int, metavar="S", help="Seed of the bootstrap, for repeatable runs")
        parser.add_argument("--min-group-size", type=int, default=30, metavar="N",
                            help="Smaller groups are flagged and left out of disparities (default 30)")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["score"] is not None and options["threshold"] is None:
            raise CommandError("--score needs --threshold", returncode=EXIT_BAD_INPUT)
        if options["y_pred"] is not None and options["threshold"] is not None:
            raise CommandError("--threshold goes with --score, not --y-pred", returncode=EXIT_BAD_INPUT)
        if options["bootstrap"] < 0:
            raise CommandError("--bootstrap must be >= 0", returncode=EXIT_BAD_INPUT)
        try:
            report = audit_file(
                options["csv"], y_true=options["y_true"], y_pred=options["y_pred"], score=options["score"],
                threshold=options["threshold"], sensitive=options["sensitive"], pos_label=options["pos_label"],
                bootstrap=options["bootstrap"], seed=options["seed"], min_group_size=options["min_group_size"])
        except FairnessInputError as error:
            raise CommandError(f"{error.code}: {error}", returncode=EXIT_BAD_INPUT) from error
        if options["json"]:
            shape = {key: report[key] for key in ("rows", "overall", "groups", "disparities")}
            self.stdout.write(json.dumps(shape, indent=2, sort_keys=False))
            return
        self._table(report)

    def _table(self, report: dict[str, Any]) -> None:
        write = self.stdout.write
        write(f"rows: {report['rows']}   input sha256: {report.get('input_sha256', '')}")
        header = ["group", "count", *RATE_NAMES, "flags"]
        rows = [["overall", str(report["overall"]["count"]), *(_number(report["overall"][r]) for r in RATE_NAMES), ""]]
        for group in report["groups"]:
            name = " & ".join(f"{k}={v}" for k, v in group["attributes"].items())
            rows.append([name, str(group["count"]), *(_number(group[r]) for r in RATE_NAMES), ",".join(group["flags"])])
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        write("")
        write("disparities:")
        for key, disparity in report["disparities"].items():
            write(f"  {key} (groups compared: {disparity['groups_compared']})")
            for name in DISPARITY_COLUMNS:
                write(f"    {name}: {_number(disparity[name])}")
            lowest = [row for row in disparity["impact_ratios"] if row["impact_ratio_to_best"] is not None]
            if lowest:
                worst = min(lowest, key=lambda row: row["impact_ratio_to_best"])
                name = " & ".join(f"{k}={v}" for k, v in worst["attributes"].items())
                write(f"    lowest impact ratio to best: {_number(worst['impact_ratio_to_best'])} ({name})")
