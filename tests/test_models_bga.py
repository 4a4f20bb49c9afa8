"""The whole network: shapes, gradients, image-free inference, the BERT-CRF baseline, overfitting."""

from __future__ import annotations

import pytest
import torch
from models_batch import (NUM_LABELS, TEXT_L3, deep_cfg, image_free, make_batch, raw_generation_total, select,
                          tiny_cfg, tiny_model)

from bga_mner.config import ConfigError
from bga_mner.models import build_model
from bga_mner.models.backbones import load_text_encoder
from bga_mner.models.bga_mner import VISUAL_ONLY, component_of
from bga_mner.models.sampler import ContextSampler


# tiny models on a shared 2-core machine run fastest on one thread (conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


def _loss(model, batch):
    out = model(batch)
    return model.crf_head.nll(out.emissions, batch["labels"], batch["word_mask"]) + raw_generation_total(out), out


def test_training_shapes_and_every_parameter_gets_a_finite_gradient():
    model, batch = tiny_model().train(), make_batch()
    loss, out = _loss(model, batch)
    assert out.emissions.shape == (3, 6, NUM_LABELS)
    assert len(out.text_masks) == len(out.visual_masks) == len(out.generated_visual) == 2  # N = 2
    assert all(m.shape == (3, 12) for m in out.text_masks) and all(m.shape == (3, 98) for m in out.visual_masks)
    assert all(v.shape == (3, 98, 64) for v in out.generated_visual)
    assert len(out.layer_losses) == 2  # every term present in each BGA layer
    assert all(t is not None and t > 0 for terms in out.layer_losses
               for t in (terms.recon_visual, terms.recon_text, terms.cycle_visual, terms.cycle_text,
                         terms.keep_ratio_text, terms.keep_ratio_visual))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and
               (p.grad is None or not torch.isfinite(p.grad).all())]
    assert missing == []


def test_deeper_pair_with_width_projections_trains_every_parameter():
    torch.manual_seed(0)
    model = build_model(deep_cfg().model, NUM_LABELS).train()  # MiniLM 384 + ViT 128: N = 5
    batch = make_batch(lengths=(10, 7), words=(5, 3), crops=((1, 0, 1), (0, 0, 0)), has_image=(True, True))
    loss, out = _loss(model, batch)
    assert len(out.text_masks) == 5 and len(model.visual_layers) == 5  # blocks 0..N-1
    loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()] == []


def test_no_nan_when_the_samplers_would_remove_everything(monkeypatch):
    def drop_all(self, tokens, prev_mask):
        logits = torch.zeros(*tokens.shape[:2], 2)
        logits[..., 1] = 30.0
        return logits.log_softmax(-1) + 0 * tokens.sum()  # keep the graph to the tokens
    monkeypatch.setattr(ContextSampler, "logits", drop_all)
    model, batch = tiny_model().train(), make_batch()
    loss, out = _loss(model, batch)
    assert all((m.sum(1) == 1).all() for m in out.text_masks + out.visual_masks)  # one unit forced
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_keep_ratio_terms_exist_only_with_scs():
    torch.manual_seed(0)
    batch = make_batch()
    layers = tiny_model().train()(batch).layer_losses
    # random samplers keep about half, not 0.7
    assert all(t.keep_ratio_text > 0 and t.keep_ratio_visual > 0 for t in layers) and len(layers) == 2
    torch.manual_seed(0)
    no_scs = tiny_model("model.use_scs=false").train()(batch).layer_losses
    assert all(t.keep_ratio_text is None and t.keep_ratio_visual is None for t in no_scs) and len(no_scs) == 2
    with pytest.raises(ValueError, match="keep_ratio"):
        tiny_model("model.keep_ratio=0.0")


def test_imageless_sample_has_no_generation_loss_and_no_gradient():
    model = tiny_model("model.dropout=0.0").eval()  # deterministic masks, no dropout
    batch = make_batch(lengths=(9, 12), words=(5, 6), crops=((1, 1, 0), (0, 0, 0)), has_image=(True, False))
    for key in ("image", "crops"):
        batch[key].requires_grad_(True)
    both = model(batch, visual=True)
    alone = model(select(batch, [0]), visual=True)
    # the sample without image adds nothing to any term
    torch.testing.assert_close(raw_generation_total(both), raw_generation_total(alone))
    raw_generation_total(both).backward()
    assert (batch["image"].grad[1] == 0).all() and (batch["crops"].grad[1] == 0).all()
    assert batch["image"].grad[0].abs().sum() > 0
    model.zero_grad()
    only = model(select(batch, [1]), visual=True)
    assert raw_generation_total(only).item() == 0.0
    raw_generation_total(only).backward()
    assert all(p.grad is None or (p.grad == 0).all() for p in model.parameters())


