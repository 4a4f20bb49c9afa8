"""Paper-shaped tables (Tables 2-7) and the Fig. 5 plot from a folder of runs.

Every ``results.json`` under a runs folder is read (docs/ARCHITECTURE.md) and classified by what it
records, the :class:`Setting`: above all its experiment (``run.experiment``), whose entry in the
experiment registry (:mod:`bga_mner.registry`) says in which tables it has a row, under which label
and beside which of the paper's numbers (``resources/paper_results.yaml``). Runs of one setting that
differ only in seed are aggregated (mean, sample std and n over seeds), so a setting shared by two
tables (e.g. BERT-CRF is Table 2's baseline and Table 3's "w/o SCS & w/o MCG") is trained once. Each
table shows ours with a 95% bootstrap CI over test tweets, the paper's number and the difference,
one section per data set, and full BGA-MNER against each other row a significance row (ASO over
seeds, approximate randomisation over tweets, a verdict; docs/statistics.md). Runs of the smoke
profile are labelled as such: synthetic data and tiny models, not comparable to the paper.

Modules: :mod:`.statistics` (seed summaries, per-tweet counts), :mod:`.bootstrap` (confidence
intervals), :mod:`.significance` (significance tests), :mod:`.results` (loading runs, settings),
:mod:`.markdown` and :mod:`.sections` (what the tables share), :mod:`.tables` (Tables 2-7, Fig. 5 in
numbers), :mod:`.figures` (Fig. 5, per-type F1 and ablation bars), :mod:`.writer` (``build_report``,
behind ``bga-mner report``), :mod:`.claim_rules` and :mod:`.claims` (``make claims``' claims.md).
"""

from bga_mner.registry import paper_results
from bga_mner.report.bootstrap import bootstrap_ci
from bga_mner.report.figures import fig5_figure, per_type_figure, plot_fig5, table3_drops, table3_figure
from bga_mner.report.results import (OVERALL, PAPER_DATASETS, PARAMS_FILE, TYPES, RunResult, Setting,
                                     fig5_series, load_params, load_results, metric, select, setting_of)
from bga_mner.report.sections import SINGLE_SEED_NOTE, SMOKE_NOTE
from bga_mner.report.significance import Arm, Comparison, aso, compare, randomisation_test, verdict
from bga_mner.report.statistics import Stat, TweetCounts, pool_seeds, read_counts
from bga_mner.report.tables import (PAPER_TEXT_ENCODER, render_fig5_table, render_table2, render_table3,
                                    render_table4, render_table5, render_table6, render_table7)
from bga_mner.report.writer import TABLES, build_report

__all__ = ["Arm", "Comparison", "OVERALL", "PAPER_DATASETS", "PAPER_TEXT_ENCODER", "PARAMS_FILE",
           "RunResult", "SINGLE_SEED_NOTE", "SMOKE_NOTE", "Setting", "Stat", "TABLES", "TYPES", "TweetCounts", "aso",
           "bootstrap_ci", "build_report", "compare", "fig5_figure", "fig5_series", "load_params", "load_results",
           "metric", "paper_results", "per_type_figure", "plot_fig5", "pool_seeds", "randomisation_test",
           "read_counts", "render_fig5_table", "render_table2", "render_table3", "render_table4", "render_table5",
           "render_table6", "render_table7", "select", "setting_of", "table3_drops", "table3_figure", "verdict"]
