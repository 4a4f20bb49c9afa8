"""The one-GPU check (``make gpu-check``): throughput, memory and a short real-text fit, as one JSON file.

At most 8 minutes on one GPU (H200) with nothing downloaded. It measures, and writes to ``--out``:

* ``train``: per cell (model x batch size x eager/compiled x fp32/bf16-mixed), training samples/s,
  image-free inference tweets/s, peak GPU memory, compile seconds; BGA-MNER and BERT-CRF at the
  paper's widths with random init (transformers ``BertConfig()`` defaults = bert-base-uncased, timm
  ``vit_base_patch32_clip_224`` with ``pretrained=False``), on one batch of the synthetic set
  (``benchmark.bench_model``: forward, Eq. 11 loss, backward, AdamW step; inference = forward +
  Viterbi). Cells run most important first (the baselines, then BGA-MNER compiled in bf16 at batch
  16, ...) and a cell that would overrun ``--budget`` is recorded as skipped;
* ``ratios``: BGA-MNER's samples/s over eager fp32 BERT-CRF's at the same batch size;
* ``fit``: the demo's BERT-CRF (``experiments/demo/config.yaml``, ``model.use_mcg=false``) with the
  pretrained MiniLM text encoder on the synthetic set, trained and tested through ``run_fit``
  (Lightning, the CUDA path of a real run): test and dev F1;
* ``determinism``: everything runs under ``torch.use_deterministic_algorithms(True)`` as
  ``trainer.deterministic=true`` sets it (with ``CUBLAS_WORKSPACE_CONFIG``); an op without a
  deterministic CUDA kernel is recorded (``deterministic_errors``) and its cell rerun with
  ``warn_only=True``.

``--device cpu --quick`` runs the same script with tiny random-init models at batch size 2, one
timed step, no compilation and a one-batch fit (the fast test, tests/test_gpu_check.py). On the GPU
machine, which has torch, lightning, transformers, timm and torchmetrics but not this package's
other imports, the wheels and a half-precision copy of the bundled MiniLM come from ``make
gpu-wheels`` (docs/gpu.md).

Beside it: ``gpu_cells.py`` (which cells, in which order, and their ratios) and ``gpu_minilm.py``
(the MiniLM folder, and its float16 export for the GPU machine).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

# cuBLAS needs this before its first handle for deterministic results (Lightning sets the same value)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from gpu_cells import COMPILED_CELL_S, EAGER_CELL_S, MODELS, PRECISIONS, WIDTHS, plan, ratios  # noqa: E402
from gpu_minilm import ROOT, export_minilm, find_minilm  # noqa: E402

DEMO_CONFIG = ROOT / "experiments" / "demo" / "config.yaml"
FIT_S = 150.0  # the most the MiniLM fit may take
JSON_KEYS = ("schema", "device", "quick", "versions", "settings", "train", "ratios",
             "peak_memory_gib", "fit", "determinism", "elapsed_s")


def versions() -> dict[str, str]:
    """Versions of Python and the packages the check runs on."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("lightning", "transformers", "timm", "torchmetrics", "pytorch-crf", "omegaconf"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    if torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
    return out


def describe(err: BaseException) -> str:
    """``Type: first line of the message``."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


class OverBudget(Exception):
    """A cell (or the fit) ran past the time left in the budget."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`OverBudget` in the block after ``seconds`` (SIGALRM; no limit off the main
    thread, where signals cannot be set, or for ``seconds`` <= 0)."""
    import signal
    import threading

    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise OverBudget(f"stopped after {seconds:.0f} s: the time budget ran out")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def deterministic(warn_only: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True, warn_only=...)`` for the block, as Lightning's
    ``deterministic=True`` (``warn_only=True``: its ``"warn"``) sets it; cuDNN autotuning off."""
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(True)


def take(batch: dict, n: int) -> dict:
    """The first ``n`` tweets of a collated batch (tensors and lists along their first axis)."""
    return {k: v[:n] for k, v in batch.items()}


