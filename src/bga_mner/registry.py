"""The experiment registry: each experiment's setting declared once, in its own folder.

An experiment is a folder ``experiments/<name>/``: ``config.yaml`` (its overrides of the config
defaults) and ``README.md``, whose YAML front matter is the experiment's registry entry. ``<name>`` is
the ``run.experiment`` that every run of it records in ``results.json``, so the entry says, for the
runs of that name, how make runs them, where the report shows them and which setting of ``make
claims`` they are. Example (``experiments/wo_scs/README.md``)::

    ---
    runs: fit                               # make trains it on every data set and seed
    rows:                                   # table -> its row there and its key in paper_results.yaml
      "3": {label: "w/o SCS", paper: wo_scs}
    claims: wo_scs                          # its setting name in make claims
    ---
    # wo_scs — Table 3, "w/o SCS"

Keys (all optional; docs/experiments.md says how to add an experiment):

- ``runs``: how make runs it. ``fit``: ``bga-mner fit`` on every data set and seed, as
  ``<name>-<data set>-seed<seed>``. ``test``: re-tests each run of ``source`` (``bga-mner test
  --ckpt``, no training). ``sizes``: each of ``variants`` (``{variant: {like: EXPERIMENT, claims:
  PREFIX}}``: with ``like``'s overrides) at each ``FIG5_SIZES`` training-set size, as
  ``<name>-<variant>-n<size>-<data set>-seed<seed>``. ``cross``: trained on one data set and tested
  on another, for each ``directions`` pair, as ``<name>-<train>-to-<test>-seed<seed>`` (the smoke
  profile, one data set, has none). ``params``: parameter counts (``bga-mner params``). Absent: make
  runs it for no table.
- ``rows``: ``{table: {label, paper}}``, table one of :data:`TABLES`; ``paper`` is the row's key in
  that table's block of ``resources/paper_results.yaml`` (null: the paper has none). A table's rows
  come in the paper's order of their keys, rows the paper lacks last.
- ``claims``: the setting's name in ``make claims`` (run folders ``<claims>-seed<seed>``).
- ``stands_for``: ``{model: experiment}``: its runs fill the rows of another experiment, by the model
  that each records (``make demo``'s BGA-MNER and BERT-CRF on its own benchmark); no rows of its own.
- ``seeds``: its default seeds (:data:`SEEDS` otherwise; the smoke profile runs the first).

:data:`REFERENCE` is full BGA-MNER: every table compares the other rows with its row; :data:`BASELINE`
(BERT-CRF) is what ``make demo`` and the claims compare it with. The make rules
of the experiments are generated from the entries (:mod:`bga_mner.registry_make`, which
experiments/experiments.mk includes); the report (``bga_mner.report``), the claims and the tests read
the entries through :func:`experiments`. Imports nothing of the package but :mod:`bga_mner.errors`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from omegaconf import OmegaConf

from bga_mner.errors import UserError

# the repository's experiments folder (the package is installed from the repository, editable)
EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "experiments"
REFERENCE = "bga_mner"
BASELINE = "bert_crf"               # the text-only baseline: what make demo and the claims compare with
SEEDS = (42, 43, 44, 45, 46)        # every experiment's default seeds unless its entry says otherwise
TABLES = ("2", "3", "4", "5", "6", "7", "fig5")
RUN_KINDS = ("fit", "test", "sizes", "cross", "params")
KEYS = ("runs", "source", "variants", "directions", "rows", "claims", "stands_for", "seeds")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # a folder, a make variable suffix and a run-name prefix
FRONT_MATTER = re.compile(r"\A---\n(.*?\n)---\n", re.S)


class RegistryError(UserError):
    """An experiment's registry entry is malformed (the message names its README.md)."""


@dataclass(frozen=True)
class Row:
    """An experiment's row in one table: its label and its key in the paper's numbers (None: none)."""

    table: str
    label: str
    paper: str | None


@dataclass(frozen=True)
class Variant:
    """One variant of a ``sizes`` experiment: its name in the run names, the experiment whose
    overrides it adds (``like``) and its setting-name prefix in make claims (None: not there)."""

    name: str
    like: str
    claims: str | None


