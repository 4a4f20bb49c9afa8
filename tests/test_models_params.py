"""``bga-mner params``: counts by component, train vs image-free inference."""

from __future__ import annotations

import contextlib
import io
import json

from bga_mner.cli import main


def _run(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["params", *argv]) == 0
    return out.getvalue()


def test_params_prints_train_and_inference_counts():
    text = _run("run.profile=smoke")
    for row in ("text encoder", "visual encoder", "text samplers", "visual samplers", "t2v generator",
                "v2t generator", "crop pos/projections", "CRF head", "total"):
        assert f"| {row}" in text
    counts = json.loads(_run("run.profile=smoke", "--json"))
    train, inference = counts["train"], counts["inference"]
    assert train["total"] == sum(v for k, v in train.items() if k != "total")
    for dropped in ("visual encoder", "visual samplers", "v2t generator"):
        assert train[dropped] > 0 and inference[dropped] == 0
    for kept in ("text encoder", "text samplers", "t2v generator", "CRF head"):
        assert inference[kept] == train[kept] > 0
    assert 0 < inference["crop pos/projections"] < train["crop pos/projections"]  # only visual->text stays


def test_params_of_the_baseline_has_no_generation_parts():
    counts = json.loads(_run("run.profile=smoke", "model.use_mcg=false", "--json"))
    assert counts["train"] == counts["inference"]
    assert set(k for k, v in counts["train"].items() if v) == {"text encoder", "CRF head", "total"}