class Check:
    """One run of the check: its settings, the batch, the cells and the JSON."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.start = time.perf_counter()
        self.device = torch.device(args.device)
        self.minilm = find_minilm(args.minilm)
        self.work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-"))
        self.deterministic_errors: list[dict[str, str]] = []
        self.peak_memory = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def overrides(self) -> list[str]:
        """What every config of the check shares: the demo's synthetic set, the device, no W&B."""
        a = self.args
        out = [f"paths.cache_dir={self.work / 'cache'}", f"paths.runs_dir={self.work / 'runs'}",
               "logging.wandb=false", "trainer.enable_progress_bar=false",
               "trainer.enable_model_summary=false",
               f"trainer.accelerator={'gpu' if self.device.type == 'cuda' else 'cpu'}"]
        if a.quick:
            out += ["data.synthetic.train=16", "data.synthetic.valid=8", "data.synthetic.test=8"]
        return out

    def config(self, model: str, precision: str, compiled: bool) -> Any:
        from bga_mner.config import load_config

        widths = [o.format(minilm=self.minilm) for o in WIDTHS[self.args.widths]]
        return load_config(DEMO_CONFIG, [*self.overrides(), *widths, f"model.use_mcg={model == 'bga-mner'}",
                                         f"trainer.precision={precision}", f"trainer.compile={compiled}",
                                         f"data.batch_size={max(self.args.batch_sizes)}"])

    def batch(self) -> dict:
        """One training batch with images (the largest batch size; smaller ones are its prefix)."""
        from lightning.pytorch.utilities import move_data_to_device

        from bga_mner.data.datamodule import MNERDataModule
        from bga_mner.models.backbones import load_tokenizer

        cfg = self.config("bga-mner", "32-true", False)
        datamodule = MNERDataModule.from_config(cfg, load_tokenizer(str(self.minilm)))
        datamodule.prepare_data()
        datamodule.setup("fit")
        batch = next(iter(datamodule.train_dataloader()))
        return move_data_to_device(batch, self.device)

    def cell(self, model: str, size: int, compiled: bool, precision: str, batch: dict) -> dict:
        """One measurement through ``benchmark.bench_model``; what went wrong is recorded, not raised."""
        from bga_mner.benchmark import bench_model, compile_seconds

        row: dict[str, Any] = {"model": model, "batch_size": size, "compiled": compiled,
                               "precision": precision, "status": "ok"}
        if compiled and self.args.quick:
            return row | {"status": "skipped", "note": "--quick: no compilation"}
        if precision.startswith("bf16") and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return row | {"status": "skipped", "note": "this GPU has no bf16"}
        cost = COMPILED_CELL_S if compiled else EAGER_CELL_S
        left = self.args.budget - self.elapsed()
        if left < cost and not self.args.quick:
            return row | {"status": "skipped", "note": f"time budget ({self.args.budget:.0f} s)"}
        cfg = self.config(model, precision, compiled)
        start, compiled_before = time.perf_counter(), compile_seconds()
        if compiled:
            torch._dynamo.reset()  # this cell's compilation is its own
        for warn_only in (False, True):
            try:
                with self.memory(row), deterministic(warn_only), warnings.catch_warnings(), \
                        time_limit(0 if self.args.quick else self.args.budget - self.elapsed()):
                    warnings.simplefilter("ignore")
                    result = bench_model(cfg, take(batch, size), self.device, self.args.steps,
                                         self.args.warmup)
                row.update({k: result[k] for k in ("train_samples_per_s", "inference_tweets_per_s",
                                                   "parameters")})
                break
            except OverBudget as err:
                row.update(status="timeout", note=str(err))
                break
            except Exception as err:  # recorded: the point of the check is to see what fails
                message = describe(err)
                if "deterministic" in message and not warn_only:
                    self.deterministic_errors.append({"cell": f"{model} b{size} "
                                                      f"{'compiled' if compiled else 'eager'} {precision}",
                                                      "error": message})
                    row["note"] = "rerun with warn_only=True: " + message
                    continue
                row.update(status="error", error=message)
                break
        after = compile_seconds()
        if compiled and after is not None and compiled_before is not None:
            row["compile_seconds"] = round(after - compiled_before, 1)
        row["seconds"] = round(time.perf_counter() - start, 1)
        return row

    @contextlib.contextmanager
    def memory(self, row: dict) -> Iterator[None]:
        """Peak GPU memory of the block into ``row["peak_memory_gib"]`` (CUDA only)."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            yield
        finally:
            if self.device.type == "cuda":
                peak = torch.cuda.max_memory_allocated(self.device) / 2**30
                row["peak_memory_gib"] = round(peak, 2)
                self.peak_memory = max(self.peak_memory, peak)
            gc.collect()

    def fit(self) -> dict:
        """The demo's BERT-CRF with the pretrained MiniLM through ``run_fit`` (Lightning)."""
        from bga_mner.config import load_config
        from bga_mner.training import run_fit

        overrides = [f"model.text_encoder={self.minilm}", "model.use_mcg=false", "run.name=bert-crf-minilm"]
        if self.args.quick:
            overrides += ["trainer.max_epochs=1", "trainer.limit_train_batches=1",
                          "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                          "trainer.num_sanity_val_steps=0"]
        cfg = load_config(DEMO_CONFIG, [*self.overrides(), *overrides])
        start = time.perf_counter()
        row: dict[str, Any] = {"config": str(DEMO_CONFIG.relative_to(ROOT)), "overrides": overrides,
                               "epochs": int(cfg.trainer.max_epochs),
                               "deterministic": cfg.trainer.deterministic,
                               "precision": str(cfg.trainer.precision)}
        try:
            with self.memory(row), warnings.catch_warnings(), \
                    time_limit(0 if self.args.quick else min(FIT_S, self.args.budget - self.elapsed())):
                warnings.simplefilter("ignore")
                results = run_fit(cfg)["results"]
            row.update(status="ok", test_f1=results["test"]["overall"]["f1"],
                       dev_f1=results["dev"]["overall"]["f1"], best_epoch=results["best_epoch"])
        except OverBudget as err:
            row.update(status="timeout", note=str(err))
        except Exception as err:  # recorded: the point of the check is to see what fails
            row.update(status="error", error=describe(err))
        row["seconds"] = round(time.perf_counter() - start, 1)
        return row

    def run(self, save: Callable[[dict], None] = lambda out: None) -> dict:
        """All measurements (the module docstring), ``save`` called with the JSON after each cell."""
        a = self.args
        device_name = (torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                       else platform.processor() or "cpu")
        torch.use_deterministic_algorithms(True)
        out: dict[str, Any] = {
            "schema": 1, "device": device_name, "quick": bool(a.quick), "versions": versions(),
            "settings": {"widths": a.widths, "batch_sizes": list(a.batch_sizes), "models": list(a.models),
                     "precisions": list(a.precisions), "steps": a.steps,
                         "warmup": a.warmup, "budget_s": a.budget, "threads": torch.get_num_threads(),
                         "float32_matmul_precision": torch.get_float32_matmul_precision(),
                         "deterministic": "torch.use_deterministic_algorithms(True)",
                         "minilm": str(self.minilm)}}
        batch = self.batch()
        out["settings"]["tokens"] = int(batch["input_ids"].shape[1])
        out["settings"]["batch"] = "synthetic set (experiments/demo sizes), first training batch"
        out["fit"] = self.fit() if not a.no_fit else {"status": "skipped", "note": "--no-fit"}
        save(out)
        cells = [c for c in plan(a.batch_sizes) if c[0] in a.models and c[3] in a.precisions]
        out["train"] = []
        for model, size, compiled, precision in cells:
            row = self.cell(model, size, compiled, precision, batch)
            out["train"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)  # progress
            self.summarise(out)
            save(out)  # what is measured so far survives a killed run
        return self.summarise(out)

    def summarise(self, out: dict) -> dict:
        """The keys derived from the cells (and the elapsed time), set in ``out``."""
        out["ratios"] = ratios(out["train"])
        out["peak_memory_gib"] = round(self.peak_memory, 2) if self.device.type == "cuda" else None
        out["determinism"] = {"strict_ok": not self.deterministic_errors,
                              "deterministic_errors": self.deterministic_errors}
        out["elapsed_s"] = round(self.elapsed(), 1)
        return out



def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from bga_mner.benchmark import STEPS, WARMUP  # bga-mner bench's

    p = argparse.ArgumentParser(prog="python tools/gpu_check.py", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--quick", action="store_true",
                   help="tiny models, batch size 2, one step, no compilation, a 1-batch fit (tests)")
    p.add_argument("--out", type=Path, default=Path("runs/gpu-check/gpu_check.json"), help="the JSON file")
    p.add_argument("--minilm", help="MiniLM folder (default: the bundled one, else .whl/minilm)")
    p.add_argument("--widths", choices=sorted(WIDTHS), help="model pair (default: paper; --quick: tiny)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    p.add_argument("--batch-sizes", type=int, nargs="+", help="default 16 64 (--quick: 2)")
    p.add_argument("--steps", type=int, help=f"timed steps per cell (default {STEPS}; --quick: 1)")
    p.add_argument("--warmup", type=int, help=f"untimed steps first (default {WARMUP}; --quick: 1)")
    p.add_argument("--budget", type=float, default=420.0,
                   help="seconds; cells that would end later are skipped (default 420: 8 min in all)")
    p.add_argument("--no-fit", action="store_true", help="skip the BERT-CRF fit")
    p.add_argument("--work", help="folder for the synthetic set and the fit's run (default: a temporary one)")
    p.add_argument("--export-minilm", type=Path, metavar="DIR",
                   help="only write the bundled MiniLM in float16 to DIR (make gpu-wheels) and exit")
    args = p.parse_args(argv)
    quick = args.quick
    args.widths = args.widths or ("tiny" if quick else "paper")
    args.batch_sizes = sorted(args.batch_sizes or ([2] if quick else [16, 64]))
    args.steps = args.steps or (1 if quick else STEPS)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else WARMUP)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.export_minilm:
        print(export_minilm(args.export_minilm))
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or --device cpu --quick")
    from bga_mner.atomic import atomic_write_text

    def save(out: dict) -> None:
        atomic_write_text(args.out, json.dumps(out, indent=1) + "\n")

    result = Check(args).run(save)
    save(result)
    print(json.dumps(result, indent=1))
    print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
