"""Paper-shaped tables (Tables 2-7) and the Fig. 5 plot from a folder of runs.

Every ``results.json`` under a runs folder is read (docs/ARCHITECTURE.md) and classified by what it
measures, the :class:`Setting`: model, data sets, ablation switches, inference visual, training-set
limit, modality-missing and profile. Runs of one setting that differ only in seed are aggregated
(mean and sample std over seeds), so a setting shared by two tables (e.g. BERT-CRF is Table 2's
baseline and Table 3's "w/o SCS & w/o MCG") is trained once. Each table shows ours, the paper's
number (``resources/paper_results.yaml``) and the difference, one section per data set. Runs of
the smoke profile are labelled as such: synthetic data and tiny models, not comparable to the paper.
"""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from omegaconf import OmegaConf

log = logging.getLogger(__name__)

TYPES = ("PER", "LOC", "ORG", "MISC")
OVERALL = ("precision", "recall", "f1")
PAPER_DATASETS = ("twitter2015", "twitter2017")
SMOKE_NOTE = "synthetic (smoke profile) — not comparable to the paper"
TABLES = ("2", "3", "4", "5", "6", "7", "fig5")
PARAMS_FILE = "params.json"
PAPER_TEXT_ENCODER = "bert-base-uncased"

# Table 3 rows: (label, key in paper_results.yaml, use_scs, use_cycle, model)
ABLATIONS = (("BGA-MNER", "full", True, True, "bga-mner"),
             ("w/o SCS", "wo_scs", False, True, "bga-mner"),
             ("w/o cycle", "wo_cycle", True, False, "bga-mner"),
             ("w/o SCS & w/o cycle", "wo_scs_cycle", False, False, "bga-mner"),
             ("w/o SCS & w/o MCG (BERT-CRF)", "wo_scs_mcg", True, True, "bert-crf"))


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
    modality_missing: bool = False

    @property
    def standard(self) -> bool:
        """Trained on the full training set, tested in-domain with generated visual and images."""
        return (self.train_limit is None and not self.modality_missing
                and self.inference_visual == "generated" and self.test_dataset == self.dataset)

    def is_full(self, **changes: Any) -> bool:
        """Full BGA-MNER (all switches on) up to ``changes`` (field=value)."""
        want = dict(model="bga-mner", use_scs=True, use_cycle=True, inference_visual="generated",
                    train_limit=None, modality_missing=False) | changes
        return all(getattr(self, k) == v for k, v in want.items())


@dataclass
class RunResult:
    """One ``results.json``: its path, seed, setting and the test metrics."""

    path: Path
    seed: int
    setting: Setting
    test: dict[str, dict[str, float]]
    experiment: str | None = None


def _setting(data: Mapping[str, Any]) -> Setting:
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
        modality_missing=bool(data_cfg.get("modality_missing", False)),
    )


