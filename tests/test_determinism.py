"""Same seed on the CPU, same run: a second smoke fit repeats the first one exactly."""

from __future__ import annotations

import json

import torch


def test_a_second_fit_with_the_same_seed_is_identical(smoke_run, smoke_fit, tmp_path):
    first, _ = smoke_run  # W&B on there, off here: logging must not touch the random streams
    smoke_fit(tmp_path, "run.name=again", "logging.wandb=false")
    second = tmp_path / "again"
    results = [json.loads((r / "results.json").read_text()) for r in (first, second)]
    for key in ("best_epoch", "dev", "test"):
        assert results[0][key] == results[1][key]
    for name in ("predictions/test.conll", "csv/metrics.csv"):  # every logged loss and score
        assert (first / name).read_text() == (second / name).read_text()
    weights = [torch.load(r / "checkpoints" / "inference.pt", weights_only=True)["state_dict"]
               for r in (first, second)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
