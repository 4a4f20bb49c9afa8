"""tools/gpu_check.py (``make gpu-check``): its CPU ``--quick`` mode end to end, the cell plan
(tools/gpu_cells.py), the half-precision MiniLM that travels to the GPU machine (tools/gpu_minilm.py)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _tool(name: str):
    """A module of tools/, imported as ``python tools/gpu_check.py`` sees it (its folder on the path)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(TOOLS))
        return importlib.import_module(name)


@pytest.fixture(scope="module")
def gpu_check():
    return _tool("gpu_check")


@pytest.fixture(scope="module")
def gpu_cells():
    return _tool("gpu_cells")


@pytest.fixture(autouse=True)
def keep_determinism_setting():
    """The check sets torch's global deterministic mode (as Lightning does): put it back."""
    mode = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    yield
    torch.use_deterministic_algorithms(mode[0], warn_only=mode[1])


def test_quick_cpu_run_writes_every_key(gpu_check, gpu_cells, tmp_path: Path, one_thread, capsys) -> None:
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(out),
                           "--work", str(tmp_path / "work")]) == 0
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == result  # printed, and written
    assert set(result) == set(gpu_check.JSON_KEYS)
    cells = {(r["model"], r["batch_size"], r["compiled"], r["precision"]): r for r in result["train"]}
    assert set(cells) == {(m, 2, c, p) for m in gpu_cells.MODELS for c in (False, True)
                          for p in gpu_cells.PRECISIONS}
    for (model, _, compiled, precision), row in cells.items():
        if compiled:  # --quick compiles nothing
            assert row["status"] == "skipped"
            continue
        assert row["status"] == "ok", row
        assert row["train_samples_per_s"] > 0 and row["inference_tweets_per_s"] > 0
        assert row["parameters"] > 0
    assert result["ratios"]["bert-crf b2 eager 32-true"] == 1.0
    assert 0 < result["ratios"]["bga-mner b2 eager 32-true"]
    fit = result["fit"]
    assert fit["status"] == "ok", fit
    assert 0.0 <= fit["test_f1"] <= 100.0 and fit["deterministic"] is True
    assert result["determinism"] == {"strict_ok": True, "deterministic_errors": []}
    assert result["settings"]["tokens"] > 2 and result["peak_memory_gib"] is None  # no GPU here
    assert result["versions"]["torch"] == torch.__version__


def test_the_plan_measures_every_cell_once_baselines_first(gpu_cells) -> None:
    cells = gpu_cells.plan([16, 64])
    assert len(cells) == len(set(cells)) == 16
    assert set(cells) == {(m, b, c, p) for m in gpu_cells.MODELS for b in (16, 64)
                          for c in (False, True) for p in gpu_cells.PRECISIONS}
    assert cells[0] == ("bert-crf", 16, False, "32-true")  # every ratio's denominator
    assert cells.index(("bga-mner", 16, True, "bf16-mixed")) < cells.index(("bga-mner", 64, False, "32-true"))


def test_ratios_are_over_eager_fp32_bert_crf_at_the_same_batch_size(gpu_cells) -> None:
    rows = [dict(model="bert-crf", batch_size=16, compiled=False, precision="32-true", status="ok",
                 train_samples_per_s=200.0),
            dict(model="bga-mner", batch_size=16, compiled=True, precision="bf16-mixed", status="ok",
                 train_samples_per_s=90.0),
            dict(model="bga-mner", batch_size=64, compiled=False, precision="32-true", status="ok",
                 train_samples_per_s=50.0),  # no baseline at 64: no ratio
            dict(model="bga-mner", batch_size=16, compiled=False, precision="32-true", status="skipped")]
    assert gpu_cells.ratios(rows) == {"bert-crf b16 eager 32-true": 1.0,
                                      "bga-mner b16 compiled bf16-mixed": 0.45}


def test_exported_minilm_loads_in_float32_with_half_precision_weights(tmp_path: Path) -> None:
    from bga_mner.models.backbones import bundled_minilm_dir, load_text_encoder

    dest = _tool("gpu_minilm").export_minilm(tmp_path / "minilm")
    size = (dest / "model.safetensors").stat().st_size
    assert size < 0.55 * (bundled_minilm_dir() / "model.safetensors").stat().st_size  # fits the carry
    exported, bundled = load_text_encoder(str(dest)), load_text_encoder(str(bundled_minilm_dir()))
    for (name, p), (_, q) in zip(exported.named_parameters(), bundled.named_parameters()):
        assert p.dtype == torch.float32, name
        torch.testing.assert_close(p, q.half().float(), rtol=0, atol=0, msg=name)


def test_an_op_without_a_deterministic_kernel_is_recorded_and_its_cell_rerun(gpu_check, tmp_path,
                                                                             monkeypatch) -> None:
    import bga_mner.benchmark

    modes = []

    def bench_model(cfg, batch, device, steps, warmup):
        modes.append(torch.is_deterministic_algorithms_warn_only_enabled())
        if not modes[-1]:
            raise RuntimeError("upsample_bilinear2d_backward_out_cuda does not have a deterministic "
                               "implementation, but you set 'torch.use_deterministic_algorithms(True)'")
        return {"train_samples_per_s": 2.0, "inference_tweets_per_s": 3.0, "parameters": 4}

    monkeypatch.setattr(bga_mner.benchmark, "bench_model", bench_model)
    check = gpu_check.Check(gpu_check.parse_args(["--device", "cpu", "--quick", "--work", str(tmp_path)]))
    row = check.cell("bga-mner", 2, False, "32-true", {"input_ids": torch.zeros(2, 3)})
    assert modes == [False, True]  # strict, then warn_only
    assert row["status"] == "ok" and row["train_samples_per_s"] == 2.0
    assert "upsample_bilinear2d_backward_out_cuda" in row["note"]
    assert check.deterministic_errors == [{"cell": "bga-mner b2 eager 32-true",
                                           "error": row["note"].split(": ", 1)[1]}]
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()  # strict again after the cell


def test_time_limit_stops_the_block(gpu_check) -> None:
    import time

    with pytest.raises(gpu_check.OverBudget):
        with gpu_check.time_limit(0.2):
            time.sleep(2)
    with gpu_check.time_limit(5):  # a block that ends in time leaves no alarm behind
        pass
    time.sleep(0.01)
