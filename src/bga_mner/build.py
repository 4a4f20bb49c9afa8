"""Building the parts of a run from its config: data module, trainer, callbacks and loggers.

Below the commands: ``training.run_fit``, ``evaluation.evaluate``, ``benchmark.run_bench``, the demo
and the analyses build through these functions, and nothing here parses arguments or prints.
Whether a run reads images (``data.use_images``) is decided here, once (:func:`decide_images`).
Nothing a run stores names an absolute path: the checkpoint callback keeps its paths relative to
its folder (:class:`RunCheckpoint`), so a moved run resumes from its own files.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import string
import time
from pathlib import Path
from typing import Any, Iterator, Literal

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from bga_mner.atomic import atomic_write, atomic_write_text
from bga_mner.config import real_context, to_plain  # noqa: F401 (real_context: re-exported)
from bga_mner.run import git_commit, model_name

Stage = Literal["fit", "test", "analysis"]


def reads_images(cfg: DictConfig, stage: Stage) -> bool:
    """Whether a run of ``cfg`` at ``stage`` needs the images.

    * fit: BGA-MNER trains on them (Eqs. 5-7); BERT-CRF (``model.use_mcg=false``) never looks at
      one. ``data.use_images=false`` is kept (a text-only data set).
    * test: evaluation is image-free, unless ``model.inference_visual=real`` (Table 4) or
      ``model.text_context=real`` (the real-context control: the text layers attend to the real
      visual tokens in training and evaluation).
    * analysis: the alignment and mask analyses of a BGA-MNER run encode the real images.
    """
    bga = bool(cfg.model.use_mcg)
    if stage == "fit":
        return bga and bool(cfg.data.use_images)
    if stage == "test":
        real = cfg.model.inference_visual == "real" or real_context(cfg)
        return bga and real and bool(cfg.data.use_images)
    if stage == "analysis":
        return bga
    raise ValueError(f"unknown stage {stage!r}; expected fit, test or analysis")


def decide_images(cfg: DictConfig, stage: Stage) -> DictConfig:
    """A copy of ``cfg`` whose ``data.use_images`` says what :func:`reads_images` decided (the run's
    saved config.yaml then tells whether it read images)."""
    cfg = cfg.copy()
    cfg.data.use_images = reads_images(cfg, stage)
    return cfg


def check_backbones_available(cfg: DictConfig) -> None:
    """Fail at once, in one line, when a backbone that ``cfg`` loads from the Hugging Face Hub is
    neither a local folder nor in the cache and cannot be downloaded now (``hub.check_available``):
    ``fit`` calls it before it creates the run folder. Registered names that need no hub (the tiny
    encoders, ``text_pretrained=false`` for a known config, the bundled MiniLM) pass.

    Raises:
        hub.HubUnavailableError: ``model.text_encoder``, or the timm weights of a pretrained
            ``model.visual_encoder`` without ``model.visual_checkpoint``.
    """
    from bga_mner.hub import check_available
    from bga_mner.models.backbones import KNOWN_TEXT_CONFIGS, RANDOM_ONLY, resolve_text_path

    name, pretrained = str(cfg.model.text_encoder), bool(cfg.model.text_pretrained)
    if not (name in KNOWN_TEXT_CONFIGS and (not pretrained or name in RANDOM_ONLY)):
        check_available(resolve_text_path(name), "model.text_encoder",
                        "give the folder as model.text_encoder=DIR")
    if cfg.model.use_mcg and cfg.model.visual_pretrained and not cfg.model.visual_checkpoint:
        import timm

        hub_id = getattr(timm.models.get_pretrained_cfg(str(cfg.model.visual_encoder)), "hf_hub_id", None)
        if hub_id:
            check_available(hub_id, f"model.visual_encoder={cfg.model.visual_encoder}: timm's weights",
                            "give its weights file as model.visual_checkpoint=FILE")


def build_datamodule(cfg: DictConfig, run_dir: Path | None = None) -> L.LightningDataModule:
    """The data module of a config (``data:``, ``seed``, ``paths:``) with its encoder's tokenizer.

    Args:
        cfg: the merged config (``data.use_images`` as :func:`decide_images` left it).
        run_dir: where a data-limited run saves ``train_subset.json`` (None: not saved).
    """
    from bga_mner.data.datamodule import MNERDataModule
    from bga_mner.models.backbones import load_tokenizer

    return MNERDataModule.from_config(cfg, load_tokenizer(cfg.model.text_encoder), run_dir=run_dir)


# keys of the ``trainer:`` section that are not ``L.Trainer`` arguments
NOT_TRAINER_KWARGS = ("compile",)


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """``L.Trainer`` keyword arguments from the ``trainer:`` section (without ``compile``, which
    :func:`compile_network` reads)."""
    kwargs = dict(OmegaConf.to_container(cfg.trainer, resolve=True))
    for key in NOT_TRAINER_KWARGS:
        kwargs.pop(key, None)
    return kwargs


def compile_network(model: torch.nn.Module, cfg: DictConfig) -> torch.nn.Module:
    """``torch.compile`` the network in place when ``trainer.compile`` is true (else nothing).

    ``nn.Module.compile`` compiles the module's call, so the parameter names, the state dict and
    the checkpoints stay those of the eager network, and the Lightning system that holds it is
    unchanged. Only ``forward`` is compiled: the objective (CRF negative log-likelihood, Eq. 10),
    Viterbi decoding and the optimizer run eagerly. Shapes are PyTorch's automatic dynamic ones
    (``dynamic=None``): the first shape is compiled static, a dimension seen with a second size is
    recompiled symbolic, so a run compiles a handful of graphs (training, dev with images,
    image-free test) whatever the batch lengths; ``data.length_buckets`` keeps those sizes few
    (docs/gpu.md).

    On the CPU, inductor draws dropout masks and Gumbel noise through aten's generator
    (``fallback_random``) instead of its own generator inside the fused C++ loops: the compiled run
    draws the same numbers as an eager run of the same seed, and its training step measured
    1.07-1.26x eager's samples/s with it against 1.02-1.07x without (docs/gpu.md; why, is not
    established). On CUDA inductor's own generator stays (fused into its Triton kernels).

    Args:
        model: the network (``MNERSystem.model``, a ``BGAMNER``).
        cfg: the merged config (``trainer.compile``, ``trainer.accelerator``).

    Returns:
        ``model`` itself.
    """
    if cfg.trainer.compile:
        model.compile(options=compile_options(str(cfg.trainer.accelerator)))
    return model


def compile_options(accelerator: str) -> dict[str, Any]:
    """Inductor options for a network trained on Lightning's ``accelerator`` (``compile_network``):
    ``fallback_random`` where it runs on the CPU."""
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    return {"fallback_random": True} if on_cpu else {}


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints (``best.ckpt``, ``last.ckpt``) written by ``atomic.atomic_write``: a
    temporary file in the checkpoint's folder renamed into place, never a truncated file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def build_trainer(cfg: DictConfig, **kwargs: Any) -> L.Trainer:
    """``L.Trainer`` of the ``trainer:`` section, ``kwargs`` (loggers, callbacks, ...) over it.
    Checkpoints are written atomically (:class:`AtomicCheckpointIO`) unless ``plugins`` is given.

    Under SLURM the cluster environment is Lightning's ``SLURMEnvironment`` with
    ``auto_requeue=False``: a requeue is ``bga-mner sweep``'s (submitit's checkpointing, which stops
    the run with SIGTERM; it continues from its last finished epoch), never a second, mid-epoch
    one of Lightning's (its SIGUSR1 handler would save an ``hpc_ckpt`` into the run folder)."""
    if "plugins" not in kwargs:
        kwargs["plugins"] = [AtomicCheckpointIO()]
        if SLURMEnvironment.detect():
            kwargs["plugins"].append(SLURMEnvironment(auto_requeue=False))
    return L.Trainer(**(trainer_kwargs(cfg) | kwargs))


