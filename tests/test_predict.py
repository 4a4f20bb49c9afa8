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


# --------------------------------------------------------------------------- fast tagging, streaming
def test_sorted_batches_keep_the_input_order_and_the_tags(smoke_run, tmp_path):
    """Tweets of very different lengths, batched by length: the output is in input order and each
    tweet's tags are those it gets alone (batch size 1)."""
    lines = [" ".join(["Kevin Durant scored in Boston"] * n) for n in (9, 1, 5, 2, 12, 1, 3)]
    text = tmp_path / "in.txt"
    text.write_text("\n".join(lines) + "\n")
    ckpt = str(smoke_run[0] / "checkpoints" / "inference.pt")
    batched = run_cli("predict", "--ckpt", ckpt, "--input", str(text), "--batch-size", "3")
    alone = run_cli("predict", "--ckpt", ckpt, "--input", str(text), "--batch-size", "1")
    records = [json.loads(line) for line in batched.splitlines()]
    assert [r["id"] for r in records] == [f"line{i}" for i in range(1, 8)]
    assert [len(r["tokens"]) for r in records] == [5 * n for n in (9, 1, 5, 2, 12, 1, 3)]
    assert batched == alone


def test_tag_tweets_batches_by_length(smoke_run):
    """The windows of one batch are of similar length: sorted, not in input order."""
    from bga_mner.data.conll import Tweet
    from bga_mner.tagger import Tagger

    tagger = Tagger.from_checkpoint(smoke_run[0] / "checkpoints" / "inference.pt", batch_size=2)
    seen: list[int] = []
    decode = tagger.decode_batch

    def spy(batch):
        seen.append(int(batch["attention_mask"].sum(1).max()) - int(batch["attention_mask"].sum(1).min()))
        return decode(batch)

    tagger.decode_batch = spy
    tweets = [Tweet(str(n), ["Boston"] * n, ["O"] * n) for n in (30, 1, 29, 2)]
    tags = tagger.tag(tweets)
    assert [len(t) for t in tags] == [30, 1, 29, 2]  # input order
    assert seen == [1, 1]  # batches (1, 2) and (29, 30) words: in input order they would differ by 29 and 27


def test_stdin_is_tagged_as_it_arrives(smoke_run):
    """A tweet written to a pipe that stays open is read and handed on without waiting for more."""
    import os
    import threading

    from bga_mner.data.raw_input import stream_tweets

    read_end, write_end = os.pipe()
    os.write(write_end, b"Kevin Durant in Boston\nNASA launch\n")
    got: list = []
    with os.fdopen(read_end, "rb") as stream:
        chunks = stream_tweets(stream, "<stdin>", "auto", chunk_size=1000)
        reader = threading.Thread(target=lambda: got.append(next(chunks)), daemon=True)
        reader.start()
        reader.join(timeout=60)
        os.write(write_end, b"IMGID-less third line\n")
        os.close(write_end)
        rest = list(chunks)
    assert [[t.image_id for t in chunk] for chunk in got] == [["line1", "line2"]]
    assert [[t.image_id for t in chunk] for chunk in rest] == [["line3"]]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 1000])
def test_streamed_conll_equals_the_file_read_whole(chunk_size):
    from bga_mner.data.raw_input import read_tweets, stream_tweets

    data = FIXTURE_TEST.read_bytes()
    chunks = list(stream_tweets(io.BytesIO(data), "<stdin>", "auto", chunk_size))
    assert all(0 < len(c) <= chunk_size for c in chunks)
    streamed = [t for chunk in chunks for t in chunk]
    assert [(t.image_id, t.words, t.source) for t in streamed] == \
        [(t.image_id, t.words, t.source) for t in read_tweets(data, "<stdin>")]


def test_a_bad_line_in_a_stream_names_its_line_after_the_tweets_before_it(smoke_run, monkeypatch, capsys, tmp_path):
    good = "".join(f"IMGID:{i}\nBoston\tB-LOC\n\n" for i in range(1, 1500))
    bad = good + "IMGID:x\nbroken\tB-XYZ\n"
    line_no = good.count("\n") + 2
    ckpt = str(smoke_run[0] / "checkpoints" / "inference.pt")
    monkeypatch.setattr("sys.stdin", io.StringIO(bad))
    assert main(["predict", "--ckpt", ckpt, "--format", "conll"]) == 2
    captured = capsys.readouterr()
    assert f"<stdin>:{line_no}: unknown label 'B-XYZ'" in captured.err
    assert captured.out.count("IMGID:") == 1024  # the first chunk was tagged and written
    # --out: all or nothing, no partial file and no temporary one left
    out = tmp_path / "pred.conll"
    monkeypatch.setattr("sys.stdin", io.StringIO(bad))
    assert main(["predict", "--ckpt", ckpt, "--format", "conll", "--out", str(out)]) == 2
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_on_stderr_when_asked(smoke_run, capsys):
    ckpt = str(smoke_run[0] / "checkpoints" / "inference.pt")
    assert main(["predict", "--ckpt", ckpt, "--input", str(FIXTURE_TEST), "--progress"]) == 0
    captured = capsys.readouterr()
    assert "4/4" in captured.err and "tweet/s" in captured.err and "tweet/s" not in captured.out
    assert main(["predict", "--ckpt", ckpt, "--input", str(FIXTURE_TEST)]) == 0
    assert "tweet/s" not in capsys.readouterr().err  # stderr is no terminal here


def test_predict_imports_only_what_tagging_needs(smoke_run, tmp_path):
    """No Lightning, torchmetrics or matplotlib: predict starts without them. (timm still comes in
    with models/backbones, and with it W&B and scipy: timm.utils imports them.)"""
    import subprocess
    import sys

    text = tmp_path / "in.txt"
    text.write_text("Kevin Durant scored in Boston\n")
    script = (f"import sys\nfrom bga_mner.cli import main\n"
              f"assert main(['predict', '--ckpt', {str(smoke_run[0] / 'checkpoints' / 'best.ckpt')!r}, "
              f"'--input', {str(text)!r}]) == 0\n"
              "print(sorted({m.split('.')[0] for m in sys.modules} & "
              "{'lightning', 'pytorch_lightning', 'torchmetrics', 'matplotlib'}), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stderr.strip().splitlines()[-1] == "[]"
    assert json.loads(done.stdout)["tokens"] == ["Kevin", "Durant", "scored", "in", "Boston"]
