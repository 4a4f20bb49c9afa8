"""``bga-mner export RUN OUT [--onnx]``: a finished run as a folder to share on the Hugging Face Hub.

``OUT`` gets ``config.json`` (the run's model section, the label set, the encoder's config),
``model.safetensors`` (the image-free weights only), the tokenizer files and ``README.md`` (the
model card, from ``results.json``), through ``huggingface_hub``'s mixin and model card
(``pretrained.export_run``); ``--onnx`` adds ``model.onnx`` and its int8 ``model.int8.onnx``
(``predict --runtime onnx|onnx-int8``). ``bga-mner predict --model OUT`` and
``Tagger.from_pretrained(OUT)`` read it; ``bga-mner push OUT REPO_ID`` uploads it.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a finished run folder (results.json, checkpoints/)")
    parser.add_argument("out", help="the new folder (absent or empty)")
    parser.add_argument("--onnx", action="store_true",
                        help="also write model.onnx and its int8 model.int8.onnx (ONNX Runtime)")


def main(args: argparse.Namespace) -> int:
    from bga_mner.pretrained import export_run, folder_files

    out = export_run(args.run, args.out, onnx=args.onnx)
    files = folder_files(out)
    print(f"{out}: " + ", ".join(f"{name} ({size / 1e6:.1f} MB)" if size >= 1e5 else name
                                 for name, size in files.items()))
    return 0