def test_image_free_inference_ignores_images_and_loads_without_visual_weights():
    model, batch = tiny_model().eval(), make_batch()
    with torch.no_grad():
        default = model(batch).emissions  # eval: image-free by default
        with_images = model(batch, visual=True).emissions
        without = model(image_free(batch)).emissions
        other = dict(batch, image=torch.randn_like(batch["image"]))
        changed_images = model(other, visual=True).emissions
    assert torch.equal(default, with_images) and torch.equal(default, without)
    assert torch.equal(default, changed_images)
    state = model.inference_state_dict()
    assert not any(k.startswith(VISUAL_ONLY) for k in state)
    slim = build_model(tiny_cfg().model, NUM_LABELS, build_visual=False, pretrained=False).eval()
    slim.load_state_dict(state)  # strict: exactly the inference weights
    assert not hasattr(slim, "visual_embed") and not hasattr(slim, "v2t")
    with torch.no_grad():
        assert torch.equal(slim(image_free(batch)).emissions, default)
    with pytest.raises(RuntimeError, match="build_visual=False"):
        slim(batch, visual=True)


def test_real_visual_inference_uses_the_images():
    model = tiny_model("model.inference_visual=real").eval()
    batch = make_batch()
    with torch.no_grad():
        real = model(batch).emissions
        other = model(dict(batch, image=torch.randn_like(batch["image"]))).emissions
    assert not torch.allclose(real[:2], other[:2])
    with pytest.raises(KeyError, match="use_images"):
        model(image_free(batch))


def test_use_mcg_false_is_exactly_bert_crf():
    bga = tiny_model()
    baseline = build_model(tiny_cfg("model.use_mcg=false").model, NUM_LABELS).eval()
    text_keys = set(baseline.state_dict())
    assert text_keys < set(bga.state_dict())  # the baseline's names are BGA-MNER's text-side names
    baseline.load_state_dict({k: v for k, v in bga.state_dict().items() if k in text_keys})
    assert set(baseline.parameter_counts()) == {"text encoder", "CRF head"}
    batch = make_batch()
    bert = load_text_encoder(TEXT_L3).eval()
    bert.load_state_dict({k.replace("text_embeddings.", "embeddings.").replace("text_layers.", "encoder.layer.")
                          .replace(".layer.attention", ".attention").replace(".layer.intermediate", ".intermediate")
                          .replace(".layer.output", ".output"): v
                          for k, v in baseline.state_dict().items() if k.startswith("text_")}, strict=False)
    with torch.no_grad():
        states = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        idx = batch["word_starts"].unsqueeze(-1).expand(-1, -1, states.shape[-1])
        expected = baseline.crf_head(states.gather(1, idx))
        out = baseline(batch)
    torch.testing.assert_close(out.emissions, expected)
    torch.testing.assert_close(out.text_states, states)  # T^N: BERT's last hidden state
    assert out.layer_losses == [] and out.text_masks == [] and out.generated_visual == []


def test_ablation_switches():
    batch = make_batch()
    no_scs = tiny_model("model.use_scs=false").train()
    out = no_scs(batch)
    assert no_scs.text_samplers is None and len(out.text_masks) == len(out.visual_masks) == 2
    for m_t, m_v in zip(out.text_masks, out.visual_masks):  # every BGA layer: all real units
        assert torch.equal(m_t, batch["attention_mask"].bool())
        assert m_v[:, :50].all() and torch.equal(m_v[:, 50:], batch["crop_mask"].repeat_interleave(16, 1))
    no_cycle = tiny_model("model.use_cycle=false").train()
    out = no_cycle(batch)
    assert len(out.layer_losses) == 2
    assert all(t.cycle_visual is None and t.cycle_text is None and t.recon_visual > 0 for t in out.layer_losses)


def test_different_depths_raise_a_clear_error():
    with pytest.raises(ValueError, match="depths must be equal"):
        tiny_model("model.visual_encoder=bga_test_vit_d6")


def test_one_small_batch_overfits():
    torch.manual_seed(0)
    model = tiny_model("model.dropout=0.0").train()
    batch = make_batch(has_image=(True, True, False))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss, _ = _loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        final = model.crf_head.nll(model(batch).emissions, batch["labels"], batch["word_mask"]).item()
    assert final < 0.1 * losses[0]
    pred = model.crf_head.decode(model(batch).emissions, batch["word_mask"])
    gold = [row[m].tolist() for row, m in zip(batch["labels"], batch["word_mask"])]
    assert pred == gold


