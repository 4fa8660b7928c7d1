"""Tables of our results: seed summaries in long format, the thesis's tables with our numbers
beside theirs, method tables with reference rows, and the helpers the notebooks call.

Rooms: `summaries` (`aggregate`), `formatting` (`Cell`, `Table`, method labels), `methods` (the
thesis's tables, method tables), `verdicts` (explainers against the reference maps, the claims'
tally), `robustness` (other metrics, thresholds, slices), `extras` (the smaller tables), `health`
(runs that never learned).

The thesis's numbers live in `thesislib.thesis`, claims and verdicts in `thesislib.claims`.
Labels, directions, units and ranges of metrics come from `thesislib.metrics.REGISTRY` only; every
other key a table shows (families, classes, columns) is labelled by `thesislib.labels`. A shown
number is a `Cell`: "mean ± sd" to one decimal, its 95 % interval in the hover, marked when best.
"""

from thesislib.tables.extras import best_settings, correlation_table, expert_regions, generalisation_gap, model_points
from thesislib.tables.formatting import (FLAG, FLAG_RULE, Cell, Table, fmt, method_kind, method_label, readable_table,
                                         to_html)
from thesislib.tables.health import run_health
from thesislib.tables.methods import REFERENCE_BLOCK, TABLE_METRICS, conventions_table, method_table, thesis_table
from thesislib.tables.robustness import ranking_agreement, slice_conclusions, threshold_curve
from thesislib.tables.summaries import aggregate, interval, split_families, with_defaults
from thesislib.tables.verdicts import against_references, references_summary, verdict_summary

__all__ = ["Table", "aggregate", "thesis_table", "method_table", "TABLE_METRICS", "FLAG", "FLAG_RULE",
           "REFERENCE_BLOCK", "method_label", "method_kind", "expert_regions", "best_settings", "generalisation_gap",
           "model_points", "correlation_table", "against_references", "references_summary", "run_health",
           "conventions_table", "verdict_summary", "ranking_agreement", "threshold_curve", "slice_conclusions",
           "split_families", "Cell", "readable_table", "to_html", "fmt", "interval", "with_defaults"]
