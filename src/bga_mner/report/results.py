"""Run results: loading ``results.json``/``params.json``, classifying runs and aggregating seeds.

Every ``results.json`` under a runs folder is read (docs/ARCHITECTURE.md) and classified by what it
records, its :class:`Setting`: above all its ``experiment`` (``run.experiment``), the key of the
experiment registry (:mod:`bga_mner.registry`), which says in which tables the experiment has a row
(``make demo``'s runs fill full BGA-MNER's and BERT-CRF's, by their model); then the data sets, the
profile, the model and the training-set limit. Runs of experiments with no row in any table (``make
claims``, the real-context control, runs without an experiment) are left out. Runs of
one setting that differ only in seed are aggregated (mean and sample std over seeds,
:class:`~bga_mner.report.statistics.Stat`), so a setting shared by two tables is trained once. A run
folder's ``predictions/test_counts.json`` (per-tweet span counts) is read with it, for the confidence
intervals and tests of :mod:`bga_mner.report.bootstrap` and :mod:`bga_mner.report.significance`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from omegaconf import OmegaConf

from bga_mner import registry
from bga_mner.report.statistics import Stat, TweetCounts, read_counts

# the package's logger, as before the split into modules (log filters and formats keep matching)
log = logging.getLogger(__package__)

TYPES = ("PER", "LOC", "ORG", "MISC")
OVERALL = ("precision", "recall", "f1")
PAPER_DATASETS = ("twitter2015", "twitter2017")
PARAMS_FILE = "params.json"

Sections = dict[tuple[str, str], list["RunResult"]]


@dataclass(frozen=True)
class Setting:
    """What a run measures, as its ``results.json`` records it; runs with equal settings differ only
    in seed."""

    experiment: str | None     # run.experiment: the registry's key (None: a run made without one)
    model: str                 # bga-mner | bert-crf (Fig. 5's two series of one experiment)
    dataset: str               # training set
    test_dataset: str          # = dataset, or the target of a cross-domain run
    profile: str               # full | smoke | rehearsal
    train_limit: int | None = None  # data.train_limit: the training tweets of a data-limited run
    labels: str | None = None  # the runs' label version (None: not recorded, runs before label versions)

    @property
    def standard(self) -> bool:
        """Trained on the full training set and tested in-domain."""
        return self.train_limit is None and self.test_dataset == self.dataset

    @property
    def place(self) -> str | None:
        """The experiment whose rows it fills: its own, or the one its experiment stands for with its
        model (make demo's runs: full BGA-MNER's and BERT-CRF's); None for one the registry lacks."""
        return registry.placed(self.experiment, self.model)

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables in which it has a row (:attr:`place`'s rows)."""
        return tuple(r.table for r in registry.get(self.place).rows) if self.place else ()


@dataclass
class RunResult:
    """One ``results.json``: its path, seed, setting, the test metrics and, where the run folder
    has them, the per-tweet span counts of its test predictions (the report's statistics)."""

    path: Path
    seed: int
    setting: Setting
    test: dict[str, dict[str, float]]
    counts: TweetCounts | None = None

    @property
    def experiment(self) -> str | None:
        return self.setting.experiment


@lru_cache(maxsize=1)
def paper_label_version() -> str:
    """The label version the paper used (``resources/label_versions.yaml``: ``umt-original``)."""
    text = resources.files("bga_mner").joinpath("resources/label_versions.yaml").read_text("utf-8")
    return str(OmegaConf.create(text).paper_version)


def _labels(data: Mapping[str, Any]) -> str | None:
    """A run's label version (``results.json``'s ``label_version``, per split): the paper's when
    every split has it, else the other versions found (None: not recorded)."""
    versions = set((data.get("label_version") or {}).values())
    others = sorted(versions - {paper_label_version()})
    return "+".join(others) if others else (paper_label_version() if versions else None)


def not_comparable(s: Setting) -> str | None:
    """Why runs of a paper data set cannot be compared with the paper's numbers (None: they can):
    the rehearsal profile, or labels other than the version the paper used (docs/data.md)."""
    if s.profile == "rehearsal":
        return "rehearsal profile: synthetic images, tiny models"
    if s.dataset in PAPER_DATASETS and s.labels is not None and s.labels != paper_label_version():
        return f"labels {s.labels}, the paper used {paper_label_version()}"
    return None


def setting_of(data: Mapping[str, Any]) -> Setting:
    """The setting a ``results.json`` records (every field has been written since the first release,
    but ``label_version``: runs before it have no recorded labels).

    Args:
        data: the parsed ``results.json``.
    """
    return Setting(experiment=data["experiment"], model=data["model"], dataset=data["dataset"],
                   test_dataset=data["test_dataset"], profile=data["profile"],
                   train_limit=data["config"]["data"]["train_limit"], labels=_labels(data))


def read_run(path: Path) -> RunResult:
    """One ``results.json``; a malformed file is a ``ValueError`` naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        run = RunResult(path=path, seed=int(data["seed"]), setting=setting_of(data), test=data["test"])
        f1 = float(run.test["overall"]["f1"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a valid results.json ({type(err).__name__}: {err})") from err
    counts = read_counts(path.parent)
    if counts is not None and abs(counts.score() - f1) > 0.01:
        log.warning("%s: its per-tweet counts give test F1 %.4f, results.json %.4f; counts ignored",
                    path.parent, counts.score(), f1)
        counts = None
    run.counts = counts
    return run


def load_results(runs_dir: str | Path) -> list[RunResult]:
    """Every ``results.json`` under ``runs_dir`` (recursively) of an experiment with a row in a table,
    sorted by path.

    A malformed file is a ``ValueError`` naming it. Runs of other experiments are left out (logged
    once, with their count). Of several runs with the same setting and seed, the newest file is kept
    and the others are logged as skipped.

    Args:
        runs_dir: folder searched recursively for ``results.json``.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir}: runs folder not found")
    latest: dict[tuple[Setting, int], RunResult] = {}
    elsewhere: Counter[str] = Counter()
    for path in sorted(runs_dir.rglob("results.json")):
        run = read_run(path)
        if not run.setting.tables:
            elsewhere[str(run.experiment)] += 1
            continue
        key = (run.setting, run.seed)
        if key in latest:
            old, new = sorted([latest[key], run], key=lambda r: r.path.stat().st_mtime)
            log.warning("%s: same setting and seed as %s; keeping the newer", old.path, new.path)
            run = new
        latest[key] = run
    if elsewhere:
        log.info("%s: left out %s (experiments in no table of the registry)", runs_dir,
                 ", ".join(f"{n} run{'s' * (n != 1)} of {e}" for e, n in sorted(elsewhere.items())))
    return sorted(latest.values(), key=lambda r: str(r.path))


def load_params(runs_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``params.json`` (``bga-mner params --json`` output) under ``runs_dir``.

    Args:
        runs_dir: folder searched recursively for ``params.json``.
    """
    return [(p, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(Path(runs_dir).rglob(PARAMS_FILE))]


def metric(runs: Sequence[RunResult], group: str, name: str = "f1") -> Stat:
    """``test[group][name]`` over ``runs``.

    Args:
        runs: the runs (seeds) to aggregate.
        group: overall, PER, LOC, ORG or MISC; runs without it are left out.
        name: precision, recall or f1.
    """
    return Stat([float(r.test[group][name]) for r in runs if group in r.test])


def select(results: Iterable[RunResult], pred: Callable[[Setting], bool]) -> Sections:
    """Runs whose setting satisfies ``pred``, grouped by (section, profile) where section is the
    data set, or ``source->target`` for a cross-domain run, followed by `` (why)`` for runs that
    cannot be compared with the paper (:func:`not_comparable`): such a section is no paper data set,
    so no table looks up the paper's numbers for it.

    Args:
        results: the runs to choose from.
        pred: which settings to keep.

    Returns:
        {(section, profile): runs}, the paper's data sets first, then sorted.
    """
    out: Sections = {}
    for r in results:
        if pred(r.setting):
            s = r.setting
            section = s.dataset if s.test_dataset == s.dataset else f"{s.dataset}->{s.test_dataset}"
            why = not_comparable(s)
            section = f"{section} ({why})" if why else section
            out.setdefault((section, s.profile), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0] not in PAPER_DATASETS, kv[0])))


def in_table(table: str, standard: bool = True) -> Callable[[Setting], bool]:
    """The settings of ``table``'s rows (the registry's), full training set and in-domain unless
    ``standard`` is false.

    Args:
        table: one of :data:`bga_mner.registry.TABLES`.
        standard: keep only :attr:`Setting.standard` settings.
    """
    return lambda s: table in s.tables and (s.standard or not standard)


def of(runs: Iterable[RunResult], experiment: str) -> list[RunResult]:
    """The runs that fill ``experiment``'s rows (:attr:`Setting.place`)."""
    return [r for r in runs if r.setting.place == experiment]


def fig5_series(results: Sequence[RunResult]) -> dict[tuple[str, str], dict[str, dict[int, list[RunResult]]]]:
    """Data-limited runs as {(dataset, profile): {model: {train_limit: runs}}}.

    Args:
        results: all runs; those of the experiments with a Fig. 5 row (``data_limited``), in-domain,
            count, by the model and training-set size they record.
    """
    out: dict[tuple[str, str], dict[str, dict[int, list[RunResult]]]] = {}
    limited = select(results, lambda s: "fig5" in s.tables and s.train_limit is not None
                     and s.test_dataset == s.dataset)
    for key, runs in limited.items():
        for r in runs:
            out.setdefault(key, {}).setdefault(r.setting.model, {}).setdefault(r.setting.train_limit, []).append(r)
    return out
