"""Paper-shaped tables (Tables 2-7) and the Fig. 5 plot from a folder of runs.

Every ``results.json`` under a runs folder is read (docs/ARCHITECTURE.md) and classified by what it
measures, the :class:`Setting`: model, data sets, ablation switches, inference visual, training-set
limit, modality-missing and profile. Runs of one setting that differ only in seed are aggregated
(mean, sample std and n over seeds), so a setting shared by two tables (e.g. BERT-CRF is Table 2's
baseline and Table 3's "w/o SCS & w/o MCG") is trained once. Each table shows ours with a 95%
bootstrap CI over test tweets, the paper's number (``resources/paper_results.yaml``) and the
difference, one section per data set, and each comparison of the paper a significance row (ASO over
seeds, approximate randomisation over tweets, a verdict; docs/statistics.md). Runs of the smoke
profile are labelled as such: synthetic data and tiny models, not comparable to the paper.

Modules: :mod:`.statistics` (seed summaries, bootstrap CIs, significance tests), :mod:`.results`
(loading runs, settings), :mod:`.tables` (markdown tables), :mod:`.figures` (Fig. 5, per-type F1
and ablation bars) and :mod:`.writer` (``build_report``, behind ``bga-mner report``).
"""

from bga_mner.report.figures import fig5_figure, per_type_figure, plot_fig5, table3_drops, table3_figure
from bga_mner.report.results import (OVERALL, PAPER_DATASETS, PARAMS_FILE, TYPES, RunResult, Setting,
                                     fig5_series, load_params, load_results, metric, paper_results, select,
                                     setting_of)
from bga_mner.report.statistics import (Arm, Comparison, Stat, TweetCounts, aso, bootstrap_ci, compare, pool_seeds,
                                        randomisation_test, read_counts, verdict)
from bga_mner.report.tables import (ABLATIONS, PAPER_TEXT_ENCODER, SINGLE_SEED_NOTE, SMOKE_NOTE, render_fig5_table,
                                    render_table2, render_table3, render_table4, render_table5, render_table6,
                                    render_table7)
from bga_mner.report.writer import TABLES, build_report

__all__ = ["ABLATIONS", "Arm", "Comparison", "OVERALL", "PAPER_DATASETS", "PAPER_TEXT_ENCODER", "PARAMS_FILE",
           "RunResult", "SINGLE_SEED_NOTE", "SMOKE_NOTE", "Setting", "Stat", "TABLES", "TYPES", "TweetCounts", "aso",
           "bootstrap_ci", "build_report", "compare", "fig5_figure", "fig5_series", "load_params", "load_results",
           "metric", "paper_results", "per_type_figure", "plot_fig5", "pool_seeds", "randomisation_test",
           "read_counts", "render_fig5_table", "render_table2", "render_table3", "render_table4", "render_table5",
           "render_table6", "render_table7", "select", "setting_of", "table3_drops", "table3_figure", "verdict"]
