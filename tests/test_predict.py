"""``bga-mner predict``: raw text or CoNLL in, JSONL or CoNLL out, text branch only."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from timm.models import VisionTransformer

from bga_mner.cli import main
from bga_mner.data.conll import read_conll
from bga_mner.data.spans import bio_to_spans
from bga_mner.inference import build_system, read_checkpoint

FIXTURE_TEST = Path(__file__).parent / "fixtures" / "tweets" / "test.txt"


def run_cli(*argv: str, stdin: str | None = None, monkeypatch=None) -> str:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def gold_file(smoke_run, tmp_path_factory) -> Path:
    """The synthetic test split plus the hand-written fixture tweets (OTHER tags, long tweet, ...)."""
    run_dir, _ = smoke_run
    (synthetic,) = Path(json.loads((run_dir / "results.json").read_text())["config"]["paths"]
                        ["cache_dir"]).glob("synthetic-*/test.txt")
    path = tmp_path_factory.mktemp("gold") / "gold.conll"
    path.write_text(synthetic.read_text() + FIXTURE_TEST.read_text())
    return path


def test_jsonl_spans_agree_with_conll_output_through_score(smoke_run, gold_file, tmp_path):
    ckpt = str(smoke_run[0] / "checkpoints" / "inference.pt")
    conll, jsonl = tmp_path / "pred.conll", tmp_path / "pred.jsonl"
    run_cli("predict", "--ckpt", ckpt, "--input", str(gold_file), "--format", "conll", "--out", str(conll))
    run_cli("predict", "--ckpt", ckpt, "--input", str(gold_file), "--out", str(jsonl))
    gold = read_conll(gold_file)
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    predicted = read_conll(conll)
    assert [r["id"] for r in records] == [t.image_id for t in gold] == [t.image_id for t in predicted]
    assert [r["tokens"] for r in records] == [t.words for t in gold]
    assert [r["tags"] for r in records] == [t.tags for t in predicted]
    n_entities = sum(len(r["entities"]) for r in records)
    assert n_entities > 0, "the smoke model should tag some entities"
    for r in records:
        assert [(e["type"], e["start"], e["end"]) for e in r["entities"]] == list(bio_to_spans(r["tags"]))
        assert all(e["text"] == " ".join(r["tokens"][e["start"]:e["end"]]) for e in r["entities"])
    # entity-level P/R/F1 from the JSONL spans equals `bga-mner score` on the CoNLL output
    gold_spans = [set(bio_to_spans(t.tags)) for t in gold]
    pred_spans = [{(e["type"], e["start"], e["end"]) for e in r["entities"]} for r in records]
    tp = sum(len(g & p) for g, p in zip(gold_spans, pred_spans))
    n_gold = sum(map(len, gold_spans))
    precision, recall = 100 * tp / n_entities, 100 * tp / n_gold
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    scored = json.loads(run_cli("score", str(gold_file), str(conll), "--json"))["overall"]
    assert scored == pytest.approx({"precision": precision, "recall": recall, "f1": f1})


def test_raw_text_from_stdin_and_lightning_checkpoint(smoke_run, monkeypatch):
    run_dir, _ = smoke_run
    text = "Kevin Durant scored in Boston tonight\n\n   \nNASA   launch  today !\n"
    outs = [run_cli("predict", "--ckpt", str(run_dir / "checkpoints" / name), stdin=text,
                    monkeypatch=monkeypatch) for name in ("inference.pt", "best.ckpt")]
    assert outs[0] == outs[1]
    records = [json.loads(line) for line in outs[0].splitlines()]
    assert [r["id"] for r in records] == ["line1", "line4"]
    assert records[1]["tokens"] == ["NASA", "launch", "today", "!"]
    assert all(len(r["tags"]) == len(r["tokens"]) for r in records)
    conll = run_cli("predict", "--ckpt", str(run_dir / "checkpoints" / "best.ckpt"), "--format",
                    "conll", stdin=text, monkeypatch=monkeypatch)
    assert conll.startswith("IMGID:line1\nKevin\t")


def test_predict_builds_no_visual_encoder(smoke_run):
    for name in ("inference.pt", "best.ckpt"):
        system = build_system(read_checkpoint(smoke_run[0] / "checkpoints" / name), build_visual=False)
        assert not any(isinstance(m, VisionTransformer) for m in system.model.modules())


def test_bad_input_names_file_and_line(smoke_run, tmp_path, capsys):
    bad = tmp_path / "bad.conll"
    bad.write_text("IMGID:1\nfine\tO\nbroken\tB-XYZ\n")
    assert main(["predict", "--ckpt", str(smoke_run[0] / "checkpoints" / "inference.pt"),
                 "--input", str(bad)]) == 2
    assert f"{bad}:3: unknown label" in capsys.readouterr().err


def test_a_tweet_longer_than_the_window_is_tagged_in_windows_and_reported(smoke_run, tmp_path, capsys):
    out = tmp_path / "pred.conll"
    assert main(["predict", "--ckpt", str(smoke_run[0] / "checkpoints" / "inference.pt"), "--input",
                 str(FIXTURE_TEST), "--format", "conll", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    # fx12 takes more than 128 word pieces: without windows its last words were tagged O unseen
    assert "bga-mner predict: 1 of 4 tweets longer than the model's window (128 word pieces) " \
           "tagged in " in err
    assert [len(t) for t in read_conll(out)] == [len(t) for t in read_conll(FIXTURE_TEST)]


@pytest.fixture(scope="module")
def real_context_run(smoke_fit, tmp_path_factory) -> Path:
    """A finished smoke fit of the real-context control (model.text_context=real)."""
    runs = tmp_path_factory.mktemp("real-context-runs")
    smoke_fit(runs, "model.text_context=real", "run.name=real-context")  # experiments/real_context
    return runs / "real-context"


def test_predict_refuses_a_real_context_checkpoint(real_context_run, tmp_path, capsys):
    """The control's text layers read the real image: `bga-mner predict` (image-free) refuses it."""
    text = tmp_path / "in.txt"
    text.write_text("Kevin Durant scored in Boston tonight\n")
    for name in ("best.ckpt", "inference.pt"):
        ckpt = real_context_run / "checkpoints" / name
        assert read_checkpoint(ckpt).config.model.text_context == "real"
        assert main(["predict", "--ckpt", str(ckpt), "--input", str(text)]) == 2
        err = capsys.readouterr().err
        assert "text_context=real" in err and "reads the real image" in err and "image-free" in err
        assert "bga-mner test" in err


def test_a_real_context_checkpoint_builds_its_visual_branch_for_evaluation(real_context_run):
    from bga_mner.inference import CheckpointError

    system = build_system(read_checkpoint(real_context_run / "checkpoints" / "best.ckpt"))
    assert system.model.build_visual and hasattr(system.model, "visual_embed")  # reads_images(cfg, "test")
    assert system.model.text_context == "real"
    with pytest.raises(CheckpointError, match="image-free inference checkpoint.*text_context=real"):
        build_system(read_checkpoint(real_context_run / "checkpoints" / "inference.pt"))
    # `bga-mner test` reads the test images (the network has no image-free mode): the fit's scores
    from bga_mner.evaluation import evaluate

    evaluation = evaluate(real_context_run / "checkpoints" / "best.ckpt")
    assert evaluation.image_counts.get("test") is not None  # the test images were read
    fitted = json.loads((real_context_run / "results.json").read_text())["test"]["overall"]
    assert evaluation.scores["overall"] == pytest.approx(fitted)