@pytest.mark.parametrize("detach", [True, False])
def test_real_features_are_stop_gradient_targets(detach):
    """Eqs. 5/7 compare generated features with DETACHED real ones: a branch learns from the
    generation losses only through the generator it feeds (no collapse onto the generated)."""
    model = tiny_model("model.use_scs=false", "model.dropout=0.0",
                       f"model.detach_targets={str(detach).lower()}").train()
    with torch.no_grad():  # make G_v2t ignore the visual tokens: V then only enters as a target
        model.v2t.memory_proj.weight.zero_()
        model.v2t.memory_proj.bias.zero_()
    captured = {}
    hook = model.visual_layers[0].register_forward_hook(lambda m, i, o: captured.update(V=o))
    out = model(make_batch())
    hook.remove()
    total = raw_generation_total(out)
    (grad,) = torch.autograd.grad(total, captured["V"])
    assert total > 0
    assert (grad.abs().sum() == 0) == detach


def _alone(batch: dict, i: int) -> dict:
    """Tweet i as a batch of one, cut to its own length (no padding)."""
    one = select(batch, [i])
    n = int(one["attention_mask"].sum())
    return dict(one, input_ids=one["input_ids"][:, :n], attention_mask=one["attention_mask"][:, :n])


def test_a_padded_tweet_has_the_generation_terms_it_has_alone():
    """Padding is no unit anywhere (keep masks, generator memory, the v2t queries of Eqs. 4 and 6 as
    self-attention keys): each raw term of a batch is the mean of the tweets' own terms."""
    model = tiny_model("model.generator_layers=2").eval()  # deterministic masks, no dropout; the
    # second decoder layer's self-attention gets the query padding too
    batch = make_batch(lengths=(12, 7), words=(6, 4), crops=((1, 0, 1), (1, 1, 0)), has_image=(True, True))
    with torch.no_grad():
        both = model(batch, visual=True).layer_losses
        alone = [model(_alone(batch, i), visual=True).layer_losses for i in range(2)]
    for l, terms in enumerate(both):
        for name in ("recon_visual", "recon_text", "cycle_visual", "cycle_text", "keep_ratio_text",
                     "keep_ratio_visual"):
            mean = (getattr(alone[0][l], name) + getattr(alone[1][l], name)) / 2
            torch.testing.assert_close(getattr(terms, name), mean, rtol=1e-4, atol=1e-6, msg=f"layer {l} {name}")


def test_component_of_an_unknown_parameter_is_a_key_error():
    assert component_of("t2v.memory_proj.weight") == "crop pos/projections"  # the longest prefix wins
    assert component_of("t2v.queries") == "t2v generator"
    for name in ("pooler.dense.weight", "t2vx.queries"):
        with pytest.raises(KeyError, match="no known component"):
            component_of(name)


def test_parameter_counts_are_exact_sums_by_module():
    model = tiny_model()

    def n(*modules) -> int:
        return sum(p.numel() for m in modules for p in m.parameters())

    crop_pos = model.visual_embed.crop_pos_embed.numel()
    train = {"text encoder": n(model.text_embeddings, model.text_layers),
             "visual encoder": n(model.visual_embed, model.visual_layers) - crop_pos,
             "text samplers": n(model.text_samplers), "visual samplers": n(model.visual_samplers),
             "t2v generator": n(model.t2v) - n(model.t2v.memory_proj),
             "v2t generator": n(model.v2t) - n(model.v2t.memory_proj),
             "crop pos/projections": crop_pos + n(model.t2v.memory_proj, model.v2t.memory_proj,
                                                  model.visual_to_text, model.text_to_visual),
             "CRF head": n(model.crf_head)}
    assert sum(train.values()) == n(model)
    assert model.parameter_counts() == train  # the default counts training
    inference = {k: train[k] for k in ("text encoder", "text samplers", "t2v generator", "CRF head")}
    inference["crop pos/projections"] = n(model.t2v.memory_proj, model.visual_to_text)
    assert model.parameter_counts(inference=True) == inference


