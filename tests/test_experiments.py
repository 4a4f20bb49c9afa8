"""The experiment suite: the registry (each experiment's README.md front matter) is complete and
well-formed, every config merges, keeps its switches under PROFILE=smoke and runs a step, and the
make targets run each distinct setting exactly once."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bga_mner import registry
from bga_mner.config import CONF_DIR, load_config, schema
from bga_mner.registry import REFERENCE
from bga_mner.report import paper_results, setting_of

ROOT = Path(__file__).resolve().parents[1]
FOUND = registry.experiments()
EXPERIMENTS = [exp.folder for name, exp in FOUND.items() if name != "demo"]  # demo: no paper table
EVALUATIONS = [(f"table{exp.rows[0].table}", name) for name, exp in FOUND.items() if exp.runs == "test"]
TARGETS = ("reproduce-table2", "ablations", "data-efficiency", "table4", "table5", "table6", "table7",
           "all", "data", "detect", "wandb-sync", "report")
# Switches an experiment sets that the smoke profile must keep (it swaps only data set and backbones).
SWITCHES = ("model.use_mcg", "model.use_scs", "model.use_cycle", "model.inference_visual",
            "data.use_images", "data.train_limit", "data.modality_missing")


def _flat(cfg: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in cfg.items():
        if isinstance(value, dict) and value:
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_suite_is_complete() -> None:
    """Every folder of experiments/ is an experiment of the registry; every table and Fig. 5 has its
    rows, Tables 3 and 4 every row of the paper, each row one experiment; every README names its
    table and make target."""
    assert set(FOUND) == {p.name for p in (ROOT / "experiments").iterdir() if p.is_dir()}
    assert {row.table for exp in FOUND.values() for row in exp.rows} == set(registry.TABLES)
    for table in ("3", "4"):
        assert sorted(row.paper for _, row in registry.rows(table)) == sorted(registry.paper_keys(table)), table
    assert [exp.name for exp, _ in registry.rows("2")] == ["bert_crf", REFERENCE]  # the paper's order
    assert [row.label for _, row in registry.rows("3") if row.paper] == [  # then any the paper lacks
        "BGA-MNER", "w/o SCS", "w/o cycle", "w/o SCS & w/o cycle", "w/o SCS & w/o MCG (BERT-CRF)"]
    for exp in EXPERIMENTS:
        readme = (exp / "README.md").read_text(encoding="utf-8")
        assert re.search(r"Table \d|Fig\. 5", readme) and "make " in readme, exp.name


def test_a_bad_registry_entry_names_its_readme(tmp_path: Path) -> None:
    """A typo in a front matter is an error naming the README.md and the key, not a silent skip."""
    for name in ("bga_mner", "bert_crf"):
        shutil.copytree(ROOT / "experiments" / name, tmp_path / name)
    registry.experiments(tmp_path)  # the two are a registry
    readme = tmp_path / "bert_crf" / "README.md"
    text = readme.read_text(encoding="utf-8")
    for bad, message in ((text.replace("runs: fit", "run: fit"), r"unknown key\(s\) \['run'\]"),
                         (text.replace("paper: wo_scs_mcg", "paper: wo_mcg"),
                          "rows: 3: paper key 'wo_mcg' is not in table3"),
                         (text.replace("runs: fit", "runs: train"), "runs: 'train'; expected one of"),
                         (text.replace("runs: fit", "runs: test"), "runs: test needs source"),
                         (text.replace("claims: bert_crf", "claims: bga"), "claims: 'bga' is taken by bert_crf")):
        readme.write_text(bad, encoding="utf-8")
        registry.experiments.cache_clear()
        named = tmp_path / "bga_mner" / "README.md" if "taken" in message else readme  # the second to claim it
        with pytest.raises(registry.RegistryError, match=f"{re.escape(str(named))}: {message}"):
            registry.experiments(tmp_path)
    registry.experiments.cache_clear()


@pytest.mark.parametrize("exp", EXPERIMENTS, ids=lambda p: p.name)
def test_config_merges_and_smoke_keeps_switches(exp: Path) -> None:
    own = _flat(OmegaConf.to_container(OmegaConf.load(exp / "config.yaml")))
    base = _flat(OmegaConf.to_container(schema()))
    smoke_keys = set(_flat(OmegaConf.to_container(OmegaConf.load(CONF_DIR / "profiles" / "smoke.yaml"))))
    assert set(own) <= set(base), f"{exp.name}: keys not in the config schema: {set(own) - set(base)}"
    full = load_config(exp / "config.yaml")
    smoke = load_config(exp / "config.yaml", profile="smoke")
    assert full.run.experiment == smoke.run.experiment == exp.name
    for key, value in own.items():
        assert OmegaConf.select(full, key) == value, key
        if key not in smoke_keys:
            assert OmegaConf.select(smoke, key) == value, f"{exp.name}: smoke lost {key}"
    for key in SWITCHES:  # the profile never touches a switch
        assert OmegaConf.select(smoke, key) == OmegaConf.select(full, key), key
    assert smoke.data.name == "synthetic" and smoke.model.text_encoder == "tiny-bert"
    for key, paper in (("model.text_encoder", "bert-base-uncased"), ("optim.lr", 3e-5)):
        if key not in own:  # the paper's, untouched unless the experiment is about it (large: encoders)
            assert OmegaConf.select(full, key) == paper, f"{exp.name}: {key}"


def test_readmes_quote_the_papers_numbers() -> None:
    def values(node: object) -> set[float]:
        if isinstance(node, dict):
            return set().union(*map(values, node.values()))
        if isinstance(node, list):
            return set().union(*map(values, node))
        return {round(float(node), 2)} if isinstance(node, (int, float)) else set()

    known = values(paper_results())
    for exp in EXPERIMENTS:
        quoted = {float(x) for x in re.findall(r"(?<![\d.])\d{2}\.\d{2}(?![\d.])", (exp / "README.md").read_text())}
        assert quoted <= known, f"{exp.name}/README.md quotes numbers not in paper_results.yaml: {quoted - known}"
    assert {76.31, 71.81, 75.88, 75.08, 68.71} <= {
        float(x) for exp in EXPERIMENTS for x in re.findall(r"\d{2}\.\d{2}", (exp / "README.md").read_text())}


def _dry_run(target: str, tmp_path: Path, *variables: str) -> list[list[str]]:
    """The `bga-mner fit` and `bga-mner test` argument lists (command first) that `make -n TARGET`
    would run."""
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    out = subprocess.run(["make", "-n", "--no-print-directory", target, f"RUNS={tmp_path}", *variables],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert re.search(rf"bga-mner report {re.escape(str(tmp_path))} --table", out), out
    return [shlex.split(line)[1:] for line in out.splitlines() if re.search(r"bga-mner (fit|test) ", line)]


def _config(args: list[str], trained: dict[str, dict]) -> dict:
    """The merged config of one dry-run command; a `test` re-tests a trained run's config (as its
    checkpoint stores it) with the experiment's test-time overrides."""
    command, args = args[0], args[1:]
    if command == "fit":
        assert args[:2] == ["--resume", "--config"], args  # an interrupted make continues the run
        args = args[1:]
        cfg = OmegaConf.to_container(load_config(ROOT / args[1], args[2:]), resolve=True)
        trained[cfg["run"]["name"]] = cfg
        return cfg
    assert args[6] == "--replace", args  # a redone trained run redoes its evaluation
    args = args[:6] + args[7:]
    opts = dict(zip(args[0:6:2], args[1:6:2]))
    assert list(opts) == ["--ckpt", "--config", "--out"], args
    ckpt, out = Path(opts["--ckpt"]), Path(opts["--out"])
    assert ckpt.name == "best.ckpt" and ckpt.parent.name == "checkpoints"
    source = trained[ckpt.parent.parent.name]  # the fit that makes it ran first
    cfg = OmegaConf.merge(source, OmegaConf.load(ROOT / opts["--config"]), OmegaConf.from_dotlist(args[6:]))
    cfg.run.name, cfg.paths.runs_dir = out.name, str(out.parent)
    cfg.run.experiment = Path(opts["--config"]).parent.name
    return OmegaConf.to_container(cfg, resolve=True)