@dataclass(frozen=True)
class Experiment:
    """One experiment's registry entry (see the module docstring for the keys)."""

    name: str
    folder: Path
    runs: str | None = None
    source: str | None = None
    variants: tuple[Variant, ...] = ()
    directions: tuple[tuple[str, str], ...] = ()
    rows: tuple[Row, ...] = ()
    claims: str | None = None
    stands_for: tuple[tuple[str, str], ...] = ()  # (model, experiment)
    seeds: tuple[int, ...] = SEEDS

    @property
    def config(self) -> Path:
        return self.folder / "config.yaml"

    @property
    def readme(self) -> Path:
        return self.folder / "README.md"

    def row(self, table: str) -> Row | None:
        """Its row in ``table``, or None."""
        return next((r for r in self.rows if r.table == table), None)

    def overrides(self) -> tuple[str, ...]:
        """Its ``config.yaml`` as ``key=value`` overrides (what a claims run adds to the benchmark)."""
        def flat(node: Any, prefix: str) -> list[str]:
            if isinstance(node, Mapping):
                return [item for k, v in node.items() for item in flat(v, f"{prefix}{k}.")]
            value = OmegaConf.to_yaml({"v": node}).strip()[3:]  # YAML spelling: false, null, 1.0e-3
            return [f"{prefix[:-1]}={value}"]

        data = OmegaConf.to_container(OmegaConf.load(self.config))
        return tuple(flat(data or {}, ""))


@lru_cache(maxsize=1)
def paper_results() -> dict[str, Any]:
    """The paper's numbers (``resources/paper_results.yaml``) as plain dicts."""
    text = resources.files("bga_mner").joinpath("resources/paper_results.yaml").read_text("utf-8")
    return OmegaConf.to_container(OmegaConf.create(text))  # type: ignore[return-value]


def paper_keys(table: str) -> list[str]:
    """The row keys of ``table`` in the paper's numbers, in the paper's order (Table 6: its methods;
    Table 5 and Fig. 5: none, the paper's Table 5 is a list of methods and Fig. 5 a plot)."""
    if table in ("5", "fig5"):
        return []
    block = paper_results()[f"table{table}"]
    if table == "6":  # {"<source>-><target>": {method: ...}}
        return list(dict.fromkeys(k for by_method in block.values() for k in by_method))
    return list(block)