def load_results(runs_dir: str | Path) -> list[RunResult]:
    """Every ``results.json`` under ``runs_dir`` (recursively), sorted by path.

    A malformed file is a ``ValueError`` naming it. Of several runs with the same setting and seed,
    the newest file is kept and the others are logged as skipped.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir}: runs folder not found")
    latest: dict[tuple[Setting, int], RunResult] = {}
    for path in sorted(runs_dir.rglob("results.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            run = RunResult(path=path, seed=int(data["seed"]), setting=_setting(data),
                            test=data["test"], experiment=data.get("experiment"))
            run.test["overall"]["f1"]  # noqa: B018 - required key
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: not a valid results.json ({type(err).__name__}: {err})") from err
        key = (run.setting, run.seed)
        if key in latest:
            old, new = sorted([latest[key], run], key=lambda r: r.path.stat().st_mtime)
            log.warning("%s: same setting and seed as %s; keeping the newer", old.path, new.path)
            run = new
        latest[key] = run
    return sorted(latest.values(), key=lambda r: str(r.path))


@dataclass
class Stat:
    """Mean and sample std of one metric over seeds (std None for a single seed)."""

    values: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def __str__(self) -> str:
        if not self.values:
            return "—"
        return f"{self.mean:.2f}" + (f" ± {self.std:.2f}" if self.std is not None else "")


def metric(runs: Sequence[RunResult], group: str, name: str = "f1") -> Stat:
    """``test[group][name]`` over ``runs`` (group: overall, PER, LOC, ORG, MISC)."""
    return Stat([float(r.test[group][name]) for r in runs if group in r.test])


def select(results: Iterable[RunResult], pred: Callable[[Setting], bool]) -> dict[tuple[str, str], list[RunResult]]:
    """Runs whose setting satisfies ``pred``, grouped by (section, profile) where section is the
    data set, or ``source->target`` for a cross-domain run."""
    out: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        if pred(r.setting):
            s = r.setting
            section = s.dataset if s.test_dataset == s.dataset else f"{s.dataset}->{s.test_dataset}"
            out.setdefault((section, s.profile), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0] not in PAPER_DATASETS, kv[0])))


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def _diff(ours: float | None, paper: float | None) -> str:
    return "—" if ours is None or paper is None else f"{ours - paper:+.2f}"


def _heading(title: str, section: str, profile: str) -> str:
    name = section.replace("->", " → ")
    if profile == "smoke":
        return f"### {title} — {SMOKE_NOTE}" if name == "synthetic" else f"### {title} — {name}, {SMOKE_NOTE}"
    if section.split("->")[0] not in PAPER_DATASETS:
        return f"### {title} — {name} (no paper numbers for this data set)"
    return f"### {title} — {name}"


def _md(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _seeds(runs: Sequence[Any]) -> str:
    return f"{len(runs)} seed{'s' if len(runs) != 1 else ''}"


def _empty(title: str, target: str) -> str:
    return f"## {title}\n\n_No runs for this table: `make {target}` writes them._\n"


def render_table2(results: Sequence[RunResult]) -> str:
    """Table 2: per-type F1 and overall P/R/F1 of BERT-CRF and BGA-MNER, ours beside the paper's."""
    title = "Table 2: main results (test set)"
    sections = select(results, lambda s: s.standard and (s.is_full() or s.model == "bert-crf"))
    if not sections:
        return _empty(title, "reproduce-table2")
    cols = [*TYPES, *OVERALL]
    parts = [f"## {title}"]
    for (section, profile), runs in sections.items():
        rows = []
        for label, model in (("BERT-CRF", "bert-crf"), ("BGA-MNER", "bga-mner")):
            mine = [r for r in runs if r.setting.model == model]
            if not mine:
                continue
            ours = [metric(mine, t) for t in TYPES] + [metric(mine, "overall", m) for m in OVERALL]
            paper = paper_results()["table2"][label].get(section) if profile != "smoke" else None
            rows.append([f"{label} (ours, {_seeds(mine)})", *map(str, ours)])
            if paper:
                rows.append([f"{label} (paper)", *(_num(paper[c]) for c in cols)])
                rows.append(["Δ ours − paper", *(_diff(o.mean, paper[c]) for o, c in zip(ours, cols))])
        parts += [_heading("Table 2", section, profile),
                  _md(["Method", *TYPES, "P", "R", "F1"], rows)]
    return "\n\n".join(parts) + "\n"


