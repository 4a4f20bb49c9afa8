"""The cells of the one-GPU check (tools/gpu_check.py): which measurements, in which order, and
the ratios between them.

A cell is (model, batch size, compiled, precision). :func:`plan` orders every cell most important
first, so that a cell the time budget cuts off (``EAGER_CELL_S``/``COMPILED_CELL_S``: its rough cost
on the GPU machine) is one that matters least; :func:`ratios` sets each measured cell against eager
fp32 BERT-CRF at the same batch size. ``WIDTHS`` are the model pairs the cells measure (``--widths``).
Nothing here imports torch or the package.
"""

from __future__ import annotations

from typing import Sequence

MODELS = ("bga-mner", "bert-crf")
PRECISIONS = ("32-true", "bf16-mixed")
# the model pairs: name -> overrides of model.*
WIDTHS: dict[str, tuple[str, ...]] = {
    "paper": ("model.text_encoder=bert-base-uncased", "model.text_pretrained=false",
              "model.visual_encoder=vit_base_patch32_clip_224", "model.visual_pretrained=false"),
    "demo": ("model.text_encoder={minilm}", "model.text_pretrained=true",
             "model.visual_encoder=bga_test_vit_d6", "model.visual_pretrained=false",
             "model.generator_ffn_dim=512"),
    "tiny": ("model.text_encoder=tiny-bert", "model.text_pretrained=false",
             "model.visual_encoder=bga_test_vit_d2", "model.visual_pretrained=false"),
}
# rough cost of a cell before it runs (seconds, GPU machine), to stay inside the budget
EAGER_CELL_S, COMPILED_CELL_S = 25.0, 150.0


def plan(batch_sizes: Sequence[int]) -> list[tuple[str, int, bool, str]]:
    """Every cell once, most important first: (model, batch size, compiled, precision).

    First the smallest batch: the eager baselines in both precisions, then BGA-MNER and BERT-CRF
    compiled in bf16 (the issue's GPU target); then the larger batches eager, the compiled fp32
    cells, and the larger batches compiled.

    Args:
        batch_sizes: increasing batch sizes.
    """
    small, rest = batch_sizes[0], batch_sizes[1:]
    first = [("bert-crf", small, False, "32-true"), ("bga-mner", small, False, "32-true"),
             ("bga-mner", small, False, "bf16-mixed"), ("bert-crf", small, False, "bf16-mixed"),
             ("bga-mner", small, True, "bf16-mixed"), ("bert-crf", small, True, "bf16-mixed")]
    later = [(m, b, False, p) for b in rest for p in PRECISIONS for m in MODELS]
    later += [(m, small, True, "32-true") for m in MODELS]
    later += [(m, b, True, p) for b in rest for p in reversed(PRECISIONS) for m in MODELS]
    return first + later


def ratios(rows: Sequence[dict]) -> dict[str, float]:
    """Training samples/s of each measured cell over eager fp32 BERT-CRF's at the same batch size
    (keys ``<model> b<size> <eager|compiled> <precision>``)."""
    base = {r["batch_size"]: r["train_samples_per_s"] for r in rows
            if r["model"] == "bert-crf" and not r["compiled"] and r["precision"] == "32-true"
            and r["status"] == "ok"}
    out = {}
    for r in rows:
        if r["status"] == "ok" and r["batch_size"] in base:
            key = f"{r['model']} b{r['batch_size']} {'compiled' if r['compiled'] else 'eager'} {r['precision']}"
            out[key] = round(r["train_samples_per_s"] / base[r["batch_size"]], 3)
    return out