def _entry(folder: Path) -> dict[str, Any]:
    readme = folder / "README.md"
    if not readme.is_file():
        raise RegistryError(f"{readme}: missing (every experiment folder has a README.md)")
    match = FRONT_MATTER.match(readme.read_text(encoding="utf-8"))
    if match is None:
        return {}
    try:
        data = OmegaConf.to_container(OmegaConf.create(match.group(1)))
    except Exception as err:  # a YAML error names its line, counted from the line after the first '---'
        raise RegistryError(f"{readme}: its front matter is not valid YAML ({err}; line 1 is the line after "
                            "the first '---')".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise RegistryError(f"{readme}: the front matter is not a mapping of {KEYS}")
    return data


def _parse(folder: Path) -> Experiment:
    readme, data = folder / "README.md", _entry(folder)

    def fail(message: str) -> RegistryError:
        return RegistryError(f"{readme}: {message}")

    if unknown := sorted(set(data) - set(KEYS)):
        raise fail(f"unknown key(s) {unknown} in the front matter; expected some of {KEYS}")
    if data.get("runs") not in (None, *RUN_KINDS):
        raise fail(f"runs: {data['runs']!r}; expected one of {RUN_KINDS}")
    rows = []
    for table, row in (data.get("rows") or {}).items():
        table, row = str(table), row or {}
        if table not in TABLES or not isinstance(row, dict) or set(row) - {"label", "paper"}:
            raise fail(f"rows: {table!r}: expected a table of {TABLES} with {{label, paper}}")
        paper = row.get("paper")
        if paper is not None and str(paper) not in paper_keys(table):
            raise fail(f"rows: {table}: paper key {paper!r} is not in table{table} of paper_results.yaml "
                       f"({paper_keys(table)})")
        rows.append(Row(table, str(row.get("label") or folder.name), None if paper is None else str(paper)))
    variants = tuple(Variant(str(k), str((v or {}).get("like") or k), (v or {}).get("claims"))
                     for k, v in (data.get("variants") or {}).items())
    seeds = tuple(int(s) for s in data.get("seeds") or SEEDS)
    needs = {"test": "source", "sizes": "variants", "cross": "directions"}.get(data.get("runs"))
    if needs and not data.get(needs):
        raise fail(f"runs: {data['runs']} needs {needs}")
    if data.get("stands_for") and rows:
        raise fail("stands_for: its runs fill the rows of the experiments it stands for, so it has no rows")
    return Experiment(folder.name, folder, data.get("runs"), data.get("source"), variants,
                      tuple(tuple(map(str, d)) for d in data.get("directions") or ()),  # type: ignore[misc]
                      tuple(rows), data.get("claims"),
                      tuple((str(m), str(e)) for m, e in (data.get("stands_for") or {}).items()), seeds)


def _check(found: Mapping[str, Experiment]) -> None:
    """What one entry cannot check alone: the experiments it names exist, and names are unique."""
    claims: dict[str, str] = {}
    for exp in found.values():
        def fail(message: str) -> RegistryError:
            return RegistryError(f"{exp.readme}: {message}")

        for other in [exp.source, *(v.like for v in exp.variants), *(e for _, e in exp.stands_for)]:
            if other is not None and other not in found:
                raise fail(f"names experiment {other!r}, which has no folder in {exp.folder.parent}")
        if exp.runs == "test" and found[exp.source].runs != "fit":  # type: ignore[index]
            raise fail(f"source: {exp.source!r} is not trained by make (runs: fit)")
        for name in [exp.claims, *(v.claims for v in exp.variants)]:
            if name is None:
                continue
            if not NAME.match(str(name)) or name in claims:
                raise fail(f"claims: {name!r} is {'taken by ' + claims[name] if name in claims else 'not a name'}")
            claims[name] = exp.name
        if exp.claims and exp.runs not in ("fit", "test", None):
            raise fail(f"claims: a {exp.runs} experiment has a setting per variant (variants: ...: claims:)")
    for name in (REFERENCE, BASELINE):
        if name not in found or found[name].runs != "fit" or not found[name].claims:
            raise RegistryError(f"{EXPERIMENTS_DIR}: experiment {name!r} must be trained (runs: fit) and have a "
                                "setting in make claims (claims:)")


@lru_cache(maxsize=4)
def experiments(folder: Path = EXPERIMENTS_DIR) -> dict[str, Experiment]:
    """Every experiment's entry, by name (= folder name = ``run.experiment``), sorted by name.

    Args:
        folder: the experiments folder (default: the repository's ``experiments/``).
    """
    if not folder.is_dir():
        raise RegistryError(f"{folder}: no experiments folder (the registry reads experiments/*/README.md "
                            "of the repository the package is installed from)")
    found = {}
    for path in sorted(p for p in folder.iterdir() if (p / "config.yaml").is_file()):
        if not NAME.match(path.name):
            raise RegistryError(f"{path}: an experiment's folder name is lower-case letters, digits and _")
        found[path.name] = _parse(path)
    _check(found)
    return found


def get(name: str, folder: Path = EXPERIMENTS_DIR) -> Experiment:
    """One experiment's entry; a ``KeyError`` names the known ones."""
    found = experiments(folder)
    if name not in found:
        raise KeyError(f"no experiment {name!r} in the registry; known: {', '.join(found)}")
    return found[name]


def table_rows(found: Iterable[Experiment], table: str) -> list[tuple[Experiment, Row]]:
    """The rows in ``table`` of the experiments ``found``: (experiment, row), in the paper's order of
    their keys, then the rows the paper lacks by label."""
    order = paper_keys(table)
    mine = [(exp, r) for exp in found if (r := exp.row(table)) is not None]
    return sorted(mine, key=lambda er: (order.index(er[1].paper) if er[1].paper in order else len(order),
                                        er[1].label))


def rows(table: str, folder: Path = EXPERIMENTS_DIR) -> list[tuple[Experiment, Row]]:
    """The rows of ``table`` (:func:`table_rows` of every experiment).

    Args:
        table: one of :data:`TABLES`.
    """
    return table_rows(experiments(folder).values(), table)


def placed(experiment: str | None, model: str, folder: Path = EXPERIMENTS_DIR) -> str | None:
    """The experiment whose rows a run of ``experiment`` and ``model`` fills: its own, or the one its
    experiment stands for with that model (``stands_for``); None for an experiment the registry lacks."""
    exp = experiments(folder).get(experiment or "")
    if exp is None:
        return None
    return dict(exp.stands_for).get(model) if exp.stands_for else exp.name


def claims_setting(experiment: str, folder: Path = EXPERIMENTS_DIR) -> str:
    """The make-claims setting name of ``experiment`` (a ``KeyError`` when it has none)."""
    name = get(experiment, folder).claims
    if name is None:
        raise KeyError(f"experiment {experiment!r} has no setting in make claims (claims: in its README.md)")
    return name


def main(argv: list[str] | None = None) -> int:
    """``python -m bga_mner.registry``: one line per experiment (how make runs it, its claims setting,
    its rows); a malformed entry is one line naming its README.md, exit status 2."""
    import sys

    try:
        found = experiments()
    except RegistryError as err:
        print(f"registry: error: {err}", file=sys.stderr)
        return 2
    for exp in found.values():
        where = ", ".join([*(f"{'Fig. 5' if r.table == 'fig5' else 'Table ' + r.table} {r.label!r}" for r in exp.rows),
                           *(f"{model} runs fill {other}'s rows" for model, other in exp.stands_for)])
        print(f"{exp.name:18s} runs: {exp.runs or '-':7s} claims: {exp.claims or '-':16s} {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
