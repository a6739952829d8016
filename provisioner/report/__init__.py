"""`provisioner report`: cost, usage and right-sizing over the history store.

`aggregate` holds the pure functions over lists of usage records, `render` turns their result into
a table, JSON or CSV, `plot` draws cost over time as SVG, `period` reads `--since`.
"""

from provisioner.report.aggregate import ReportOptions, build_report, run_cost
from provisioner.report.period import parse_since

__all__ = ["ReportOptions", "build_report", "parse_since", "run_cost"]