class EpochTimer(Callback):
    """Wall-clock seconds of each training epoch (its training steps and its dev evaluation).
    The list is part of the checkpoints, so a resumed run's mean counts the epochs before the
    interruption too."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)

    @property
    def mean(self) -> float:
        return sum(self.seconds) / len(self.seconds) if self.seconds else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": list(self.seconds)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds = [float(s) for s in state_dict.get("seconds", [])]


class ResumeState(Callback):
    """What an exact resume needs beyond Lightning's checkpoint (weights, optimizer, scheduler,
    loops, callbacks, the data module's ``state_dict``, which holds the train loader's shuffling
    generator): the global random streams as they were when the checkpoint was saved, i.e. the
    torch (CPU, and CUDA where initialised), Python and NumPy generators (dropout, the samplers'
    Gumbel noise). They are put back when training (re)starts (``on_train_start``: after the
    sanity check, before the first resumed epoch draws anything), so epoch k+1 of a run resumed
    from the end of epoch k draws what the uninterrupted run drew.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            # plain types: checkpoints are read with torch.load(weights_only=True)
            "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state, self._pending = self._pending, None
        if not state:
            return
        import numpy as np

        torch.set_rng_state(state["torch"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                             n["has_gauss"], n["gauss"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` whose state (inside every checkpoint it writes) names its
    files relative to its folder: a moved run folder resumes with its own ``best.ckpt``, never
    the old folder's (Lightning stores absolute paths, and reloads ``best_model_path`` even when
    the folder changed). A checkpoint written before (absolute paths) loads the same way: each
    file is taken from this callback's folder by its name."""

    _PATHS = ("best_model_path", "kth_best_model_path", "last_model_path")

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        for key in self._PATHS:
            state[key] = os.path.basename(state[key]) if state.get(key) else state.get(key)
        state["best_k_models"] = {os.path.basename(p): s for p, s in state["best_k_models"].items()}
        state["dirpath"] = "."  # this callback's folder, wherever the run is now
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        here = str(self.dirpath)
        for key in self._PATHS:
            if state.get(key):
                state[key] = os.path.join(here, os.path.basename(state[key]))
        state["best_k_models"] = {os.path.join(here, os.path.basename(p)): s
                                  for p, s in state.get("best_k_models", {}).items()}
        state["dirpath"] = self.dirpath
        super().load_state_dict(state)


def best_checkpoint(run_dir: Path) -> ModelCheckpoint:
    """Keeps ``checkpoints/best.ckpt``, the epoch of the highest dev F1 (model selection on dev),
    and ``checkpoints/last.ckpt``, the end of the latest epoch (what ``fit --resume`` continues
    from; the run removes it once finished); its state names them relative to the run folder
    (:class:`RunCheckpoint`)."""
    return RunCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/f1",
                         mode="max", save_top_k=1, save_last=True, auto_insert_metric_name=False,
                         enable_version_counter=False)


def wandb_tags(cfg: DictConfig) -> list[str]:
    """Data set, seed, profile, model and every switch that departs from the full model."""
    tags = [str(cfg.data.name), f"seed{cfg.seed}", str(cfg.run.profile), model_name(cfg)]
    bga = bool(cfg.model.use_mcg)  # the BGA switches mean nothing for BERT-CRF
    switches = {"no-scs": bga and not cfg.model.use_scs,
                "no-cycle": bga and not cfg.model.use_cycle,
                "inference-real-visual": bga and cfg.model.inference_visual == "real",
                "real-context": real_context(cfg),
                "modality-missing": bool(cfg.data.modality_missing),
                "text-only-data": not cfg.data.use_images}
    tags += [name for name, on in switches.items() if on]
    if cfg.data.train_limit:
        tags.append(f"train-limit-{cfg.data.train_limit}")
    if cfg.data.test_name:
        tags.append(f"test-{cfg.data.test_name}")
    return sorted(set(tags) | {str(t) for t in cfg.logging.tags})


WANDB_ID_FILE = Path("wandb") / "run_id"


def wandb_run_id(run_dir: Path, create: bool = True) -> str:
    """The W&B run id of a run folder, kept in ``<run>/wandb/run_id`` (made on first use), so that
    a resumed run logs to the same W&B run: offline, its second ``offline-run-*-<id>`` folder is
    synced into the same run by ``wandb sync`` (``make wandb-sync``)."""
    path = run_dir / WANDB_ID_FILE
    if path.is_file() and path.read_text(encoding="utf-8").strip():
        return path.read_text(encoding="utf-8").strip()
    alphabet = string.ascii_lowercase + string.digits
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))
    if create:
        atomic_write_text(path, run_id + "\n")
    return run_id


def wandb_settings() -> Any:
    """W&B's console output off: no banner, no run-history sparklines or run summary at the end
    (the command prints the run's W&B folder once). ``WANDB_SILENT=false`` in the environment
    brings W&B's own messages back."""
    import wandb

    if os.environ.get("WANDB_SILENT", "").lower() in ("false", "0", "no"):
        return wandb.Settings()
    return wandb.Settings(silent=True, quiet=True)


# W&B's folders outside its run folder (wandb 0.31): WANDB_CACHE_DIR holds wandb-core's debug logs
# (written even offline, under ~/.cache/wandb by default) and the artifact cache; WANDB_DATA_DIR
# artifacts being staged. WANDB_CONFIG_DIR (~/.config/wandb: the settings of `wandb login`) is
# only read while logging, and stays where it is.
WANDB_DIR_ENV = {"WANDB_CACHE_DIR": "cache", "WANDB_DATA_DIR": "data"}


@contextlib.contextmanager
def wandb_dirs(run_dir: Path) -> Iterator[None]:
    """Inside the block, W&B's cache and data folders are ``<run>/wandb/cache`` and ``.../data``
    (where the environment does not name them already), so that a run writes nothing under the
    home folder. wandb-core reads them when it starts (the first W&B run of the process).

    Args:
        run_dir: the run folder.
    """
    mine = {key: str(Path(run_dir) / "wandb" / sub) for key, sub in WANDB_DIR_ENV.items()
            if not os.environ.get(key)}
    os.environ.update(mine)
    try:
        yield
    finally:
        for key in mine:
            os.environ.pop(key, None)


def make_loggers(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    """CSV always; W&B unless ``logging.wandb=false`` (mode: env ``WANDB_MODE``, else config), under
    the run folder's W&B id (:func:`wandb_run_id`; a resumed run continues its W&B run), silent on
    the console (:func:`wandb_settings`), its files under ``<run>/wandb`` (the caller runs the
    training inside :func:`wandb_dirs`). The W&B run's name is ``run.name``."""
    loggers: list[Logger] = [CSVLogger(save_dir=run_dir, name="csv", version="")]
    if cfg.logging.wandb:
        config = to_plain(cfg)
        config["git_commit"] = cfg.run.git_commit or git_commit()
        from lightning.pytorch.utilities import rank_zero_only

        wandb_logger = WandbLogger(
            name=str(cfg.run.name), save_dir=str(run_dir), project=str(cfg.logging.wandb_project),
            group=str(cfg.logging.group or cfg.run.experiment or cfg.data.name),
            tags=wandb_tags(cfg), config=config,
            id=wandb_run_id(run_dir, create=rank_zero_only.rank == 0), resume="allow",
            mode=os.environ.get("WANDB_MODE") or str(cfg.logging.wandb_mode),
            settings=wandb_settings())
        init_args = getattr(wandb_logger, "_wandb_init", {})
        if "anonymous" in init_args and init_args["anonymous"] is None:
            del init_args["anonymous"]  # Lightning passes anonymous=None: W&B warns it is deprecated
        loggers.append(wandb_logger)
    return loggers
