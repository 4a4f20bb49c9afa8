"""A trained model as a folder to share: the image-free network with ``huggingface_hub``'s
``PyTorchModelHubMixin`` (:class:`PretrainedBGAMNER`) and ``bga-mner export`` (:func:`export_run`).

The folder (what ``Tagger.from_pretrained`` and ``bga-mner predict --model`` read, from disk or
from the Hub)::

    config.json        {"format", "model": the run's model section, "labels", "max_length",
                        "text_config": the encoder's transformers config, "visual_spec": the ViT's
                        shapes (null for BERT-CRF), "source": run, experiment, data set, commit}
    model.safetensors  the image-free weights (``BGAMNER.inference_state_dict()``): no visual
                       encoder, visual samplers or image-to-text generator; safetensors, no pickle
    tokenizer.json, tokenizer_config.json, ...   the text encoder's tokenizer
    README.md          the model card (``model_card.build_card`` from the run's results.json)

The network is built from ``config.json`` alone: the encoder from ``text_config`` (no hub access,
no bundled weights), the generators' shapes from ``visual_spec`` (no timm model is built). The
mixin writes ``config.json`` and ``model.safetensors`` (``safetensors.torch.save_model``) and
reads them back (``safetensors.torch.load_model``, strict).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

from huggingface_hub import ModelCard, PyTorchModelHubMixin, constants
from omegaconf import DictConfig, OmegaConf

from bga_mner.config import from_container, real_context, section
from bga_mner.data.conll import LABELS
from bga_mner.errors import UserError
from bga_mner.models.bga_mner import BGAMNER

FORMAT = "bga-mner-pretrained/1"
CONFIG_FILE = constants.CONFIG_NAME  # config.json
WEIGHTS_FILE = constants.SAFETENSORS_SINGLE_FILE  # model.safetensors
CARD_FILE = "README.md"
# what a model folder is made of (``hub.fetch`` downloads these from a hub repository)
FOLDER_PATTERNS = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, "tokenizer*", "vocab*", "merges.txt",
                   "special_tokens_map.json", "sentencepiece*", "*.model", "model.onnx", "model.int8.onnx")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
REPO_URL = "https://github.com/bga-mner/bga-mner"


class ModelFolderError(UserError, ValueError):
    """A folder given as a model that is not a ``bga-mner export`` folder (the message names it)."""


class PretrainedBGAMNER(BGAMNER, PyTorchModelHubMixin, library_name="bga-mner", repo_url=REPO_URL,
                        license="mit", language="en", pipeline_tag="token-classification",
                        tags=["named-entity-recognition", "twitter", "multimodal-ner", "bga-mner"]):
    """The image-free BGA-MNER (or BERT-CRF) network, built from plain, JSON-able settings.

    Args:
        model: the ``model:`` section of the run's config (``config.ModelConfig``'s keys).
        labels: the label set (``data.conll.LABELS``).
        max_length: word pieces per window (``data.max_length``).
        text_config: the text encoder's transformers config (``PretrainedConfig.to_dict()``).
        visual_spec: the ViT's shapes (``backbones.VisualSpec``); None for BERT-CRF.
    """

    def __init__(self, model: dict, labels: list, max_length: int, text_config: dict,
                 visual_spec: dict | None = None) -> None:
        from transformers import AutoConfig, AutoModel

        from bga_mner.models.backbones import VisualSpec, check_text_config

        if tuple(labels) != LABELS:
            raise ValueError(f"label set {list(labels)} differs from this suite's {list(LABELS)}")
        model_cfg = section(from_container({"model": dict(model)}, "model config"), "model")
        kwargs = {k: v for k, v in text_config.items() if not k.startswith("_")}
        encoder_config = AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
        check_text_config(encoder_config, model_cfg.text_encoder)
        spec = VisualSpec(**visual_spec) if visual_spec is not None else None
        super().__init__(AutoModel.from_config(encoder_config), None, len(labels), model_cfg,
                         build_visual=False, visual_spec=spec)
        self.window = int(max_length)  # word pieces per window of raw tweets (tagging)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: Any, force_download: bool,
                         local_files_only: bool, token: Any, map_location: str = "cpu", strict: bool = True,
                         **model_kwargs: Any) -> "PretrainedBGAMNER":
        """The mixin's loading, from a local folder only (``hub.fetch`` resolves a hub id first),
        from ``model.safetensors`` only (never a pickle), strict (every weight present and used)."""
        weights = Path(model_id) / WEIGHTS_FILE
        if not weights.is_file():
            raise ModelFolderError(f"{model_id}: no {WEIGHTS_FILE} (a `bga-mner export` folder holds one)")
        return cls._load_as_safetensor(cls(**model_kwargs), str(weights), map_location, strict)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The model card of an exported run (``model_card.build_card``, given by :func:`export_run`
        as ``save_pretrained(model_card_kwargs=...)``)."""
        from bga_mner.model_card import build_card

        return build_card(**kwargs)


