"""ONNX export of the image-free network (``bga-mner export --onnx``) and its ONNX Runtime runner
(``bga-mner predict --runtime onnx|onnx-int8``, ``Tagger.from_pretrained(..., runtime=...)``).

The graph is the network up to the CRF's emissions: ``input_ids``, ``attention_mask`` (B, Nt) and
``word_starts`` (B, W), int64, batch and lengths dynamic -> ``emissions`` (B, W, num_labels). The
Viterbi decoding stays in torch (``CRFHead.decode`` on the emissions), so the tags come from the
same decoder. ``model.int8.onnx`` is ``onnxruntime.quantization.quantize_dynamic`` of
``model.onnx`` after ONNX Runtime's ``quant_pre_process``: int8 weights, activations quantised per
batch at run time. Both files are ONNX
protobufs (no pickle). ``onnx`` and ``onnxruntime`` are imported only here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
INPUTS = ("input_ids", "attention_mask", "word_starts")
OPSET = 18


class EmissionsGraph(nn.Module):
    """The network's image-free forward as a function of three tensors (what is exported)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                word_starts: torch.Tensor) -> torch.Tensor:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "word_starts": word_starts}
        return self.network(batch, visual=False).emissions  # (B, W, num_labels)


def example_inputs(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two tweets of different lengths (padding in the second): what the export traces."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, vocab_size, (2, 12), generator=generator)
    attention_mask = torch.ones(2, 12, dtype=torch.long)
    attention_mask[1, 7:] = 0
    word_starts = torch.tensor([[1, 2, 4, 6, 9], [1, 3, 5, 0, 0]])
    return input_ids, attention_mask, word_starts


def export_onnx(network: nn.Module, folder: str | Path) -> tuple[Path, Path]:
    """Write ``model.onnx`` and ``model.int8.onnx`` of an image-free network into ``folder``.

    Args:
        network: ``pretrained.PretrainedBGAMNER`` in eval mode.
        folder: the export folder.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    folder = Path(folder)
    fp32, int8 = folder / ONNX_FILES["onnx"], folder / ONNX_FILES["onnx-int8"]
    vocab = network.text_embeddings.word_embeddings.num_embeddings
    positions = network.text_embeddings.position_embeddings.num_embeddings
    batch, words = torch.export.Dim("batch"), torch.export.Dim("words", max=positions)
    tokens = torch.export.Dim("tokens", min=3, max=positions)  # [CLS] word [SEP] .. the position table
    shapes = ({0: batch, 1: tokens}, {0: batch, 1: tokens}, {0: batch, 1: words})
    with torch.no_grad():
        program = torch.onnx.export(EmissionsGraph(network.eval()).eval(), example_inputs(vocab), dynamo=True,
                                    input_names=list(INPUTS), output_names=["emissions"],
                                    dynamic_shapes=shapes, opset_version=OPSET, external_data=False)
    program.save(str(fp32), external_data=False)
    # ONNX Runtime's pre-processing first (shape inference, constant folding: the weight maps the
    # network composes at run time become constants, which quantize_dynamic then quantises too)
    prepared = folder / ".model.pre.onnx"
    try:
        quant_pre_process(str(fp32), str(prepared), auto_merge=True)
        quantize_dynamic(str(prepared), str(int8), weight_type=QuantType.QInt8)
    finally:
        prepared.unlink(missing_ok=True)
    return fp32, int8


class OnnxRunner:
    """``batch -> emissions`` with ONNX Runtime (CPU), on as many threads as torch uses.

    Args:
        path: ``model.onnx`` or ``model.int8.onnx``.
    """

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @classmethod
    def load(cls, folder: str | Path, runtime: str) -> "OnnxRunner":
        """The runner of a model folder's ``model.onnx`` (``runtime="onnx"``) or ``model.int8.onnx``.

        Raises:
            FileNotFoundError: the folder has no such file (exported without ``--onnx``).
        """
        if runtime not in ONNX_FILES:
            raise ValueError(f"runtime {runtime!r}; expected one of {sorted(ONNX_FILES)}")
        path = Path(folder) / ONNX_FILES[runtime]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; `bga-mner export --onnx` writes it")
        return cls(path)

    def __call__(self, batch: dict) -> torch.Tensor:
        feeds = {name: batch[name].to(torch.long).numpy() for name in INPUTS}
        return torch.from_numpy(self.session.run(["emissions"], feeds)[0])  # (B, W, num_labels)