def render_table3(results: Sequence[RunResult]) -> str:
    """Table 3: overall F1 of each ablation and its drop from full BGA-MNER, ours beside the paper's."""
    title = "Table 3: ablations (overall test F1)"
    sections = select(results, lambda s: s.standard)
    if not sections:
        return _empty(title, "ablations")
    parts = [f"## {title}"]
    for (section, profile), runs in sections.items():
        paper = paper_results()["table3"] if profile != "smoke" and section in PAPER_DATASETS else None
        full = metric([r for r in runs if r.setting.is_full()], "overall").mean
        pfull = paper["full"][section] if paper else None
        rows = []
        for label, key, scs, cycle, model in ABLATIONS:
            mine = [r for r in runs if r.setting.model == model
                    and (model == "bert-crf" or (r.setting.use_scs, r.setting.use_cycle) == (scs, cycle))]
            if not mine:
                continue
            f1, pf1 = metric(mine, "overall"), (paper[key][section] if paper else None)
            drop = None if key == "full" or full is None else f1.mean - full
            pdrop = None if key == "full" or pf1 is None else pf1 - pfull
            rows.append([label, _seeds(mine), str(f1), _num(drop) if drop is None else f"{drop:+.2f}",
                         _num(pf1), _num(pdrop) if pdrop is None else f"{pdrop:+.2f}", _diff(f1.mean, pf1)])
        parts += [_heading("Table 3", section, profile),
                  _md(["Setting", "runs", "F1 (ours)", "vs full (ours)", "F1 (paper)",
                       "vs full (paper)", "Δ ours − paper"], rows)]
    return "\n\n".join(parts) + "\n"


def render_table4(results: Sequence[RunResult]) -> str:
    """Table 4: real against generated visual features at inference (overall test F1)."""
    title = "Table 4: real or generated visual features at inference (overall test F1)"
    sections = select(results, lambda s: s.is_full(inference_visual=s.inference_visual)
                      and s.test_dataset == s.dataset)
    if not sections:
        return _empty(title, "table4")
    parts = [f"## {title}"]
    for (section, profile), runs in sections.items():
        rows = []
        for label, key in (("real textual + real visual", "real"), ("real textual + generated visual", "generated")):
            mine = [r for r in runs if r.setting.inference_visual == key]
            pf1 = paper_results()["table4"][key].get(section) if profile != "smoke" else None
            f1 = metric(mine, "overall")
            rows.append([label, _seeds(mine), str(f1), _num(pf1), _diff(f1.mean, pf1)])
        parts += [_heading("Table 4", section, profile),
                  _md(["Features", "runs", "F1 (ours)", "F1 (paper)", "Δ ours − paper"], rows)]
    return "\n\n".join(parts) + "\n"


def render_table6(results: Sequence[RunResult]) -> str:
    """Table 6: cross-domain P/R/F1 (train on the source set, test on the target set)."""
    title = "Table 6: cross-domain generalisation (overall test P/R/F1)"
    sections = select(results, lambda s: s.is_full() and s.test_dataset != s.dataset)
    if not sections and any(r.setting.profile == "smoke" for r in results):
        return (f"## {title}\n\n_The smoke profile has a single (synthetic) data set, so it has no "
                "cross-domain run: `make table6` on the real data sets writes them._\n")
    if not sections:
        return _empty(title, "table6")
    parts = [f"## {title}"]
    for (section, profile), runs in sections.items():
        ours = [metric(runs, "overall", m) for m in OVERALL]
        rows = [[f"BGA-MNER (ours, {_seeds(runs)})", *map(str, ours)]]
        paper = paper_results()["table6"].get(section, {}).get("BGA-MNER") if profile != "smoke" else None
        if paper:
            rows.append(["BGA-MNER (paper)", *(_num(paper[m]) for m in OVERALL)])
            rows.append(["Δ ours − paper", *(_diff(o.mean, paper[m]) for o, m in zip(ours, OVERALL))])
        parts += [_heading("Table 6", section, profile), _md(["Method", "P", "R", "F1"], rows)]
    return "\n\n".join(parts) + "\n"