def _settings(commands: list[list[str]]) -> list[tuple]:
    """(report setting, seed, run name, runs folder, command) of each dry-run command."""
    keys, trained = [], {}
    for args in commands:
        cfg = _config(args, trained)
        fake = {"experiment": cfg["run"]["experiment"], "dataset": cfg["data"]["name"],
                "test_dataset": cfg["data"]["test_name"] or cfg["data"]["name"],
                "model": "bga-mner" if cfg["model"]["use_mcg"] else "bert-crf", "profile": cfg["run"]["profile"],
                "config": cfg}
        keys.append((setting_of(fake), cfg["seed"], cfg["run"]["name"], cfg["paths"]["runs_dir"], args[0]))
    return keys


def _made(exp: registry.Experiment, datasets: int, seeds: int, sizes: int = 4) -> tuple[int, int]:
    """(fits, evaluations) that make all runs of ``exp`` (its registry entry) on ``datasets`` data sets."""
    per_seed = {"fit": (datasets, 0), "test": (0, datasets), "sizes": (datasets * sizes * len(exp.variants), 0),
                "cross": (len(exp.directions) if datasets > 1 else 0, 0)}.get(exp.runs or "", (0, 0))
    return per_seed[0] * seeds, per_seed[1] * seeds


def test_smoke_all_runs_each_setting_once(tmp_path: Path) -> None:
    keys = _settings(_dry_run("all", tmp_path, "PROFILE=smoke"))
    # the paper's: 5 Table 2/3 settings + 4 sizes x 2 models trained; real visual and modality missing re-tested
    fits, tests = (sum(x) for x in zip(*(_made(exp, 1, 1) for exp in FOUND.values())))
    assert fits >= 13 and tests >= 2
    assert [k[4] for k in keys].count("fit") == fits and [k[4] for k in keys].count("test") == tests
    assert len({k[:2] for k in keys}) == len(keys), "the same synthetic run would be made twice"
    assert all(k[0].profile == "smoke" and k[0].dataset == "synthetic" and k[3] == str(tmp_path) for k in keys)
    assert sorted(k[0].train_limit for k in keys if k[0].train_limit) == [50, 50, 100, 100, 200, 200, 400, 400]
    assert {k[0].experiment for k in keys} == {name for name, exp in FOUND.items()
                                               if exp.runs in ("fit", "test", "sizes")}


