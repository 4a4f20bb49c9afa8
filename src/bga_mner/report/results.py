"""Run results: loading ``results.json``/``params.json``, classifying runs and aggregating seeds.

Every ``results.json`` under a runs folder is read (docs/ARCHITECTURE.md) and classified by what it
measures, the :class:`Setting`. Runs of one setting that differ only in seed are aggregated (mean
and sample std over seeds, :class:`~bga_mner.report.statistics.Stat`), so a setting shared by two
tables is trained once. A run folder's ``predictions/test_counts.json`` (per-tweet span counts) is
read with it, for the confidence intervals and tests of :mod:`bga_mner.report.statistics`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from omegaconf import OmegaConf

from bga_mner.report.statistics import Stat, TweetCounts, read_counts

# the package's logger, as before the split into modules (log filters and formats keep matching)
log = logging.getLogger(__package__)

TYPES = ("PER", "LOC", "ORG", "MISC")
OVERALL = ("precision", "recall", "f1")
PAPER_DATASETS = ("twitter2015", "twitter2017")
PARAMS_FILE = "params.json"

Sections = dict[tuple[str, str], list["RunResult"]]


@lru_cache(maxsize=1)
def paper_results() -> dict[str, Any]:
    """The paper's numbers (``resources/paper_results.yaml``) as plain dicts."""
    text = resources.files("bga_mner").joinpath("resources/paper_results.yaml").read_text("utf-8")
    return OmegaConf.to_container(OmegaConf.create(text))  # type: ignore[return-value]


@dataclass(frozen=True)
class Setting:
    """What a run measures; runs with equal settings differ only in seed."""

    model: str                 # bga-mner | bert-crf
    dataset: str               # training set
    test_dataset: str          # = dataset, or the target of a cross-domain run
    profile: str = "full"
    use_scs: bool = True
    use_cycle: bool = True
    inference_visual: str = "generated"
    train_limit: int | None = None
    train_limit_fill: bool = False   # the n tweets repeated to the full set's steps (make claims)
    modality_missing: bool = False
    text_context: str = "generated"  # real: the real-context control (not in the paper, no table)
    labels: str | None = None        # the runs' label version (None: not recorded, older runs)

    @property
    def standard(self) -> bool:
        """Trained on the full training set, tested in-domain with generated visual and images
        (the text layers attending to generated visual tokens: never the real-context control)."""
        return (self.train_limit is None and not self.modality_missing
                and self.inference_visual == "generated" and self.text_context == "generated"
                and self.test_dataset == self.dataset)

    def is_full(self, **changes: Any) -> bool:
        """Full BGA-MNER (all switches on) up to ``changes`` (field=value); the real-context control
        (``text_context=real``) is never full BGA-MNER unless ``changes`` says so."""
        want = dict(model="bga-mner", use_scs=True, use_cycle=True, inference_visual="generated",
                    train_limit=None, modality_missing=False, text_context="generated") | changes
        return all(getattr(self, k) == v for k, v in want.items())


@dataclass
class RunResult:
    """One ``results.json``: its path, seed, setting, the test metrics and, where the run folder
    has them, the per-tweet span counts of its test predictions (the report's statistics)."""

    path: Path
    seed: int
    setting: Setting
    test: dict[str, dict[str, float]]
    experiment: str | None = None
    counts: TweetCounts | None = None


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
    cfg = data.get("config") or {}
    model_cfg, data_cfg = cfg.get("model") or {}, cfg.get("data") or {}
    use_mcg = model_cfg.get("use_mcg", True)
    model = data.get("model") or ("bga-mner" if use_mcg else "bert-crf")
    bert_crf = model == "bert-crf"  # the switches do not matter for it: normalise them
    return Setting(
        model=model, dataset=data["dataset"], test_dataset=data.get("test_dataset") or data["dataset"],
        profile=data.get("profile") or "full",
        use_scs=True if bert_crf else bool(model_cfg.get("use_scs", True)),
        use_cycle=True if bert_crf else bool(model_cfg.get("use_cycle", True)),
        inference_visual="generated" if bert_crf else model_cfg.get("inference_visual", "generated"),
        train_limit=data_cfg.get("train_limit"),
        train_limit_fill=bool(data_cfg.get("train_limit") and data_cfg.get("train_limit_fill", False)),
        modality_missing=bool(data_cfg.get("modality_missing", False)),
        text_context="generated" if bert_crf else model_cfg.get("text_context", "generated"),
        labels=_labels(data),
    )


def read_run(path: Path) -> RunResult:
    """One ``results.json``; a malformed file is a ``ValueError`` naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        run = RunResult(path=path, seed=int(data["seed"]), setting=setting_of(data),
                        test=data["test"], experiment=data.get("experiment"))
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
    """Every ``results.json`` under ``runs_dir`` (recursively), sorted by path.

    A malformed file is a ``ValueError`` naming it. Of several runs with the same setting and seed,
    the newest file is kept and the others are logged as skipped.

    Args:
        runs_dir: folder searched recursively for ``results.json``.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir}: runs folder not found")
    latest: dict[tuple[Setting, int], RunResult] = {}
    for path in sorted(runs_dir.rglob("results.json")):
        run = read_run(path)
        key = (run.setting, run.seed)
        if key in latest:
            old, new = sorted([latest[key], run], key=lambda r: r.path.stat().st_mtime)
            log.warning("%s: same setting and seed as %s; keeping the newer", old.path, new.path)
            run = new
        latest[key] = run
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


def fig5_series(results: Sequence[RunResult]) -> dict[tuple[str, str], dict[str, dict[int, list[RunResult]]]]:
    """Data-limited runs as {(dataset, profile): {model: {train_limit: runs}}}.

    Args:
        results: all runs; only the data-limited, in-domain ones of BERT-CRF and full BGA-MNER count
            (not ``train_limit_fill`` runs: the paper's runs keep the epochs, not the steps).
    """
    out: dict[tuple[str, str], dict[str, dict[int, list[RunResult]]]] = {}
    limited = select(results, lambda s: s.train_limit is not None and not s.train_limit_fill
                     and s.test_dataset == s.dataset and not s.modality_missing
                     and (s.model == "bert-crf" or s.is_full(train_limit=s.train_limit)))
    for key, runs in limited.items():
        for r in runs:
            out.setdefault(key, {}).setdefault(r.setting.model, {}).setdefault(r.setting.train_limit, []).append(r)
    return out