def render_table7(results: Sequence[RunResult]) -> str:
    """Table 7: overall test F1 with every test image replaced by an empty one, and the change."""
    title = "Table 7: modality missing at test time (overall test F1)"
    sections = select(results, lambda s: s.is_full(modality_missing=s.modality_missing)
                      and s.test_dataset == s.dataset)
    if not any(r.setting.modality_missing for runs in sections.values() for r in runs):
        return _empty(title, "table7")
    parts = [f"## {title}"]
    for (section, profile), runs in sections.items():
        missing = metric([r for r in runs if r.setting.modality_missing], "overall")
        full = metric([r for r in runs if not r.setting.modality_missing], "overall")
        if not missing.values:
            continue
        paper = profile != "smoke" and section in PAPER_DATASETS
        pfull = paper_results()["table2"]["BGA-MNER"][section]["f1"] if paper else None
        pmiss = paper_results()["table7"]["BGA-MNER"][section]["f1"] if paper else None
        rows = [["test images present (Table 2)", _seeds(full.values), str(full), _num(pfull), _diff(full.mean, pfull)],
                ["all test images empty", _seeds(missing.values), str(missing), _num(pmiss), _diff(missing.mean, pmiss)],
                ["change (empty − present)", "", _diff(missing.mean, full.mean), _diff(pmiss, pfull), ""]]
        parts += [_heading("Table 7", section, profile),
                  _md(["BGA-MNER", "runs", "F1 (ours)", "F1 (paper)", "Δ ours − paper"], rows)]
    return "\n\n".join(parts) + "\n"


