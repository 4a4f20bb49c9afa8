"""The experiment suite: every config merges, keeps its switches under PROFILE=smoke, and the make
targets run each distinct setting exactly once."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bga_mner.config import CONF_DIR, load_config, schema
from bga_mner.report import paper_results, setting_of

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.parent for p in (ROOT / "experiments").glob("*/config.yaml") if p.parent.name != "demo")
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
    names = {p.name for p in EXPERIMENTS}
    assert {"bga_mner", "bert_crf", "wo_scs", "wo_cycle", "wo_scs_cycle", "data_limited", "real_visual",
            "params", "cross_domain", "modality_missing"} <= names
    for exp in EXPERIMENTS:
        readme = (exp / "README.md").read_text(encoding="utf-8")
        assert re.search(r"Table \d|Fig\. 5", readme) and "make " in readme, exp.name


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
        fake = {"dataset": cfg["data"]["name"], "test_dataset": cfg["data"]["test_name"] or cfg["data"]["name"],
                "model": "bga-mner" if cfg["model"]["use_mcg"] else "bert-crf", "profile": cfg["run"]["profile"],
                "config": cfg}
        keys.append((setting_of(fake), cfg["seed"], cfg["run"]["name"], cfg["paths"]["runs_dir"], args[0]))
    return keys


def test_smoke_all_runs_each_setting_once(tmp_path: Path) -> None:
    keys = _settings(_dry_run("all", tmp_path, "PROFILE=smoke"))
    # 5 Table 2/3 settings + 4 sizes x 2 models trained; real visual and modality missing re-tested
    assert [k[4] for k in keys].count("fit") == 13 and [k[4] for k in keys].count("test") == 2
    assert len({k[:2] for k in keys}) == len(keys), "the same synthetic run would be made twice"
    assert all(k[0].profile == "smoke" and k[0].dataset == "synthetic" and k[3] == str(tmp_path) for k in keys)
    assert sorted(k[0].train_limit for k in keys if k[0].train_limit) == [50, 50, 100, 100, 200, 200, 400, 400]


def test_full_all_covers_the_paper_with_several_seeds(tmp_path: Path) -> None:
    keys = _settings(_dry_run("all", tmp_path, "SEEDS=1 2"))
    assert len(keys) == 64 and len({k[:2] for k in keys}) == 64 and len({k[2] for k in keys}) == 64
    assert [k[4] for k in keys].count("test") == 8  # 2 evaluations x 2 data sets x 2 seeds
    cross = {(k[0].dataset, k[0].test_dataset) for k in keys if k[0].test_dataset != k[0].dataset}
    assert cross == {("twitter2017", "twitter2015"), ("twitter2015", "twitter2017")}
    ablations = {(k[0].use_scs, k[0].use_cycle) for k in keys if k[0].model == "bga-mner"}
    assert ablations == {(True, True), (False, True), (True, False), (False, False)}
    assert {k[0].inference_visual for k in keys} == {"generated", "real"}


@pytest.mark.parametrize("target,experiment,switch", [
    ("table4", "real_visual", {"model.inference_visual": "real"}),
    ("table7", "modality_missing", {"data.modality_missing": True})])
def test_tables_4_and_7_retest_the_trained_bga_mner_runs(target: str, experiment: str, switch: dict,
                                                         tmp_path: Path) -> None:
    """No retraining: each evaluation re-tests a full BGA-MNER run of the same data set and seed,
    after it (make's prerequisite), with its experiment's test-time overrides only."""
    commands = _dry_run(target, tmp_path, "SEEDS=1 2", "DATA_DIR=/data")
    keys = _settings(commands)
    fits = {k[2]: k for k in keys if k[4] == "fit"}
    tests = [(args, k) for args, k in zip(commands, keys) if k[4] == "test"]
    assert len(fits) == len(tests) == 4
    assert all(k[0].is_full() and k[0].standard for k in fits.values())
    assert _flat(OmegaConf.to_container(OmegaConf.load(ROOT / "experiments" / experiment / "config.yaml"))) == switch
    for args, (setting, seed, name, _, _) in tests:
        trained = fits[Path(args[2]).parent.parent.name]
        assert name == f"{experiment}-{setting.dataset}-seed{seed}"
        assert (setting.dataset, seed) == (trained[0].dataset, trained[1])
        assert args[4] == f"experiments/{experiment}/config.yaml" and args[-1] == "paths.data_dir=/data"
        changed = {f: getattr(setting, f) for f in ("inference_visual", "modality_missing")
                   if getattr(setting, f) != getattr(trained[0], f)}
        assert changed == {k.split(".")[1]: v for k, v in switch.items()}
        assert setting.is_full(**changed) and not setting.standard
    db = subprocess.run(["make", "-p", "-n", "--no-print-directory", target, f"RUNS={tmp_path}"], cwd=ROOT,
                        capture_output=True, text=True, check=True).stdout
    prereq = re.search(rf"^{re.escape(str(tmp_path))}/{experiment}-twitter2015-seed42/results.json: (.*)$", db, re.M)
    assert prereq and f"{tmp_path}/bga_mner-twitter2015-seed42/results.json" in prereq.group(1)


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


@pytest.mark.parametrize("target,experiment", [("table4", "real_visual"), ("table7", "modality_missing")])
def test_deleting_a_run_folder_redoes_the_run_and_what_derives_from_it(target: str, experiment: str,
                                                                       tmp_path: Path) -> None:
    """The redo flow of the README: delete a run's folder, make the target again. Fits always run
    with --resume (an interrupted make continues); an evaluation older than its trained run is
    redone with --replace (`bga-mner test --out` refuses a finished folder otherwise)."""
    trained = tmp_path / "bga_mner-synthetic-seed42" / "results.json"
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
    its runs are never full BGA-MNER (no table mixes it in), and `make all` does not train it."""
    exp = ROOT / "experiments" / "real_context"
    assert _flat(OmegaConf.to_container(OmegaConf.load(exp / "config.yaml"))) == {"model.text_context": "real"}
    readme = (exp / "README.md").read_text(encoding="utf-8")
    assert "not in the paper" in readme and "bga-mner fit --config experiments/real_context/config.yaml" in readme
    for profile in ("full", "smoke"):
        cfg = OmegaConf.to_container(load_config(exp / "config.yaml", profile=profile), resolve=True)
        assert cfg["model"]["text_context"] == "real"
        setting = setting_of({"dataset": cfg["data"]["name"], "model": "bga-mner", "config": cfg})
        assert setting.text_context == "real" and not setting.is_full() and not setting.standard
    keys = _settings(_dry_run("all", tmp_path, "PROFILE=smoke"))
    assert all(k[0].text_context == "generated" for k in keys)
