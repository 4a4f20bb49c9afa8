"""Distributed evaluation: two CPU processes (Lightning ``strategy="ddp"``, gloo) score a checkpoint
on the test set exactly as one process does.

Lightning's default DistributedSampler pads the ranks to equal length with repeated tweets; the data
module's eval loaders use ``UnrepeatedDistributedSampler`` instead, so every tweet counts once.
``strategy="ddp"`` re-executes the launching script for rank 1, so the evaluation runs in a
separate process started from this file (``python tests/test_ddp.py CKPT OUT_DIR DEVICES ...``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()
# an odd-sized test set with uneven batches: padding to equal ranks would repeat a tweet
EVAL_OVERRIDES = ("data.synthetic.test=17", "data.eval_batch_size=3")


def evaluate(ckpt: str, out_dir: str, devices: int, overrides: list[str]) -> None:
    """Test a checkpoint with ``devices`` CPU processes; each rank writes the ids it scored and
    rank 0 also the scores (``rank<r>.json``)."""
    import lightning as L
    import torch
    from omegaconf import OmegaConf

    from bga_mner.build import build_datamodule, decide_images
    from bga_mner.inference import build_system, read_checkpoint

    torch.set_num_threads(1)
    system = build_system(read_checkpoint(ckpt), OmegaConf.from_dotlist(overrides))
    datamodule = build_datamodule(decide_images(system.cfg, "test"))  # image-free evaluation
    trainer = L.Trainer(accelerator="cpu", devices=devices,
                        strategy="ddp" if devices > 1 else "auto", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.test(system, datamodule=datamodule, verbose=False)
    record = {"world_size": trainer.world_size, "share": list(trainer.test_dataloaders.sampler),
              "ids": [i for i, _, _ in system.test_predictions],
              "scores": system.test_scores, "n_test": len(datamodule.datasets["test"]),
              "file_ids": [t.image_id for t in datamodule.datasets["test"].tweets]}
    Path(out_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def _run(ckpt: Path, out_dir: Path, devices: int) -> list[dict]:
    out_dir.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="offline", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, str(HERE), str(ckpt), str(out_dir), str(devices),
                           *EVAL_OVERRIDES], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(devices)]


@pytest.mark.slow
def test_two_process_ddp_test_score_equals_single_process(smoke_run, tmp_path):
    run_dir, _ = smoke_run
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    single = _run(ckpt, tmp_path / "single", 1)[0]
    ranks = _run(ckpt, tmp_path / "ddp", 2)
    assert [r["world_size"] for r in ranks] == [2, 2]
    n = single["n_test"]
    assert n % 2 == 1 and single["ids"] == single["file_ids"]
    shares = ranks[0]["share"] + ranks[1]["share"]
    assert sorted(shares) == list(range(n))  # each tweet exactly once, none repeated
    assert ranks[0]["share"] and ranks[1]["share"]  # both processes did part of the work
    # the predictions are gathered from both processes, in file order, on every rank
    assert ranks[0]["ids"] == ranks[1]["ids"] == single["ids"]
    assert ranks[0]["scores"] == single["scores"]  # exact, per type and overall
    assert ranks[1]["scores"] == single["scores"]  # every rank computes the synced metric


@pytest.mark.slow
def test_ddp_test_command_writes_the_run_once_from_rank_zero(smoke_run, tmp_path):
    """`bga-mner test` takes the trainer settings from the config: two DDP processes give the
    single-process scores and predictions file, printed and written by rank 0 only."""
    run_dir, _ = smoke_run
    bga = Path(sys.executable).with_name("bga-mner")
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="offline", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    outs = {}
    for devices in (1, 2):
        out = tmp_path / f"devices{devices}"
        proc = subprocess.run([str(bga), "test", "--ckpt", str(run_dir / "checkpoints" / "best.ckpt"),
                               "--out", str(out), *EVAL_OVERRIDES, "trainer.accelerator=cpu",
                               f"trainer.devices={devices}", f"trainer.strategy={'ddp' if devices > 1 else 'auto'}"],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.count("results: ") == 1 and proc.stdout.count("overall") == 1  # rank 0 only
        outs[devices] = out
    single, ddp = (json.loads((outs[d] / "results.json").read_text()) for d in (1, 2))
    assert ddp["config"]["trainer"]["devices"] == 2
    assert ddp["test"] == single["test"]
    assert (outs[2] / "predictions" / "test.conll").read_text() == \
        (outs[1] / "predictions" / "test.conll").read_text()


if __name__ == "__main__":
    evaluate(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:])
