"""The report: execute the notebooks with papermill and stitch them into one self-contained HTML file.

`build_report(params="params/default")` runs every notebook of `notebooks/` that has a params
file in the folder (in the order of `NOTEBOOKS`, 00..09), with the current Python environment as
kernel and the project root as working directory, saving each executed notebook under the runs
folder. `sets` (`thesislib report --set KEY=VALUE`) change parameters over each notebook's merged
params (`apply_sets`); `params_for` gives one notebook's params as they run (`thesislib params`).
It then writes one HTML page: the summary first (`thesislib.summary.at_a_glance`), a header
(params set, data and its hash, git commit and whether the tree was dirty, the command, package
versions, date, machine, wall time), a table of contents linking each section's executed notebook
and params file, the methods, and every notebook's text, tables and figures, without code, with a
scope box atop each section that sets the thesis beside ours. Beside the page: summary.json and
the data files data/results.csv and data/per_image.csv. Figures are numbered through the report, each with its caption (carried in the
figure's display metadata, `thesislib.figures`) beneath it and as its alt text; a heading whose
id repeats across sections gets its section's name as a prefix, so every id is unique. A
notebook that fails is named in the report with the failing cell and error; its executed notebook
is kept.
Each notebook's last cell records its key numbers (`record`, `key_numbers`) as
<notebook>.results.json beside its executed notebook, for the summary and the tests.

One module per job: `params` (a notebook's params as they run), `execute` (one notebook through
papermill), `page` (the HTML page), `methods` (the methods section and the scope box), `records`
(each notebook's key results and data), `data` (the CSV files beside the report), `build` (all of
it in order).
"""

from __future__ import annotations

from thesislib.design import TITLES  # noqa: E402

from thesislib.report.build import PACKAGES, build_report, git_tree, package_versions, ran_params  # noqa: E402
from thesislib.report.execute import KERNEL_NAME, execute  # noqa: E402
from thesislib.report.page import STYLE, _drop_repeated_notes, stitch, unique_heading_ids  # noqa: E402,F401
from thesislib.report.params import (_study_params, apply_sets, check_params, notebook_defaults,  # noqa: E402,F401
                                     notebook_parameters, params_for, params_with_sets, parse_set)
from thesislib.report.records import KEY_METRICS, RESULTS_ENV, key_numbers, record  # noqa: E402

__all__ = ["build_report", "execute", "check_params", "params_for", "apply_sets", "parse_set", "stitch", "KERNEL_NAME",
           "record", "key_numbers", "RESULTS_ENV", "unique_heading_ids", "TITLES", "ran_params", "params_with_sets",
           "notebook_parameters", "notebook_defaults", "package_versions", "git_tree", "PACKAGES", "STYLE",
           "KEY_METRICS"]