def load_params(runs_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``params.json`` (``bga-mner params --json`` output) under ``runs_dir``."""
    return [(p, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(Path(runs_dir).rglob(PARAMS_FILE))]


def render_table5(params: Sequence[tuple[Path, Mapping[str, Any]]], results: Sequence[RunResult] = ()) -> str:
    """Table 5: parameter counts (train and inference time) beside the paper's, with our F1s."""
    title = "Table 5: parameters and visual encoder"
    if not params:
        return _empty(title, "table5")
    paper = paper_results()["table5"]
    full = select(results, lambda s: s.standard and s.is_full())
    f1 = {sec: str(metric(runs, "overall")) for (sec, prof), runs in full.items() if prof == "full"}
    # the paper gives one total per method (paper_results.yaml says at which time it counts)
    rows = [[r["method"] + " (paper)", r["visual_encoder"],
             "—" if r.get("image_free") else f"{r['params_m']:.1f}M", f"{r['params_m']:.1f}M",
             _num(r["twitter2015"]), _num(r["twitter2017"])] for r in paper["rows"]]
    parts = [f"## {title}"]
    for path, counts in params:  # `bga-mner params --json`: {text_encoder, visual_encoder, train, inference}
        paper_backbones = counts.get("text_encoder") == PAPER_TEXT_ENCODER
        train, infer = counts["train"]["total"], counts["inference"]["total"]
        rows.append([f"BGA-MNER (ours{'' if paper_backbones else ', ' + str(counts.get('text_encoder'))})",
                     str(counts.get("visual_encoder", "?")), f"{train / 1e6:.1f}M", f"{infer / 1e6:.1f}M",
                     f1.get("twitter2015", "—"), f1.get("twitter2017", "—")])
        comp = []
        for name in counts["train"]:
            pm = paper["components_m"].get(name.replace(" ", "_")) if paper_backbones else None
            comp.append([name, f"{counts['train'][name] / 1e6:.2f}M", f"{counts['inference'][name] / 1e6:.2f}M",
                         "—" if pm is None else f"{pm:.1f}M"])
        note = "" if paper_backbones else " (not the paper's backbones: not comparable)"
        parts.append(f"Components of `{path}`{note}:\n\n"
                     + _md(["Component", "train time (ours)", "inference (ours)", "paper"], comp))
    table = _md(["Method", "Visual enc.", "Total params (train)", "Inference-time", "Twitter2015 F1",
                 "Twitter2017 F1"], rows)
    return "\n\n".join([parts[0], table, *parts[1:]]) + "\n"


def fig5_series(results: Sequence[RunResult]) -> dict[tuple[str, str], dict[str, dict[int, list[RunResult]]]]:
    """Data-limited runs as {(dataset, profile): {model: {train_limit: runs}}}."""
    out: dict[tuple[str, str], dict[str, dict[int, list[RunResult]]]] = {}
    limited = select(results, lambda s: s.train_limit is not None and s.test_dataset == s.dataset
                     and not s.modality_missing and (s.model == "bert-crf" or s.is_full(train_limit=s.train_limit)))
    for key, runs in limited.items():
        for r in runs:
            out.setdefault(key, {}).setdefault(r.setting.model, {}).setdefault(r.setting.train_limit, []).append(r)
    return out


def render_fig5_table(results: Sequence[RunResult]) -> str:
    """Fig. 5 in numbers: per-type and overall test F1 against the number of training tweets."""
    title = "Fig. 5: data-limited training (test F1; the paper gives this only as a plot)"
    series = fig5_series(results)
    if not series:
        return _empty(title, "data-efficiency")
    parts = [f"## {title}"]
    for (section, profile), models in series.items():
        rows = []
        for n in sorted({n for by_n in models.values() for n in by_n}):
            for label, model in (("TEXT (BERT-CRF)", "bert-crf"), ("BGA", "bga-mner")):
                runs = models.get(model, {}).get(n, [])
                if runs:
                    rows.append([str(n), label, _seeds(runs), *(str(metric(runs, g)) for g in (*TYPES, "overall"))])
        parts += [_heading("Fig. 5", section, profile),
                  _md(["train tweets", "model", "runs", *TYPES, "overall F1"], rows)]
    return "\n\n".join(parts) + "\n"


def plot_fig5(results: Sequence[RunResult], out: str | Path) -> Path | None:
    """Fig. 5 as a PNG: F1 (per type and overall) against training tweets, BGA against TEXT."""
    series = fig5_series(results)
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = (*TYPES, "overall")
    fig, axes = plt.subplots(len(series), len(groups), figsize=(3.2 * len(groups), 2.8 * len(series)),
                             squeeze=False)
    for row, ((section, profile), models) in enumerate(series.items()):
        for col, group in enumerate(groups):
            ax = axes[row][col]
            for label, model, style in (("TEXT", "bert-crf", "s--"), ("BGA", "bga-mner", "o-")):
                by_n = models.get(model, {})
                ns = sorted(by_n)
                stats = [metric(by_n[n], group) for n in ns]
                ax.errorbar(ns, [s.mean for s in stats], yerr=[s.std or 0.0 for s in stats],
                            fmt=style, capsize=3, label=label)
            ax.set_xscale("log", base=2)
            ax.set_title(f"{section}{' (smoke)' if profile == 'smoke' else ''}: F1-{group}", fontsize=9)
            ax.set_xlabel("training tweets")
            ax.grid(alpha=0.3)
        axes[row][0].set_ylabel("test F1 (%)")
        axes[row][0].legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def build_report(runs_dir: str | Path, tables: Sequence[str] = TABLES,
                 out_dir: str | Path | None = None) -> dict[str, str]:
    """Render ``tables`` from the runs under ``runs_dir`` and write them to ``out_dir``.

    Args:
        runs_dir: folder searched recursively for ``results.json`` and ``params.json``.
        tables: any of ``TABLES``.
        out_dir: where ``table<X>.md``, ``fig5.md``, ``fig5.png`` and ``report.md`` go
            (default ``<runs_dir>/report``).

    Returns:
        {table: markdown}, in the order asked.
    """
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; expected some of {TABLES}")
    results = load_results(runs_dir)
    renderers: dict[str, Callable[[], str]] = {
        "2": lambda: render_table2(results), "3": lambda: render_table3(results),
        "4": lambda: render_table4(results), "5": lambda: render_table5(load_params(runs_dir), results),
        "6": lambda: render_table6(results), "7": lambda: render_table7(results),
        "fig5": lambda: render_fig5_table(results)}
    out_dir = Path(out_dir) if out_dir is not None else Path(runs_dir) / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = {}
    for t in tables:
        text = renderers[t]()
        if t == "fig5" and (png := plot_fig5(results, out_dir / "fig5.png")) is not None:
            text += f"\n![Fig. 5]({png.name})\n"
        name = "fig5.md" if t == "fig5" else f"table{t}.md"
        (out_dir / name).write_text(text, encoding="utf-8")
        rendered[t] = text
    if set(tables) == set(TABLES):
        (out_dir / "report.md").write_text(
            f"# Results of `{runs_dir}` beside the paper's\n\n" + "\n".join(rendered.values()), encoding="utf-8")
    return rendered
