"""Sharing a model: ``bga-mner export`` (a Hub-style folder), loading it by folder or hub id
(``predict --model``, ``Tagger.from_pretrained``), ``bga-mner push``, and failing at once offline."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bga_mner.cli import main
from conftest import synthetic_split

FIXTURE_TEST = Path(__file__).parent / "fixtures" / "tweets" / "test.txt"


def run_cli(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


def one_error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bga-mner {argv[0]}: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def exported(smoke_run, tmp_path_factory) -> Path:
    """The smoke run exported (``bga-mner export RUN OUT``)."""
    out = tmp_path_factory.mktemp("export") / "smoke-model"
    printed = run_cli("export", str(smoke_run[0]), str(out))
    assert printed.startswith(f"{out}: ") and "model.safetensors" in printed
    return out


@pytest.fixture(scope="module")
def gold_input(smoke_run, tmp_path_factory) -> Path:
    """The synthetic test split and the fixture tweets (a long one among them), as CoNLL."""
    synthetic = synthetic_split(smoke_run[0])
    path = tmp_path_factory.mktemp("input") / "gold.conll"
    path.write_text(synthetic.read_text() + FIXTURE_TEST.read_text())
    return path


def test_export_writes_a_hub_folder(exported, smoke_run):
    names = sorted(p.name for p in exported.iterdir())
    assert names == ["README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    config = json.loads((exported / "config.json").read_text())
    saved = json.loads((smoke_run[0] / "results.json").read_text())["config"]
    assert config["format"] == "bga-mner-pretrained/1"
    assert config["labels"] == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    assert config["model"] == {**saved["model"], "inference_visual": "generated"}
    assert config["max_length"] == saved["data"]["max_length"]
    assert config["source"]["run"] == "smoke" and config["source"]["seed"] == 42
    assert not list(exported.parent.glob(".*tmp"))  # written under a temporary name, renamed


def test_round_trip_predict_model_is_byte_identical_to_the_checkpoint(exported, smoke_run, gold_input):
    """fit -> export -> predict --model OUT gives what predict --ckpt gives, byte for byte."""
    ckpts = [smoke_run[0] / "checkpoints" / name for name in ("inference.pt", "best.ckpt")]
    for fmt in ("jsonl", "conll"):
        from_model = run_cli("predict", "--model", str(exported), "--input", str(gold_input), "--format", fmt)
        assert from_model.count("B-") > 0  # the smoke model tags something
        for ckpt in ckpts:
            assert run_cli("predict", "--ckpt", str(ckpt), "--input", str(gold_input), "--format", fmt) == from_model


def test_the_folder_loads_with_huggingface_hub_and_safetensors_alone(exported, smoke_run):
    """No bga-mner, no torch.load, no pickle: the card, the config and every weight read back."""
    script = f"""
import json, sys
from huggingface_hub import ModelCard
from safetensors import safe_open
folder = {str(exported)!r}
card = ModelCard.load(folder + "/README.md")
config = json.load(open(folder + "/config.json"))
with safe_open(folder + "/model.safetensors", framework="numpy") as f:
    shapes = {{k: list(f.get_tensor(k).shape) for k in f.keys()}}
assert not any(m.startswith(("bga_mner", "torch", "pickle")) for m in sys.modules if m not in ("pickle",)), \\
    sorted(m for m in sys.modules if m.startswith(("bga_mner", "torch")))