def test_full_all_covers_the_paper_with_several_seeds(tmp_path: Path) -> None:
    keys = _settings(_dry_run("all", tmp_path, "SEEDS=1 2"))
    fits, tests = (sum(x) for x in zip(*(_made(exp, 2, 2) for exp in FOUND.values())))
    assert len(keys) == fits + tests == len({k[:2] for k in keys}) == len({k[2] for k in keys}) >= 64
    assert [k[4] for k in keys].count("test") == tests >= 8  # 2 evaluations x 2 data sets x 2 seeds
    cross = {(k[0].dataset, k[0].test_dataset) for k in keys if k[0].test_dataset != k[0].dataset}
    assert cross == {("twitter2017", "twitter2015"), ("twitter2015", "twitter2017")}
    assert {k[0].experiment for k in keys} == {name for name, exp in FOUND.items()
                                               if exp.runs in ("fit", "test", "sizes", "cross")}
    for table in ("2", "3", "4", "7"):  # each row of the table: its runs on both data sets, both seeds
        for exp, _ in registry.rows(table):
            assert sorted((k[0].dataset, k[1]) for k in keys if k[0].experiment == exp.name) == \
                [(d, s) for d in ("twitter2015", "twitter2017") for s in (1, 2)], (table, exp.name)


def test_default_seeds_are_each_experiments(tmp_path: Path) -> None:
    """Without SEEDS, each experiment runs its registry seeds (5; the smoke profile the first)."""
    keys = _settings(_dry_run("reproduce-table2", tmp_path))
    assert sorted({k[1] for k in keys}) == list(FOUND[REFERENCE].seeds) == [42, 43, 44, 45, 46]
    assert {k[1] for k in _settings(_dry_run("reproduce-table2", tmp_path, "PROFILE=smoke"))} == {42}


