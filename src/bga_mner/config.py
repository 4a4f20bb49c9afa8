"""Configuration: typed sections with their defaults, and one merge of experiment, profile and dotlist.

The dataclasses below are the ONLY place where a default is written; their defaults are the
paper's hyper-parameters (Sec. 4.2). Merge order (later wins)::

    Config() defaults -> experiment config.yaml -> conf/profiles/<profile>.yaml -> key=value overrides

The profile comes after the experiment so that ``PROFILE=smoke`` swaps data set and backbones for
tiny ones while keeping the experiment's switches (ablations etc.). Every merge is typed and in
struct mode: an unknown key or a value of the wrong type is a :class:`ConfigError` that names the
source, the key and (for a typo) the closest valid key. Values are checked too, before any command
creates anything (:func:`check_values`): a switch is an Enum field (``model.inference_visual``
takes ``generated`` or ``real``), a count or a rate has its range next to its default
(:func:`ranged`), and a run name is a name, not a path (the rules: ``config_values``); each
refusal is one line naming the key, the value and what is allowed.

The network takes :class:`ModelConfig` and the data module :class:`DataConfig`
(``section(cfg, "model")`` turns a merged section into its dataclass, interpolations resolved).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from omegaconf import II, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from bga_mner.config_values import (OBJECT_SOURCES, PRECISIONS, PROFILES, Choice, ConfigError,  # noqa: F401
                                    ObjectColours, ObjectSource, Profile, Visual, WandbMode, check_fields,
                                    check_node, check_run_name, choice, ranged)

CONF_DIR = Path(__file__).parent / "conf"


@dataclass(frozen=True)
class SynthConfig:
    """``data.synthetic``: parameters of the generated set (data/synthetic.py; all of them enter its
    cache key, ``synthetic.digest``)."""

    train: int = ranged(600, 1)
    valid: int = ranged(150, 1)
    test: int = ranged(150, 1)
    seed: int = 13
    image_size: int = ranged(224, 32)  # square images (smaller ones leave boxes without area)
    no_image_rate: float = ranged(0.1, 0, 1)   # tweets without an image file
    neutral_rate: float = ranged(0.3, 0, 1)    # tweets from a type-neutral template
    ambiguous_rate: float = ranged(0.7, 0, 1)  # of those, the share filled with an ambiguous name
    cue_rate: float = ranged(0.3, 0, 1)        # tweets with a "( pic : <object> )" cue
    names_per_type: int | None = None  # draw from only the first n names of each type and n
                                       # ambiguous names (None: all): names recur, appearance is
                                       # learnable from few tweets (the retrieval test)
    unseen_names: int = 0        # per type, the last n of the names drawn from (all, or the first
                                 # names_per_type) are held out: test-only names (never ambiguous)
    unseen_rate: float = ranged(0.3, 0, 1)  # a test entity's (non-ambiguous) name is held out with this rate
    image_told_cues: bool = True  # false: no "( pic : <word> )" cue in a tweet with an ambiguous name
    object_colours: ObjectColours = ObjectColours.name  # an entity object's colour: "name" (keyed on its name, the same
                                  # for every type of an ambiguous name) | "type" (its type's hue,
                                  # shaded by its name; distractors grey): the type is visible as colour

    # the fewest names of a type in data/synthetic.py NAMES (MISC; tests/test_synthetic.py checks it)
    _FEWEST_NAMES = 15

    def __post_init__(self) -> None:
        check_fields(type(self), lambda name: getattr(self, name))
        if self.names_per_type is not None and self.names_per_type < 1:
            raise ConfigError(f"names_per_type={self.names_per_type}: need at least one name per type")
        usable = min(self._FEWEST_NAMES, self.names_per_type or self._FEWEST_NAMES)
        if not 0 <= self.unseen_names < usable:
            raise ConfigError(f"unseen_names={self.unseen_names}: need 0 <= unseen_names < {usable} (the "
                              "names a type can draw from, names_per_type or all), so that at least "
                              "one name per type is seen in training")
        if self.object_colours not in tuple(ObjectColours):
            raise ConfigError(f"object_colours={self.object_colours!r}: need one of "
                              f"{', '.join(c.value for c in ObjectColours)}")


@dataclass
class DataConfig:
    """``data:``: which tweets, images and objects, and how they are batched."""

    name: str = "synthetic"            # synthetic | twitter2015 | twitter2017
    root: Optional[str] = None         # folder with {train,valid,test}.txt (None: <paths.data_dir>/<name>)
    images_dir: Optional[str] = None   # folder of <IMGID>.jpg (None: <root>/images)
    objects_file: Optional[str] = None  # detector output, JSONL (None: <root>/objects.jsonl)
    # the K object inputs: auto | detections (objects_file) | grounding | rcnn (the HVPNeT/MKGformer
    # release's crops) | none; auto: the first present of detections, rcnn, grounding (docs/data.md)
    object_source: ObjectSource = ObjectSource.auto
    type_map: Dict[str, str] = field(default_factory=lambda: {"OTHER": "MISC"})  # 2015 writes OTHER
    max_length: int = ranged(128, 3)   # WordPiece tokens including [CLS] and [SEP]
    num_objects: int = ranged(3, 0)    # top-K detected objects per image (K)
    global_size: int = ranged(224, 1)  # global image side
    crop_size: int = ranged(128, 1)    # object crop side (a multiple of the ViT patch)
    use_images: bool = True            # false: text only (decided once by build.decide_images)
    train_limit: Optional[int] = ranged(None, 1)  # data-limited training: n tweets, seeded (Fig. 5)
    train_limit_fill: bool = False     # with train_limit: an epoch draws as many tweets as the full
                                       # train split (the n repeated, reshuffled each pass), so a
                                       # data-limited run takes the full set's steps
    modality_missing: bool = False     # every test image replaced by one uniform empty image (Table 7)
    test_name: Optional[str] = None    # cross-domain (Table 6): test on another data set
    test_root: Optional[str] = None
    batch_size: int = ranged(16, 1)
    eval_batch_size: int = ranged(32, 1)
    # pad each batch's token axis (and word axis) to the smallest of these lengths that holds it, so
    # that a compiled network sees few shapes (None: pad to the batch's longest); e.g. [32, 64, 128]
    length_buckets: Optional[List[int]] = None
    num_workers: int = ranged(0, 0)
    cache_dir: Optional[str] = None    # on-disk image tensor cache (None: <paths.cache_dir>/images)
    # the generated set of name=synthetic
    synthetic: SynthConfig = field(default_factory=SynthConfig)

    def __post_init__(self) -> None:
        if self.objects_file and self.object_source not in ("auto", "detections"):
            raise ConfigError(f"data.objects_file={self.objects_file!r} is read with data.object_source="
                              f"detections (or auto), not {self.object_source}")
        buckets = self.length_buckets
        if buckets is not None and (not buckets or any(int(b) < 3 for b in buckets)
                                    or list(buckets) != sorted(set(buckets))):
            raise ConfigError(f"data.length_buckets={list(buckets)}: need increasing lengths of at "
                              "least 3 word pieces ([CLS], a word, [SEP]), e.g. [32, 64, 128]")


@dataclass
class ModelConfig:
    """``model:``: backbones, switches and the sizes of the new modules (Sec. 3)."""

    text_encoder: str = "bert-base-uncased"  # hub id, local path or registered name (backbones.py)
    visual_encoder: str = "vit_base_patch32_clip_224.openai"  # timm name
    visual_pretrained: bool = True     # load the timm weights (false: random init)
    visual_checkpoint: Optional[str] = None  # local file of timm weights (offline machines)
    text_pretrained: bool = True       # false: random init from the encoder's config
    use_mcg: bool = True               # false: exactly the BERT-CRF baseline
    use_scs: bool = True               # false: all-ones masks
    use_cycle: bool = True             # the cycle-consistency loss (Eqs. 6-7)
    inference_visual: Visual = Visual.generated  # generated | real (Table 4)
    text_context: Visual = Visual.generated  # generated | real: what the text layers attend to in
                                       # training AND evaluation (real: the real-context control, not in the paper)
    generator_layers: int = ranged(1, 1)       # transformer decoder layers per generator
    generator_ffn_dim: int = ranged(2048, 1)   # FFN width of a generator layer (nn.TransformerDecoderLayer's)
    sampler_hidden_ratio: float = ranged(0.5, 0, open_low=True)  # hidden width of the sampler MLPs / d (DynamicViT: d/2)
    gumbel_tau: float = ranged(1.0, 0, open_low=True)
    alpha: float = ranged(0.001, 0)    # weight of the generation losses (Eq. 11)
    detach_targets: bool = True        # real features are stop-gradient targets of Eqs. 5/7
    keep_ratio: float = ranged(0.7, 0, 1, open_low=True)  # share of units each sampler is asked to keep (DynamicViT's rho)
    ratio_weight: float = ranged(10.0, 0)  # weight of the samplers' keep-ratio loss (Eq. 11, system.py)
    dropout: float = ranged(0.1, 0, 1, open_high=True)
    max_length: int = II("data.max_length")    # Nt: textual queries of the image->text generator
    num_objects: int = II("data.num_objects")  # K crops -> Nv = 50 + 16 K visual tokens (B/32)
    crop_size: int = II("data.crop_size")


@dataclass
class OptimConfig:
    """``optim:``: AdamW with linear warm-up; a rate left None is ``lr``, 0 holds a group fixed."""

    lr: float = ranged(3.0e-5, 0, open_low=True)
    visual_lr: Optional[float] = ranged(None, 0)  # visual encoder (0: fixed, e.g. a random-init stand-in ViT)
    # emission layer and CRF transitions (from scratch): 1e-3, chosen on Twitter-2015 dev F1 over
    # 3e-5 (= lr) with the encoder at the paper's 3e-5 (docs/implementation_notes.md)
    head_lr: Optional[float] = ranged(1.0e-3, 0)
    crf_lr: Optional[float] = ranged(1.0e-3, 0)
    new_lr: Optional[float] = ranged(None, 0)  # samplers, generators, projections
    weight_decay: float = ranged(0.01, 0)
    warmup_ratio: float = ranged(0.01, 0, 1)


@dataclass
class TrainerConfig:
    """``trainer:``: keyword arguments of ``lightning.Trainer`` (Lightning's meaning and defaults)."""

    max_epochs: int = ranged(30, 1)
    accelerator: str = "auto"          # checked against Lightning's before a run starts (build.check_devices)
    devices: Any = 1                   # int, list of ids or "auto"
    strategy: str = "auto"
    num_nodes: int = ranged(1, 1)
    precision: str = choice("32-true", PRECISIONS)
    gradient_clip_val: Optional[float] = ranged(1.0, 0)
    limit_train_batches: Any = None    # int: batches, float: share (Lightning's rule)
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    accumulate_grad_batches: int = ranged(1, 1)
    check_val_every_n_epoch: int = ranged(1, 1)
    num_sanity_val_steps: Optional[int] = ranged(None, -1)  # -1: the whole dev set
    log_every_n_steps: int = ranged(10, 1)
    enable_progress_bar: bool = True
    enable_model_summary: bool = True
    deterministic: Any = True          # bool or "warn" (docs/gpu.md: no op of a step raises on CUDA)
    # not a Lightning argument: torch.compile the network (build.compile_network; docs/gpu.md)
    compile: bool = False

    def __post_init__(self) -> None:
        # limit_*_batches: Lightning's rule, an int (batches) >= 0 or a float (share) in [0, 1]
        for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or value < 0 or (isinstance(value, float) and value > 1)):
                raise ConfigError(f"{key}={value!r}: must be a number of batches (an int, at least 0) "
                                  "or a share of them (a float in [0, 1])")