print(json.dumps({{"library": card.data.library_name, "labels": config["labels"], "shapes": shapes}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout)
    assert loaded["library"] == "bga-mner" and len(loaded["labels"]) == 9
    from bga_mner.inference import read_checkpoint
    from bga_mner.pretrained import network_from_checkpoint

    network = network_from_checkpoint(read_checkpoint(smoke_run[0] / "checkpoints" / "best.ckpt"))
    expected = network.inference_state_dict()
    assert loaded["shapes"] == {k: list(v.shape) for k, v in expected.items()}  # image-free weights only
    assert not any(k.startswith(("visual_embed.", "visual_layers.", "v2t.")) for k in loaded["shapes"])


def test_loading_the_folder_never_unpickles(exported, monkeypatch):
    import pickle

    from bga_mner.tagger import Tagger

    def refuse(*args, **kwargs):
        raise AssertionError("a shared model must not be unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert Tagger.from_pretrained(exported)("Kevin Durant scored in Boston") is not None


def test_the_card_gives_the_numbers_of_results_json(exported, smoke_run):
    from huggingface_hub import ModelCard

    from bga_mner.report.bootstrap import bootstrap_ci
    from bga_mner.report.statistics import read_counts

    results = json.loads((smoke_run[0] / "results.json").read_text())
    card = ModelCard.load(exported / "README.md")
    metrics = {r.metric_name: r.metric_value for r in card.data.eval_results}
    for m in ("f1", "precision", "recall"):
        assert metrics[f"test {m} (entity, micro)"] == round(results["test"]["overall"][m], 2)
    for etype in ("PER", "LOC", "ORG", "MISC"):
        assert metrics[f"test F1 {etype}"] == round(results["test"][etype]["f1"], 2)
    text = card.text
    for group in ("overall", "PER", "LOC", "ORG", "MISC"):
        row = results["test"][group]
        assert (f"| {group} | {row['precision']:.2f} | {row['recall']:.2f} | {row['f1']:.2f} |") in text
    low, high = bootstrap_ci(read_counts(smoke_run[0]))
    assert f"Test F1 {results['test']['overall']['f1']:.2f}, 95% CI [{low:.2f}, {high:.2f}]" in text
    assert f"Dev F1 {results['dev']['overall']['f1']:.2f}" in text
    assert "seed 42, one run" in text and results["git_commit"] in text
    for limit in ("Image-free inference", "English tweets", "The training data's period"):
        assert limit in text
    assert "Not a real tagger" in text  # a synthetic smoke model says so


def test_tagger_api_returns_spans_in_the_pipeline_shape(exported, smoke_run, tmp_path):
    from bga_mner.tagger import Tagger

    tagger = Tagger.from_pretrained(str(exported))
    tweets = ["Kevin  Durant scored in Boston tonight", "   ", "NASA launch today !",
              " ".join(["Kevin Durant in Boston"] * 60)]  # a long one: windows
    spans = tagger(tweets)
    assert len(spans) == 4 and spans[1] == [] and sum(map(len, spans)) > 0
    assert tagger(tweets[0]) == spans[0]  # one string: its entities
    # the entities of predict's JSONL, at character offsets into each string
    lines = tmp_path / "tweets.txt"
    lines.write_text("\n".join(tweets) + "\n")
    records = [json.loads(line) for line in run_cli(
        "predict", "--ckpt", str(smoke_run[0] / "checkpoints" / "inference.pt"), "--input", str(lines)).splitlines()]
    assert [r["id"] for r in records] == ["line1", "line3", "line4"]  # a blank line is no tweet
    for text, entities, record in zip([tweets[0], tweets[2], tweets[3]], [spans[0], spans[2], spans[3]], records):
        assert [(e["type"], " ".join(e["text"].split())) for e in entities] == \
            [(r["type"], r["text"]) for r in record["entities"]]
        for e in entities:
            assert set(e) == {"type", "start", "end", "text"} and text[e["start"]:e["end"]] == e["text"]


def test_a_hub_id_loads_from_the_cache_offline(exported, tmp_path, monkeypatch):
    """A hub id resolves through huggingface_hub's cache (here a hand-laid one): no network."""
    from huggingface_hub import constants

    from bga_mner.tagger import Tagger

    snapshot = tmp_path / "hub" / "models--someone--bga-smoke" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for f in exported.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (tmp_path / "hub" / "models--someone--bga-smoke" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--bga-smoke" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    text = "Kevin Durant scored in Boston"
    assert Tagger.from_pretrained("someone/bga-smoke")(text) == Tagger.from_pretrained(exported)(text)


def test_offline_a_hub_id_fails_at_once_in_one_line(capsys, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    text = tmp_path / "in.txt"
    text.write_text("Kevin Durant\n")
    line = one_error_line(capsys, ["predict", "--model", "someone/not-cached", "--input", str(text)])
    assert "model 'someone/not-cached': not a local folder" in line and "HF_HUB_OFFLINE=1" in line
    line = one_error_line(capsys, ["predict", "--model", str(tmp_path / "no" / "such" / "folder"), "--input",
                                   str(text)])
    assert "no such folder" in line


def test_unreachable_hub_fails_in_one_line(tmp_path):
    """Online mode, a Hub that refuses connections: one line, exit 2 (a subprocess: the endpoint is
    read when huggingface_hub is imported)."""
    text = tmp_path / "in.txt"
    text.write_text("Kevin Durant\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HUB_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "bga_mner.cli", "predict", "--model", "someone/model",
                           "--input", str(text)], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("bga-mner predict: error: model 'someone/model': not a local folder, and the "
                           "Hugging Face Hub could not give it")


def test_fit_with_a_hub_id_encoder_fails_before_any_run_folder(capsys, tmp_path):
    runs = tmp_path / "runs"
    line = one_error_line(capsys, ["fit", "run.profile=smoke", "model.text_encoder=someone/not-cached",
                                   f"paths.runs_dir={runs}", f"paths.cache_dir={tmp_path / 'cache'}"])
    assert "model.text_encoder 'someone/not-cached': not a local folder" in line
    assert "model.text_encoder=DIR" in line
    assert not runs.exists() and not (tmp_path / "cache").exists()


def test_push_uploads_the_folder_as_it_is(exported, monkeypatch, capsys):
    """``bga-mner push`` through a mocked HfApi: one repository, one upload of the folder; nothing
    leaves the machine."""
    from huggingface_hub import HfApi, constants

    calls = []

    class Repo:
        repo_id = "someone/bga-smoke"

    class Commit:
        commit_url = "https://hub.example/someone/bga-smoke/commit/1"

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw))
                        or Repo())
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw)) or Commit())
    out = run_cli("push", str(exported), "someone/bga-smoke", "--private")
    assert calls[0] == ("create", "someone/bga-smoke", {"private": True, "repo_type": "model", "exist_ok": True})
    assert calls[1][1]["folder_path"] == str(exported) and calls[1][1]["repo_id"] == "someone/bga-smoke"
    assert "uploaded 5 files" in out and Commit.commit_url in out
    # offline: refused in one line, before any request
    calls.clear()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "HF_HUB_OFFLINE=1" in one_error_line(capsys, ["push", str(exported), "someone/bga-smoke"])
    assert calls == []