@pytest.mark.parametrize("target,experiment", EVALUATIONS)
def test_evaluations_retest_the_trained_runs(target: str, experiment: str, tmp_path: Path) -> None:
    """No retraining: each evaluation (Tables 4 and 7) re-tests a trained run of its source (full
    BGA-MNER) of the same data set and seed, after it (make's prerequisite), with nothing changed but
    its experiment's test-time overrides."""
    source = FOUND[experiment].source
    commands = _dry_run(target, tmp_path, "SEEDS=1 2", "DATA_DIR=/data")
    keys = _settings(commands)
    fits = {k[2]: k for k in keys if k[4] == "fit"}
    tests = [(args, k) for args, k in zip(commands, keys) if k[4] == "test"]
    assert len(fits) == len(tests) == 4
    assert all(k[0].experiment == source and k[0].standard for k in fits.values())
    trained_cfgs: dict[str, dict] = {}
    for args in commands:
        if args[0] == "fit":
            _config(args, trained_cfgs)
    own = _flat(OmegaConf.to_container(OmegaConf.load(FOUND[experiment].config)))
    for args, (setting, seed, name, _, _) in tests:
        trained = fits[Path(args[2]).parent.parent.name]
        assert name == f"{experiment}-{setting.dataset}-seed{seed}"
        assert (setting.dataset, seed, setting.experiment) == (trained[0].dataset, trained[1], experiment)
        assert args[4] == f"experiments/{experiment}/config.yaml" and args[-1] == "paths.data_dir=/data"
        before, after = _flat(trained_cfgs[trained[2]]), _flat(_config(args, dict(trained_cfgs)))
        changed = {k: v for k, v in after.items() if before.get(k) != v}
        assert changed == own | {"run.name": name, "run.experiment": experiment}
    db = subprocess.run(["make", "-p", "-n", "--no-print-directory", target, f"RUNS={tmp_path}"], cwd=ROOT,
                        capture_output=True, text=True, check=True).stdout
    prereq = re.search(rf"^{re.escape(str(tmp_path))}/{experiment}-twitter2015-seed42/results.json: (.*)$", db, re.M)
    assert prereq and f"{tmp_path}/{source}-twitter2015-seed42/results.json" in prereq.group(1)


@pytest.mark.parametrize("target,table", [("reproduce-table2", "2"), ("ablations", "3"), ("table4", "4"),
                                          ("table6", "6"), ("table7", "7"), ("data-efficiency", "fig5")])
