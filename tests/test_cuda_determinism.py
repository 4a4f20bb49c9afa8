"""``trainer.deterministic=true`` cannot raise on CUDA: no op of a training or evaluation step is
one that ``torch.use_deterministic_algorithms(True)`` refuses there (traced here on the CPU).

PyTorch 2.14's ``torch.use_deterministic_algorithms`` documents the ops that have no deterministic
CUDA kernel and so raise a ``RuntimeError`` in strict mode (``RAISE_ON_CUDA``, their aten names
below). Every other op either has only deterministic kernels or switches to one (``gather``'s
backward, ``index_put`` with accumulation, ``cumsum``, the flash and memory-efficient attention
backward, ...). docs/gpu.md gives the list and the choice; ``make gpu-check`` runs the same steps
on a GPU in strict mode.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bga_mner.system import MNERSystem, parameter_groups
from models_batch import make_batch, tiny_cfg

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")

# torch.use_deterministic_algorithms (torch 2.14): "will throw a RuntimeError when mode=True"
RAISE_ON_CUDA = {
    "avg_pool3d_backward", "_adaptive_avg_pool2d_backward", "adaptive_avg_pool2d_backward",
    "_adaptive_avg_pool3d_backward", "adaptive_avg_pool3d_backward", "adaptive_max_pool2d_backward",
    "fractional_max_pool2d_backward", "fractional_max_pool3d_backward",
    "max_unpool1d", "max_unpool2d", "max_unpool3d",
    "upsample_linear1d_backward", "upsample_bilinear2d_backward", "upsample_bicubic2d_backward",
    "upsample_trilinear3d_backward", "_upsample_bilinear2d_aa_backward",
    "_upsample_bicubic2d_aa_backward",
    "reflection_pad1d_backward", "reflection_pad2d_backward", "reflection_pad3d_backward",
    "nll_loss", "nll_loss_forward", "nll_loss2d", "nll_loss2d_forward", "nll_loss_nd",
    "_ctc_loss_backward", "ctc_loss",
    "_embedding_bag", "_embedding_bag_backward", "_embedding_bag_dense_backward",
    "put", "put_", "histc", "bincount", "median", "nanmedian",
    "grid_sampler_2d_backward", "grid_sampler_3d_backward", "scatter_reduce", "scatter_reduce_",
}


class OpRecorder(TorchDispatchMode):
    """The aten op names that run inside the block (forward, backward, optimizer)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("use_mcg", [True, False], ids=["bga-mner", "bert-crf"])
def test_no_step_op_raises_under_strict_determinism_on_cuda(use_mcg, one_thread) -> None:
    """A training step (forward, Eqs. 10-11, backward, AdamW), the dev step with images and
    image-free decoding, for BGA-MNER (N = 2, samplers, cycle) and BERT-CRF."""
    torch.manual_seed(0)
    system = MNERSystem(tiny_cfg(f"model.use_mcg={use_mcg}"))
    optimizer = torch.optim.AdamW(parameter_groups(system.model, system.cfg.optim), lr=1e-3)
    batch = make_batch()
    with OpRecorder() as recorder:
        system.train()
        loss, _ = system.objective(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(system.parameters(), 1.0)  # trainer.gradient_clip_val
        optimizer.step()
        system.eval()
        with torch.no_grad():
            out = system.model(batch, visual=use_mcg)
            system.objective(batch, out)
            system.decode_batch(batch, out)
            system.decode_batch(batch)
    assert len(recorder.ops) > 50  # the recorder saw the step
    assert {"mm", "addmm", "bmm"} & recorder.ops and "gather" in recorder.ops
    assert not recorder.ops & RAISE_ON_CUDA