def test_push_refuses_a_folder_with_a_pickle(exported, tmp_path, capsys):
    folder = tmp_path / "copy"
    folder.mkdir()
    for f in exported.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    assert "pickled" in one_error_line(capsys, ["push", str(folder), "someone/x"])


def test_export_refuses_an_existing_folder_and_an_unfinished_run(exported, smoke_run, tmp_path, capsys):
    assert "already exists" in one_error_line(capsys, ["export", str(smoke_run[0]), str(exported)])
    assert "results.json: not found" in one_error_line(capsys, ["export", str(tmp_path), str(tmp_path / "o")])


def test_onnx_export_tags_as_torch_does(smoke_run, gold_input, tmp_path):
    """export --onnx: model.onnx (fp32) gives torch's tags; model.int8.onnx gives a tag per word."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx-model"
    assert "model.int8.onnx" in run_cli("export", str(smoke_run[0]), str(out), "--onnx")
    outputs = {rt: run_cli("predict", "--model", str(out), "--runtime", rt, "--input", str(gold_input),
                           "--format", "conll") for rt in ("torch", "onnx", "onnx-int8")}
    assert outputs["onnx"] == outputs["torch"]
    lines = [line.split("\t") for line in outputs["onnx-int8"].splitlines() if "\t" in line]
    assert len(lines) == sum(1 for line in outputs["torch"].splitlines() if "\t" in line)
    assert {tag for _, tag in lines} <= {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"}