def network_settings(cfg: DictConfig) -> dict:
    """The :class:`PretrainedBGAMNER` arguments of a trained run's config (image-free: the model
    section says ``inference_visual: generated``).

    Args:
        cfg: the run's merged config (a checkpoint's).
    """
    from bga_mner.models.backbones import describe_visual_encoder, text_encoder_config

    model = OmegaConf.to_container(cfg.model, resolve=True)
    model["inference_visual"] = "generated"
    text = text_encoder_config(str(cfg.model.text_encoder), pretrained=False).to_dict()
    spec = asdict(describe_visual_encoder(str(cfg.model.visual_encoder))) if cfg.model.use_mcg else None
    return {"model": model, "labels": list(LABELS), "max_length": int(cfg.data.max_length),
            "text_config": {k: v for k, v in text.items() if not k.startswith("_")}, "visual_spec": spec}


def network_from_checkpoint(ckpt: Any) -> PretrainedBGAMNER:
    """The image-free network of a checkpoint (``inference.Checkpoint``), its weights loaded, in
    eval mode: the same network :func:`export_run` writes and ``from_pretrained`` reads back.

    Raises:
        UserError: a checkpoint of the real-context control (``model.text_context=real``: no
            image-free mode).
        inference.CheckpointError: weights that do not fit the config.
    """
    from bga_mner.inference import load_checkpoint_weights

    if real_context(ckpt.config):
        raise UserError(f"{ckpt.path}: trained with model.text_context=real, the model reads the real "
                        "image of each tweet (its text layers attend to the real visual tokens); "
                        "image-free tagging (predict, export) cannot use it: evaluate it with "
                        "`bga-mner test` instead")
    network = PretrainedBGAMNER(**network_settings(ckpt.config))
    load_checkpoint_weights(network, ckpt)
    return network.eval()


def read_folder_config(folder: str | Path) -> dict:
    """The ``config.json`` of a model folder, checked (format, label set).

    Raises:
        ModelFolderError: no ``config.json``, not JSON, or not a ``bga-mner export`` folder.
    """
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ModelFolderError(f"{folder}: no {CONFIG_FILE}; not a `bga-mner export` folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFolderError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise ModelFolderError(f"{path}: not a bga-mner model config (format {found!r}, expected {FORMAT!r})")
    if tuple(config.get("labels", ())) != LABELS:
        raise ModelFolderError(f"{path}: label set {config.get('labels')} differs from {list(LABELS)}")
    return config


def run_checkpoint(run_dir: Path) -> Path:
    """The checkpoint of a run folder that export reads: ``inference.pt`` (image-free), else ``best.ckpt``."""
    for name in ("inference.pt", "best.ckpt"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"{run_dir}/checkpoints: neither inference.pt nor best.ckpt (not a trained run?)")


def export_run(run_dir: str | Path, out: str | Path, onnx: bool = False) -> Path:
    """Write the shareable folder of a finished run (module docstring), all or nothing: it is
    written beside ``out`` under a temporary name and renamed into place.

    Args:
        run_dir: a finished run folder (``results.json``, ``checkpoints/``).
        out: the new folder (absent, or an empty folder).
        onnx: also write ``model.onnx`` (``onnx_export.export_onnx``) for ``--runtime onnx``.

    Raises:
        FileNotFoundError: no such run, or no results.json / checkpoint in it.
        FileExistsError: ``out`` exists and is not an empty folder.
    """
    from bga_mner.inference import read_checkpoint
    from bga_mner.models.backbones import load_tokenizer

    run_dir, out = Path(run_dir), Path(out)
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"{results_path}: not found; export takes a finished run folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: already exists; export writes a new folder")
    results = json.loads(results_path.read_text(encoding="utf-8"))
    ckpt = read_checkpoint(run_checkpoint(run_dir))
    network = network_from_checkpoint(ckpt)
    config = {"format": FORMAT, **network._hub_mixin_config,
              "source": {"run": results.get("run"), "experiment": results.get("experiment"),
                         "dataset": results.get("dataset"), "test_dataset": results.get("test_dataset"),
                         "model": results.get("model"), "seed": results.get("seed"),
                         "profile": results.get("profile"), "git_commit": results.get("git_commit"),
                         "checkpoint": ckpt.path.name}}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        network.save_pretrained(tmp, config=config,
                                model_card_kwargs={"results": results, "run_dir": run_dir, "config": config})
        load_tokenizer(str(ckpt.config.model.text_encoder)).save_pretrained(str(tmp))
        if onnx:
            from bga_mner.onnx_export import export_onnx

            export_onnx(network, tmp)
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def folder_files(folder: str | Path) -> Mapping[str, int]:
    """The files of a model folder and their sizes, checked for sharing: the model's files are
    there and no file is a pickle.

    Raises:
        ModelFolderError: a missing file, or a pickled one (``.bin``, ``.pt``, ``.ckpt``, ...).
    """
    folder = Path(folder)
    read_folder_config(folder)
    files = {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*"))
             if p.is_file() and not p.relative_to(folder).as_posix().startswith(".")}
    missing = [name for name in (WEIGHTS_FILE, CARD_FILE) if name not in files]
    if missing or not any(name.startswith("tokenizer") for name in files):
        raise ModelFolderError(f"{folder}: missing {missing or ['the tokenizer files']}; "
                               "not a complete `bga-mner export` folder")
    pickled = [name for name in files if name.endswith(PICKLE_SUFFIXES)]
    if pickled:
        raise ModelFolderError(f"{folder}: {pickled} would share pickled code; only safetensors are shared")
    return files
