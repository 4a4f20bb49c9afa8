"""The values a config key may take, beside its default (imports only ``errors`` and omegaconf).

* a switch is a ``str`` Enum (:class:`Choice`): OmegaConf's merge refuses any other word, naming
  the key, the word and the allowed ones, and the members compare equal to, print as and are
  saved as their words (``Visual.real == "real"``; a saved ``config.yaml`` with ``real`` loads);
* a count, a rate or a weight has a range (:func:`ranged`), a word that no Enum can name (a
  Lightning precision, ``32-true``) its list (:func:`choice`);
* :func:`check_node` checks a merged section against them, then its dataclass's own rules
  (``__post_init__``); :func:`check_run_name` that ``run.name`` is a folder name.

``config.check_values`` applies them to a whole config before any command creates anything.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from bga_mner.errors import UserError


class ConfigError(UserError, ValueError):
    """A config key or value that the schema does not allow (message: source, key, suggestion)."""


class Choice(str, Enum):
    """A switch's allowed words: a ``str`` Enum whose members compare equal to their words
    (``Visual.real == "real"``), print as them, and are saved as them (config.yaml, results.json,
    checkpoints: ``config.to_plain``). A saved config's plain words load back as members."""

    def __str__(self) -> str:
        return str(self.value)


class Visual(Choice):
    """``model.inference_visual`` (Table 4) and ``model.text_context``: generated or real visual tokens."""

    generated = "generated"
    real = "real"


class Profile(Choice):
    """``run.profile``: ``full`` (the paper's settings), ``smoke`` (conf/profiles/smoke.yaml) or
    ``rehearsal`` (conf/profiles/rehearsal.yaml, make rehearsal)."""

    full = "full"
    smoke = "smoke"
    rehearsal = "rehearsal"


class ObjectSource(Choice):
    """``data.object_source``: where the K object inputs come from (data/image_sources.py, docs/data.md)."""

    auto = "auto"              # the first present of detections, rcnn, grounding
    detections = "detections"  # data.objects_file: boxes cut from the image
    grounding = "grounding"    # the HVPNeT/MKGformer release's visual-grounding crops
    rcnn = "rcnn"              # the release's Faster R-CNN crops
    none = "none"              # no objects: the global image only


class WandbMode(Choice):
    """``logging.wandb_mode``: W&B's modes."""

    online = "online"
    offline = "offline"
    disabled = "disabled"


class ObjectColours(Choice):
    """``data.synthetic.object_colours``."""

    name = "name"
    type = "type"


PROFILES = tuple(p.value for p in Profile)
OBJECT_SOURCES = tuple(s.value for s in ObjectSource)
# trainer.precision: Lightning's precision names (lightning.fabric.connector._PRECISION_INPUT)
PRECISIONS = ("transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true",
              "bf16-mixed", "32-true", "64-true", "64", "32", "16", "bf16")


@dataclass(frozen=True)
class Range:
    """The numbers a config value may take (None: unbounded on that side)."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def admits(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def __str__(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.high is None:
            return f"{'above' if self.open_low else 'at least'} {low}"
        if self.low is None:
            return f"{'below' if self.open_high else 'at most'} {high}"
        return f"in {'(' if self.open_low else '['}{low}, {high}{')' if self.open_high else ']'}"


def _number(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def ranged(default: Any, low: float | None = None, high: float | None = None, *,
           open_low: bool = False, open_high: bool = False) -> Any:
    """A dataclass field whose value must lie in a range (None, where the type allows it, is
    always accepted): ``max_epochs: int = ranged(30, 1)`` (at least 1), ``dropout: float =
    ranged(0.1, 0, 1, open_high=True)`` (in [0, 1)). :func:`check_values` enforces it."""
    return field(default=default, metadata={"range": Range(low, high, open_low, open_high)})


def choice(default: str, allowed: Sequence[str]) -> Any:
    """A ``str`` field that takes one of ``allowed`` (for words an Enum cannot name, e.g.
    ``trainer.precision``'s ``32-true``)."""
    return field(default=default, metadata={"choices": tuple(allowed)})


def check_fields(cls: type, get: Callable[[str], Any], prefix: str = "") -> None:
    """Raise :class:`ConfigError` for the first field of dataclass ``cls`` whose value (``get(name)``)
    is outside its :func:`ranged` range or :func:`choice` words.

    Args:
        cls: the dataclass.
        get: the value of a field by name (of an instance, or of a merged section).
        prefix: the section's key with a dot (``data.``), for the message.
    """
    for f in fields(cls):
        if "range" not in f.metadata and "choices" not in f.metadata:
            continue
        value, key = get(f.name), f"{prefix}{f.name}"
        if value is None:
            continue
        allowed = f.metadata.get("choices")
        if allowed is not None and str(value) not in allowed:
            raise ConfigError(f"{key}={value!r}: must be one of {', '.join(allowed)}")
        span = f.metadata.get("range")
        if span is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                 or not span.admits(value)):
            raise ConfigError(f"{key}={value!r}: must be {span}")


def check_node(node: DictConfig, cls: type, prefix: str = "") -> None:
    """:func:`check_fields` of a merged section and its subsections (deepest first), then the
    rules of each subsection's ``__post_init__`` (by building its dataclass).

    Args:
        node: the merged section (the whole config for ``Config``).
        cls: its dataclass.
        prefix: its key with a dot (``data.``; empty for the whole config).

    Raises:
        ConfigError: naming the key (with ``prefix``), the value and what is allowed.
    """
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            check_node(node[f.name], hints[f.name], f"{prefix}{f.name}.")
    check_fields(cls, lambda name: node[name], prefix)
    if hasattr(cls, "__post_init__") and prefix:
        try:
            OmegaConf.to_object(node)
        except ConfigError as err:  # a section's own rule; its message starts with the field
            text = str(err)
            raise ConfigError(text if text.startswith(prefix) else prefix + text) from None


def check_run_name(name: str | None) -> None:
    """``run.name`` is the name of a folder under ``paths.runs_dir``: not a path (no ``/``), not
    ``.`` or ``..``, not empty. None (a name is made up) is fine.

    Raises:
        ConfigError: naming the value.
    """
    if name is None:
        return
    text = str(name)
    if not text.strip() or text in (".", "..") or "/" in text or "\\" in text or "\0" in text:
        raise ConfigError(f"run.name={text!r}: must be a folder name under paths.runs_dir, not a path "
                          "(no '/', not '.' or '..'); the runs folder is paths.runs_dir")
