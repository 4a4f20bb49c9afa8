"""MNERSystem: the loss of Eqs. 10-11, optimiser groups and schedule, evaluation on full gold tags."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from bga_mner.config import load_config
from bga_mner.data.conll import LABEL2ID
from bga_mner.data.encode import collate_text, encode_batch
from bga_mner.models.backbones import load_tokenizer
from bga_mner.models.bga_mner import BGAOutput, LayerLosses, component_of
from bga_mner.system import MNERSystem, parameter_groups

# training_step logs; without a Trainer, Lightning warns that the logs go nowhere
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")

WORDS = [["Kevin", "Durant", "scored", "in", "Boston"], ["NASA", "launch", "today"]]
TAGS = [["B-PER", "I-PER", "O", "O", "B-LOC"], ["B-ORG", "O", "O"]]


@pytest.fixture(scope="module")
def cfg():
    return load_config(overrides=["run.profile=smoke", "optim.head_lr=0.002", "optim.crf_lr=0.003",
                                  "optim.new_lr=0.004", "model.alpha=0.5"])


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny-bert")


def make_batch(cfg, tokenizer, max_length: int = 128) -> dict:
    """A batch dict per docs/ARCHITECTURE.md: real text encoding, random images (second tweet: none)."""
    batch = collate_text(encode_batch(tokenizer, WORDS, max_length), TAGS, tokenizer.pad_token_id)
    g, c, k = cfg.data.global_size, cfg.data.crop_size, cfg.data.num_objects
    gen = torch.Generator().manual_seed(0)
    batch.update(image=torch.randn(2, 3, g, g, generator=gen), crops=torch.randn(2, k, 3, c, c, generator=gen),
                 crop_mask=torch.tensor([[True, True, False], [False, False, False]]),
                 has_image=torch.tensor([True, False]), ids=["a", "b"], words=WORDS, tags=TAGS)
    return batch


def test_objective_is_eq11_plus_the_weighted_keep_ratio_term(cfg, tokenizer):
    """Eq. 11 on fixed raw terms of N = 2 layers: alpha = 0.5, the 1/N average, ratio_weight = 10."""
    system = MNERSystem(cfg)
    batch = make_batch(cfg, tokenizer)
    emissions = torch.randn(2, 5, len(LABEL2ID), generator=torch.Generator().manual_seed(0))
    t = torch.tensor
    layers = [LayerLosses(t(1.0), t(2.0), t(3.0), t(4.0), t(0.5), t(0.25)),
              LayerLosses(t(5.0), t(6.0), t(7.0), t(8.0), t(1.0), t(2.0))]
    loss, parts = system.objective(batch, BGAOutput(emissions, layer_losses=layers))
    nll = system.model.crf_head.nll(emissions, batch["labels"], batch["word_mask"])
    recon, cycle, keep = (1 + 2 + 5 + 6) / 2, (3 + 4 + 7 + 8) / 2, (0.5 + 0.25 + 1 + 2) / 2
    assert (parts["recon"].item(), parts["cycle"].item(), parts["keep_ratio"].item()) == (recon, cycle, keep)
    assert parts["mner"].item() == pytest.approx(nll.item())
    assert loss.item() == pytest.approx(nll.item() + 0.5 * (recon + cycle + 10.0 * keep))
    # without the cycle and the samplers their terms are absent, and so is their share
    bare = [LayerLosses(t(1.0), t(2.0)), LayerLosses(t(5.0), t(6.0))]
    loss, parts = system.objective(batch, BGAOutput(emissions, layer_losses=bare))
    assert parts["cycle"].item() == 0.0 and parts["keep_ratio"].item() == 0.0
    assert loss.item() == pytest.approx(nll.item() + 0.5 * recon)
    # image-free output (no terms): the loss is the NLL alone
    loss, parts = system.objective(batch, BGAOutput(emissions))
    assert loss.item() == pytest.approx(nll.item()) and parts["auxiliary"].item() == 0.0


def test_training_step_is_the_objective_of_the_network_output(cfg, tokenizer):
    torch.manual_seed(0)
    system = MNERSystem(cfg).train()
    batch = make_batch(cfg, tokenizer)
    torch.manual_seed(1)
    loss = system.training_step(batch, 0)
    torch.manual_seed(1)
    out = system.model(batch)
    expected, parts = system.objective(batch, out)
    assert torch.isfinite(loss) and len(out.layer_losses) == system.model.num_bga_layers
    assert parts["recon"].item() > 0  # the first tweet has an image
    assert loss.item() == expected.item()


def test_bert_crf_loss_is_the_nll(cfg, tokenizer):
    torch.manual_seed(0)
    system = MNERSystem(OmegaConf.merge(cfg, {"model": {"use_mcg": False}})).train()
    batch = make_batch(cfg, tokenizer)
    torch.manual_seed(1)
    loss = system.training_step(batch, 0)
    torch.manual_seed(1)
    out = system.model(batch)
    assert loss.item() == pytest.approx(
        system.model.crf_head.nll(out.emissions, batch["labels"], batch["word_mask"]).item(), rel=1e-5)


def test_parameter_groups_cover_each_parameter_once_with_its_lr_and_decay(cfg):
    model = MNERSystem(cfg).model
    groups = parameter_groups(model, cfg.optim)
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(ids) == len(set(ids)) and set(ids) == trainable
    by_name = {g["name"]: g for g in groups}
    assert {"encoder", "encoder_no_decay", "visual", "visual_no_decay", "head", "head_no_decay", "crf",
            "crf_no_decay", "new", "new_no_decay"} == set(by_name)
    assert by_name["encoder"]["lr"] == cfg.optim.lr and by_name["head"]["lr"] == 0.002
    assert by_name["visual"]["lr"] == cfg.optim.lr  # visual_lr null: lr
    visual = {id(p) for n, p in model.named_parameters() if component_of(n) == "visual encoder"}
    assert visual == {id(p) for n in ("visual", "visual_no_decay") for p in by_name[n]["params"]}
    assert by_name["crf"]["lr"] == 0.003 and by_name["new"]["lr"] == 0.004
    assert all(g["weight_decay"] == 0.0 for n, g in by_name.items() if n.endswith("no_decay"))
    assert all(g["weight_decay"] == cfg.optim.weight_decay for n, g in by_name.items()
               if not n.endswith("no_decay"))
    assert all(p.ndim >= 2 for n, g in by_name.items() if not n.endswith("no_decay") for p in g["params"])
    crf = {id(p) for p in model.crf_head.crf.parameters()}
    assert crf == {id(p) for n in ("crf", "crf_no_decay") for p in by_name[n]["params"]}
    # LayerNorm weights and biases of the encoders are not decayed
    norm_w = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert norm_w and norm_w <= {id(p) for n, g in by_name.items() if n.endswith("no_decay")
                                 for p in g["params"]}


def test_visual_lr_zero_holds_the_visual_encoder_fixed(cfg, tokenizer):
    system = MNERSystem(OmegaConf.merge(cfg, {"optim": {"visual_lr": 0.0}})).train()
    opt = torch.optim.AdamW(parameter_groups(system.model, system.cfg.optim), lr=1e-3)
    before = {n: p.detach().clone() for n, p in system.model.named_parameters()}
    system.training_step(make_batch(cfg, tokenizer), 0).backward()
    opt.step()
    changed = {n for n, p in system.model.named_parameters() if not torch.equal(p, before[n])}
    assert not any(component_of(n) == "visual encoder" for n in changed)
    assert {"text encoder", "t2v generator", "v2t generator", "crop pos/projections"} <= {
        component_of(n) for n in changed}  # the crops' new position embeddings still learn


def test_schedule_warms_up_then_decays_linearly(cfg):
    system = MNERSystem(OmegaConf.merge(cfg, {"optim": {"warmup_ratio": 0.1}}))
    system._trainer = SimpleNamespace(estimated_stepping_batches=20)  # what configure_optimizers reads
    conf = system.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    base = [g["initial_lr"] for g in opt.param_groups]
    factors = []
    for _ in range(20):
        factors.append(opt.param_groups[0]["lr"] / base[0])
        opt.step()
        sched.step()
    assert factors[0] == 0.0 and factors[1] == pytest.approx(0.5) and factors[2] == pytest.approx(1.0)
    assert factors[11] == pytest.approx(0.5) and math.isclose(opt.param_groups[0]["lr"], 0.0, abs_tol=1e-12)


def test_evaluation_scores_full_gold_with_truncated_words_as_o(cfg, tokenizer):
    system = MNERSystem(cfg).eval()
    batch = make_batch(cfg, tokenizer, max_length=4)  # [CLS] + 2 pieces + [SEP]: tweet 1 loses words
    assert not batch["word_mask"][0, -1]  # "Boston" (B-LOC) is cut off
    preds = system.decode_batch(batch)
    assert [len(p) for p in preds] == [len(w) for w in WORDS]
    assert all(p[i] == "O" for p, m in zip(preds, batch["word_mask"]) for i in range(len(p)) if not m[i])
    # the metric sees the full gold: a perfect decode of the kept words still misses Boston
    system.model.crf_head.decode = lambda emissions, mask: [
        [LABEL2ID[t] for t, keep in zip(tags, m) if keep] for tags, m in zip(TAGS, mask.tolist())]
    system.validation_step(batch, 0)
    scores = system.val_f1.compute()
    assert scores["LOC"]["recall"] == 0.0 and scores["ORG"]["f1"] == 100.0


def test_image_free_evaluation_ignores_images(cfg, tokenizer):
    system = MNERSystem(cfg).eval()
    batch = make_batch(cfg, tokenizer)
    text_only = {k: v for k, v in batch.items() if k not in ("image", "crops", "crop_mask", "has_image")}
    assert system.decode_batch(batch) == system.decode_batch(text_only)


def test_best_validation_is_the_first_best_epoch(cfg):
    system = MNERSystem(cfg)
    with pytest.raises(RuntimeError, match="no validation"):
        system.best_validation()
    f1 = [10.0, 30.0, 30.0, 20.0]
    system.val_history = [{"epoch": e, "scores": {"overall": {"f1": v}}} for e, v in enumerate(f1)]
    assert system.best_validation()["epoch"] == 1


def test_pretrained_encoder_starts_in_training_mode(cfg):
    """from_pretrained returns modules in eval mode; training must not run without dropout."""
    bert = OmegaConf.merge(cfg, {"model": {"use_mcg": False, "text_encoder": "all-MiniLM-L6-v2",
                                           "text_pretrained": True}})
    system = MNERSystem(bert)
    assert all(m.training for m in system.model.modules())