# ---------------------------------------------------------------- the real-context control
def _no_dropout(model):
    """Every dropout off, whatever the mode (BERT's own config has hidden/attention dropout)."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def _emissions_with_image(model, batch, image, seed=0, **kwargs):
    torch.manual_seed(seed)  # the same Gumbel draws for both images in training mode
    with torch.no_grad():
        return model(dict(batch, image=image), **kwargs).emissions


def test_text_context_real_reads_the_real_image_in_training():
    """model.text_context=real: the text layers attend to the real visual tokens in TRAINING (and
    evaluation); with the default (generated) the emissions never depend on the image."""
    batch = make_batch()
    other = torch.randn_like(batch["image"])
    real = tiny_model("model.text_context=real", "model.dropout=0.0").train()
    gen = tiny_model("model.dropout=0.0").train()
    a, b = _emissions_with_image(real, batch, batch["image"]), _emissions_with_image(real, batch, other)
    assert not torch.allclose(a[:2], b[:2])  # the two tweets with an image
    a, b = _emissions_with_image(gen, batch, batch["image"]), _emissions_with_image(gen, batch, other)
    assert torch.equal(a, b)  # the same random draws: only the (unread) image differs
    gen.eval()
    a, b = _emissions_with_image(gen, batch, batch["image"]), _emissions_with_image(gen, batch, other)
    assert torch.equal(a, b)  # eval default: image-free
    real.eval()  # and at evaluation by default (visual=None), with no image-free mode
    a, b = _emissions_with_image(real, batch, batch["image"]), _emissions_with_image(real, batch, other)
    assert not torch.allclose(a[:2], b[:2])
    with pytest.raises(KeyError, match="use_images"):
        real(image_free(batch))


def test_text_context_real_gives_the_text_layers_the_real_tokens_in_training():
    """In training the hybrid text layers get (V, keep_v), the real visual tokens of the same level:
    the training-mode output is that of a model re-tested with inference_visual=real (Table 4) on
    the same weights, once nothing is random (no dropout, no SCS)."""
    switches = ("model.use_scs=false", "model.dropout=0.0")
    model = _no_dropout(tiny_model("model.text_context=real", *switches)).train()
    batch = make_batch()
    seen, real_v = [], []
    hooks = [model.text_layers[l + 1].register_forward_pre_hook(lambda m, args: seen.append(args[2:4]))
             for l in range(model.num_bga_layers)]
    hooks.append(model.visual_layers[0].register_forward_hook(lambda m, i, o: real_v.append(o)))
    with torch.no_grad():
        trained = model(batch).emissions
    for h in hooks:
        h.remove()
    keep_v = model.visual_embed.token_mask(batch["crop_mask"])
    assert len(seen) == model.num_bga_layers
    context, context_keep = seen[0]  # layer 1 attends to the output of the plain block 0
    assert torch.equal(context, real_v[0]) and torch.equal(context_keep, keep_v)
    assert all(c is not None and c.shape == real_v[0].shape and torch.equal(k, keep_v) for c, k in seen)
    table4 = _no_dropout(build_model(tiny_cfg("model.inference_visual=real", *switches).model, NUM_LABELS,
                                     pretrained=False))
    table4.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(trained, table4.eval()(batch).emissions)
        generated = table4(batch, visual=False).emissions  # the generated context differs
    assert not torch.allclose(trained, generated)


def test_text_context_real_has_no_image_free_mode():
    batch = make_batch()
    for mode in ("train", "eval"):
        model = getattr(tiny_model("model.text_context=real"), mode)()
        with pytest.raises(ValueError, match="text_context=real.*no image-free mode"):
            model(batch, visual=False)
    with pytest.raises(ValueError, match="text_context=real needs the visual branch"):
        build_model(tiny_cfg("model.text_context=real").model, NUM_LABELS, build_visual=False, pretrained=False)
    with pytest.raises(ConfigError, match=r"model.text_context: Invalid value 'seen', expected one of "
                                          r"\[generated, real\]"):  # refused by the config's Enum
        tiny_model("model.text_context=seen")
    # BERT-CRF has no visual context: the switch changes nothing there
    crf = tiny_model("model.use_mcg=false", "model.text_context=real").eval()
    with torch.no_grad():
        crf(image_free(batch), visual=False)


def test_reads_images_for_the_real_context_control():
    from bga_mner.build import reads_images

    real = tiny_cfg("model.text_context=real")
    assert reads_images(real, "test") and reads_images(real, "fit")
    assert not reads_images(tiny_cfg(), "test")  # BGA-MNER evaluates image-free
    assert not reads_images(tiny_cfg("model.text_context=real", "model.use_mcg=false"), "test")
    assert not reads_images(tiny_cfg("model.text_context=real", "data.use_images=false"), "test")
