"""``bga-mner bench``: one process measures both models and the data loader."""

from __future__ import annotations

import contextlib
import io
import json

from bga_mner.cli import main
from bga_mner.benchmark import format_table


def test_bench_measures_both_models_and_the_loader(smoke_cache):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["bench", "--steps", "1", "--warmup", "0", "--json", "run.profile=smoke",
                     "data.synthetic.train=32", "data.synthetic.valid=16", "data.synthetic.test=16",
                     "data.batch_size=8", f"paths.cache_dir={smoke_cache}"]) == 0
    result = json.loads(out.getvalue())
    assert result["device"] == "cpu" and result["batch_size"] == 8
    assert set(result["models"]) == {"bga-mner", "bert-crf"}
    for m in result["models"].values():
        assert m["train_samples_per_s"] > 0 and m["inference_tweets_per_s"] > 0
    # BERT-CRF is BGA-MNER's text branch alone
    assert result["models"]["bert-crf"]["parameters"] < result["models"]["bga-mner"]["parameters"]
    assert result["loader_samples_per_s"] > 0
    table = format_table(result)
    assert "| bga-mner |" in table and "| bert-crf |" in table and "samples/s" in table


def test_bench_compiled_times_the_compiled_network_against_eager(smoke_cache, monkeypatch):
    """``--compiled``: a second BGA-MNER, compiled through ``compile_network``, timed against an
    eager one (dynamo's ``eager`` backend here: traced, not compiled, to keep the test short)."""
    import torch

    compiled = []
    original = torch.nn.Module.compile

    def compile_traced_only(self, *args, **kwargs):
        compiled.append((type(self).__name__, kwargs))
        original(self, backend="eager")

    monkeypatch.setattr(torch.nn.Module, "compile", compile_traced_only)
    torch._dynamo.reset()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["bench", "--steps", "2", "--warmup", "0", "--compiled", "--json", "run.profile=smoke",
                     "data.synthetic.train=32", "data.synthetic.valid=16", "data.synthetic.test=16",
                     "data.batch_size=8", f"paths.cache_dir={smoke_cache}"]) == 0
    torch._dynamo.reset()
    assert compiled == [("BGAMNER", {"options": {"fallback_random": True}})]  # one network, CPU options
    result = json.loads(out.getvalue())
    c = result["compiled"]
    for mode in ("eager", "compiled"):
        assert c[mode]["train_samples_per_s"] > 0 and c[mode]["inference_tweets_per_s"] > 0
    assert c["train_ratio"] == c["compiled"]["train_samples_per_s"] / c["eager"]["train_samples_per_s"]
    assert c["compile_seconds"] is not None and c["compile_seconds"] >= 0
    assert "BGA-MNER compiled / eager (steps interleaved): training " in format_table(result)
