"""``trainer.compile``: the network compiled in place (build.compile_network), one graph for the BGA
layer stack, the same outputs as eager (slow: inductor on the CPU)."""

from __future__ import annotations

import os

import pytest
import torch
import torch._dynamo

from bga_mner.build import build_trainer, compile_network, compile_options, trainer_kwargs
from bga_mner.config import load_config
from bga_mner.system import MNERSystem
from models_batch import make_batch, tiny_cfg, tiny_model

pytestmark = [
    pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`"),
    pytest.mark.skipif("MUTANT_UNDER_TEST" in os.environ,  # set by mutmut (make mutation)
                       reason="mutmut's trampolines are not traceable by dynamo"),
]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_the_bga_layer_stack_traces_as_one_graph(one_thread) -> None:
    """Training-mode forward with N = 2 BGA layers (samplers, both generators and their cycle
    passes, hybrid text and visual layers, the layer-to-layer recursion): no graph break."""
    model = tiny_model()
    explanation = torch._dynamo.explain(model)(make_batch())
    assert explanation.graph_break_count == 0, [str(r.reason) for r in explanation.break_reasons]
    assert explanation.graph_count == 1


def test_compile_network_compiles_in_place_only_when_asked() -> None:
    model = tiny_model()
    names = list(model.state_dict())
    assert compile_network(model, tiny_cfg()) is model and model._compiled_call_impl is None
    assert compile_network(model, tiny_cfg("trainer.compile=true")) is model
    assert model._compiled_call_impl is not None  # nn.Module.compile: the module's call is compiled
    assert list(model.state_dict()) == names  # checkpoints keep the eager names (no _orig_mod.)


def test_cpu_compiles_draw_random_numbers_through_aten(monkeypatch) -> None:
    """On the CPU inductor takes ``fallback_random`` (aten's generator: the eager run's draws, and
    a faster compiled step there, docs/gpu.md); on CUDA it keeps its own fused generator."""
    assert compile_options("cpu") == {"fallback_random": True}
    assert compile_options("gpu") == {} and compile_options("cuda") == {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert compile_options("auto") == {"fallback_random": True}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert compile_options("auto") == {}
    calls = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kwargs: calls.append(kwargs))
    compile_network(tiny_model(), tiny_cfg("trainer.compile=true", "trainer.accelerator=cpu"))
    assert calls == [{"options": {"fallback_random": True}}]


def test_compile_is_not_a_trainer_argument() -> None:
    cfg = load_config(overrides=["run.profile=smoke", "trainer.compile=true"])
    assert "compile" not in trainer_kwargs(cfg)
    build_trainer(cfg, logger=False, enable_checkpointing=False)  # L.Trainer takes the rest


@pytest.mark.slow
def test_fit_trains_the_compiled_network(smoke_fit, tmp_path, monkeypatch) -> None:
    """``bga-mner fit trainer.compile=true`` compiles MNERSystem.model before training; dynamo's
    ``eager`` backend keeps the test short (the graphs are traced, run uncompiled)."""
    compiled = []
    original = torch.nn.Module.compile

    def compile_traced_only(self, *args, **kwargs):
        compiled.append(type(self).__name__)
        original(self, backend="eager")

    monkeypatch.setattr(torch.nn.Module, "compile", compile_traced_only)
    torch._dynamo.utils.counters.clear()
    smoke_fit(tmp_path, "run.name=compiled", "logging.wandb=false", "trainer.compile=true",
              "data.length_buckets=[32,64,128]")
    assert compiled == ["BGAMNER"]
    assert (tmp_path / "compiled" / "results.json").is_file()
    # one graph per mode: training, dev loss with images, image-free test (every batch fits the
    # 32 bucket: no recompilation; without buckets the varying lengths add one)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 3


def _outputs(system: MNERSystem, batch: dict, training: bool) -> tuple:
    """Emissions, loss and parts, and the gradient of every parameter (the same noise each call)."""
    system.train(training)
    system.zero_grad(set_to_none=True)
    torch.manual_seed(5)  # the samplers' Gumbel noise (inductor draws through aten: fallback_random)
    out = system.model(batch)
    loss, parts = system.objective(batch, out)
    if training:
        loss.backward()
    grads = {n: p.grad.clone() for n, p in system.named_parameters() if p.grad is not None}
    return out.emissions.detach(), loss.detach(), {k: v.detach() for k, v in parts.items()}, grads


@pytest.mark.slow
def test_compiled_network_matches_eager(one_thread) -> None:
    """Inductor (CPU) against eager, training mode (dropout 0: the same Gumbel noise, drawn through
    aten by ``compile_network``'s CPU options) with gradients, and evaluation (image-free).
    Compiles for minutes."""
    torch.manual_seed(0)
    system = MNERSystem(load_config(overrides=["run.profile=smoke", "model.dropout=0.0"]))
    batch = make_batch(num_objects=3)
    eager = [_outputs(system, batch, training) for training in (True, False)]
    compile_network(system.model, load_config(overrides=["run.profile=smoke", "trainer.compile=true",
                                                        "trainer.accelerator=cpu"]))
    compiled = [_outputs(system, batch, training) for training in (True, False)]
    for (e_em, e_loss, e_parts, e_grads), (c_em, c_loss, c_parts, c_grads) in zip(eager, compiled):
        torch.testing.assert_close(c_em, e_em, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(c_loss, e_loss, rtol=1e-4, atol=1e-4)
        for name in e_parts:
            torch.testing.assert_close(c_parts[name], e_parts[name], rtol=1e-4, atol=1e-4, msg=name)
        assert c_grads.keys() == e_grads.keys()
        for name in e_grads:
            torch.testing.assert_close(c_grads[name], e_grads[name], rtol=1e-3, atol=1e-4, msg=name)
    assert eager[0][3]  # the training step had gradients