def test_each_target_ends_with_its_table(target: str, table: str, tmp_path: Path) -> None:
    fits = _dry_run(target, tmp_path)
    assert fits
    out = subprocess.run(["make", "-n", "--no-print-directory", target, f"RUNS={tmp_path}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()
    assert out[-1].endswith(f"report {tmp_path} --table {table}")


def _finished(results: Path, mtime: float) -> None:
    """A finished run as make sees it: its results.json, with this modification time."""
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("{}\n")
    os.utime(results, (mtime, mtime))


@pytest.mark.parametrize("target,experiment", EVALUATIONS)
def test_deleting_a_run_folder_redoes_the_run_and_what_derives_from_it(target: str, experiment: str,
                                                                       tmp_path: Path) -> None:
    """The redo flow of the README: delete a run's folder, make the target again. Fits always run
    with --resume (an interrupted make continues); an evaluation older than its trained run is
    redone with --replace (`bga-mner test --out` refuses a finished folder otherwise)."""
    trained = tmp_path / f"{FOUND[experiment].source}-synthetic-seed42" / "results.json"
    evaluation = tmp_path / f"{experiment}-synthetic-seed42" / "results.json"
    now = 1_700_000_000.0

    def commands() -> list[tuple[str, str]]:
        """(command, run folder it writes) of `make -n TARGET PROFILE=smoke`."""
        out = []
        for args in _dry_run(target, tmp_path, "PROFILE=smoke"):
            name = next(a.split("=", 1)[1] for a in args if a.startswith("run.name=")) if args[0] == "fit" \
                else Path(args[args.index("--out") + 1]).name
            assert ("--resume" if args[0] == "fit" else "--replace") in args, args
            out.append((args[0], name))
        return out

    _finished(trained, now)
    _finished(evaluation, now + 60)
    assert commands() == []  # all done: only the table is printed
    shutil.rmtree(evaluation.parent)  # redo the evaluation alone
    assert commands() == [("test", evaluation.parent.name)]
    _finished(evaluation, now + 60)
    shutil.rmtree(trained.parent)  # redo the trained run: the evaluation follows
    assert commands() == [("fit", trained.parent.name), ("test", evaluation.parent.name)]
    _finished(trained, now + 120)  # the trained run redone, the evaluation not yet (make was stopped)
    assert commands() == [("test", evaluation.parent.name)]


def test_every_target_has_help() -> None:
    text = (ROOT / "experiments" / "experiments.mk").read_text(encoding="utf-8")
    for target in TARGETS:
        assert re.search(rf"^{re.escape(target)}:.*## \S", text, re.M), target


def test_the_real_context_control_is_a_switch_outside_the_papers_tables(tmp_path: Path) -> None:
    """experiments/real_context: model.text_context=real and nothing else; the smoke profile keeps it,
    it has no row in any table and make runs it for none (only make claims does)."""
    exp = ROOT / "experiments" / "real_context"
    assert _flat(OmegaConf.to_container(OmegaConf.load(exp / "config.yaml"))) == {"model.text_context": "real"}
    readme = (exp / "README.md").read_text(encoding="utf-8")
    assert "not in the paper" in readme and "bga-mner fit --config experiments/real_context/config.yaml" in readme
    for profile in ("full", "smoke"):
        cfg = OmegaConf.to_container(load_config(exp / "config.yaml", profile=profile), resolve=True)
        assert cfg["model"]["text_context"] == "real" and cfg["run"]["experiment"] == "real_context"
    control = FOUND["real_context"]
    assert control.rows == () and control.runs is None and control.claims == "real_context"
    keys = _settings(_dry_run("all", tmp_path, "PROFILE=smoke"))
    assert all(k[0].experiment != "real_context" for k in keys)


# ------------------------------------------------------------------------- every config runs a step
def _one_step(cfg, stage: str = "fit") -> dict:
    """One training step and one dev step (``stage="fit"``), or one test step, of a merged config:
    Lightning's fast_dev_run on the synthetic set of the smoke profile."""
    from bga_mner.build import build_datamodule, build_trainer, decide_images
    from bga_mner.system import MNERSystem

    cfg = decide_images(cfg, stage)  # type: ignore[arg-type]
    trainer = build_trainer(cfg, fast_dev_run=1, logger=False, enable_checkpointing=False, callbacks=[],
                            enable_progress_bar=False, enable_model_summary=False)
    system, datamodule = MNERSystem(cfg), build_datamodule(cfg)
    (trainer.fit if stage == "fit" else trainer.test)(system, datamodule=datamodule)
    return dict(trainer.callback_metrics)


STEP = ("run.profile=smoke", "data.synthetic.train=8", "data.synthetic.valid=4", "data.synthetic.test=4",
        "logging.wandb=false")


@pytest.mark.parametrize("exp", [pytest.param(exp, marks=pytest.mark.slow) if name == "large" else exp
                                 for name, exp in FOUND.items()], ids=lambda e: e.name)
def test_every_experiment_runs_a_step(exp: registry.Experiment, tmp_path: Path, one_thread) -> None:
    """Each experiment of the registry as make (or make claims, make demo) runs it, in the smoke
    profile, for one step: trained ones a training and a dev step (each ``sizes`` variant at a small
    training set), evaluations a test step of their source with their test-time overrides, ``params``
    ones their parameter counts (experiments/large without the profile, as make params-large: its
    126-px crops need its patch-14 ViT; 47 s, slow)."""
    own = (f"paths.cache_dir={tmp_path}", f"paths.runs_dir={tmp_path}")
    if exp.runs == "params":
        from bga_mner.commands.params import count_parameters

        profile = () if exp.name == "large" else ("run.profile=smoke",)
        counts = count_parameters(load_config(exp.config, profile))
        assert counts["train"]["total"] > counts["inference"]["total"] > 0
    elif exp.runs == "test":
        cfg = load_config(FOUND[exp.source].config, [*STEP, *own])
        cfg = OmegaConf.merge(cfg, OmegaConf.load(exp.config))  # what `bga-mner test --config` changes
        assert "test/f1" in _one_step(cfg, "test")
    else:
        variants = [FOUND[v.like].overrides() + ("data.train_limit=4",) for v in exp.variants] or [()]
        for overrides in variants:
            metrics = _one_step(load_config(exp.config, [*STEP, *own, *overrides]))
            assert "train/loss" in metrics and "val/f1" in metrics, exp.name