@dataclass
class LoggingConfig:
    """``logging:``: CSV always; Weights & Biases unless ``wandb`` is false."""

    wandb: bool = True
    wandb_project: str = "bga-mner"
    wandb_mode: WandbMode = WandbMode.offline  # env WANDB_MODE wins (online uploads)
    group: Optional[str] = None        # default: the experiment (else the data set)
    tags: List[str] = field(default_factory=list)


@dataclass
class PathsConfig:
    """``paths:``: where data sets, runs and caches live."""

    data_dir: str = "../shared/data"
    runs_dir: str = "runs"
    cache_dir: str = ".cache"


@dataclass
class RunConfig:
    """``run:``: the run's identity."""

    name: Optional[str] = None         # a folder name (not a path) under paths.runs_dir; None:
                                       # <experiment or data.name>-<model>-seed<seed>-<timestamp>
    experiment: Optional[str] = None
    profile: Profile = Profile.full    # full | smoke | rehearsal (make rehearsal)
    git_commit: Optional[str] = None   # set by fit: the commit the run starts from ("-dirty")


@dataclass
class Config:
    """The whole config of a run."""

    seed: int = ranged(42, 0, 2**32 - 1)  # numpy's seeds
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    run: RunConfig = field(default_factory=RunConfig)



def check_values(cfg: DictConfig) -> DictConfig:
    """Check the values of a merged config, before anything is built or created: each field's
    range (:func:`ranged`) and words (:func:`choice`; Enum fields are checked by the merge
    itself), the sections' own rules (``__post_init__``: ``data.length_buckets``, the synthetic
    set's name counts, ``trainer.limit_*_batches``), and that ``run.name`` is a folder name.

    Args:
        cfg: a typed config (:func:`load_config`, :func:`from_container`, :func:`merge`).

    Returns:
        ``cfg``.

    Raises:
        ConfigError: one line naming the key, the value and what is allowed.
    """
    check_node(cfg, Config)
    check_run_name(cfg.run.name)
    return cfg


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python (switches as their words, not Enum members): what goes
    into results.json, checkpoints (read with ``weights_only=True``) and W&B."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def _explain(err: OmegaConfBaseException, schema: DictConfig, source: str) -> str:
    """One line: the source, the key and what is wrong (with the closest valid key for a typo)."""
    key = str(getattr(err, "full_key", None) or getattr(err, "key", None) or "?")
    if isinstance(err, ConfigKeyError):
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(schema, parent) if parent else schema
        valid = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
        close = difflib.get_close_matches(leaf, valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{parent + '.' if parent else ''}{close[0]}'?" if close else \
            f"; valid keys{' of ' + parent if parent else ''}: {', '.join(valid)}"
        return f"{source}: unknown config key '{key}'{hint}"
    what = str(getattr(err, "msg", err)).splitlines()[0]
    return f"{source}: {key}: {what}"


def merge(cfg: DictConfig, other: Any, source: str) -> DictConfig:
    """``cfg`` with ``other`` merged over it, typed and strict.

    Args:
        cfg: a typed config (from :func:`schema` or an earlier merge).
        other: a DictConfig, dict or dataclass of overrides.
        source: what ``other`` is (a file name, "overrides"), named in errors.
    """
    try:
        return OmegaConf.merge(cfg, other)
    except (ConfigKeyError, ValidationError) as err:
        raise ConfigError(_explain(err, cfg, source)) from None


def schema() -> DictConfig:
    """The typed defaults (:class:`Config`), in struct mode."""
    cfg = OmegaConf.structured(Config)
    OmegaConf.set_struct(cfg, True)
    return cfg


def from_container(data: Mapping[str, Any] | DictConfig, source: str = "config") -> DictConfig:
    """A typed config from a plain (saved) config: a run's config.yaml or a checkpoint's (values
    checked, :func:`check_values`)."""
    return check_values(merge(schema(), data, source))


def section(cfg: DictConfig, name: str) -> Any:
    """The ``name`` section of a merged config as its dataclass (interpolations resolved)."""
    return OmegaConf.to_object(cfg[name])


def _load_yaml(path: Path, what: str) -> DictConfig:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    import yaml

    try:
        top = yaml.safe_load(path.read_text(encoding="utf-8"))
        if top is not None and not isinstance(top, dict):  # OmegaConf reads a lone word as a key
            raise ConfigError(f"{path}: a {what} is a mapping of sections (e.g. 'model:' and its "
                              f"keys), not a {type(top).__name__} at the top level")
        return OmegaConf.load(path)
    except ConfigError:
        raise
    except Exception as err:  # yaml.YAMLError carries the line and column
        raise ConfigError(f"{path}: not a valid YAML config ({err})".replace("\n", " ")) from None


def _dotlist(overrides: Sequence[str]) -> DictConfig:
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(f"overrides {list(overrides)}: {err}".replace("\n", " ")) from None


def load_config(config_file: str | Path | None = None, overrides: Sequence[str] = (),
                profile: str | None = None) -> DictConfig:
    """Merge the defaults, an experiment, a profile and dotlist overrides into one typed config.

    Args:
        config_file: an experiment ``config.yaml`` of overrides (or a full merged config saved by a run).
        overrides: ``key=value`` strings (OmegaConf dotlist), applied last.
        profile: ``full`` or ``smoke``; default: ``run.profile`` after the other merges.

    Raises:
        ConfigError: an unknown key, a value of the wrong type or out of its range
            (:func:`check_values`), naming the source or the key.
    """
    cfg = schema()
    if config_file is not None:
        path = Path(config_file)
        cfg = merge(cfg, _load_yaml(path, "config file"), str(path))
        if cfg.run.experiment is None and path.name == "config.yaml":
            cfg.run.experiment = path.parent.name
    dotlist = _dotlist(overrides)
    if profile is None:
        profile = merge(cfg, dotlist, "overrides").run.profile
    if str(profile) not in PROFILES:
        raise ConfigError(f"unknown profile {str(profile)!r}; expected one of {', '.join(PROFILES)}")
    if profile != Profile.full:
        path = CONF_DIR / "profiles" / f"{profile}.yaml"
        cfg = merge(cfg, _load_yaml(path, "profile"), str(path))
    cfg = merge(cfg, dotlist, "overrides")
    cfg.run.profile = Profile(str(profile))
    return check_values(cfg)


def load_overrides(config_file: str | Path | None, overrides: Sequence[str] = ()) -> DictConfig:
    """A config file and ``key=value`` overrides to merge over another config (a checkpoint's:
    ``bga-mner test``), checked against the schema now, before the command creates anything:
    keys, types and values (merged over the defaults; :func:`check_values`).

    Args:
        config_file: a YAML mapping of overrides, or None.
        overrides: ``key=value`` strings, applied after the file.

    Returns:
        The overrides alone (untyped), file then dotlist.
    """
    out = _load_yaml(Path(config_file), "config file") if config_file is not None else OmegaConf.create()
    dotlist = _dotlist(overrides)
    check_values(merge(merge(schema(), out, str(config_file)), dotlist, "overrides"))
    return OmegaConf.merge(out, dotlist)


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (what each run saves beside its results)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def real_context(cfg: DictConfig) -> bool:
    """Whether ``cfg`` is BGA-MNER with ``model.text_context=real`` (the real-context control): its
    text layers attend to the real visual tokens in training and evaluation, so it reads images."""
    return bool(cfg.model.use_mcg) and cfg.model.text_context == "real"
