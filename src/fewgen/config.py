"""Configuration: frozen dataclasses, TOML presets and ``--set a.b=c`` overrides.

The keys of a TOML file mirror the dataclasses exactly. Unknown keys and values of the
wrong type are rejected with a :class:`~fewgen.errors.ConfigError` that names the key and
lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError

T = TypeVar("T")

# train.adapt_params: what fine-tuning changes (fewgen.meta.inner implements each); here, free
# of torch, so that the command line can offer the choices without importing it.
ADAPT_PARAMS = ("auto", "all", "bias", "film", "lora")
# data.task_augment: the task transforms (fewgen.tasks.augment implements each), "default" the
# modality's measured default; named here so that config validation needs no torch.
TASK_AUGMENTS = ("letters", "script", "reverse", "mix", "rot90", "flip", "invert", "channels", "hue")
# train.algo: the meta-learning algorithms (fewgen.meta implements each; scratch trains nothing), named likewise.
ALGORITHM_NAMES = ("amortized", "maml", "fomaml", "reptile", "hybrid", "transfer", "scratch")


@dataclass(frozen=True)
class DataConfig:
    """Where tasks come from and how examples are prepared."""

    spec: str = "glyphs"  # data spec string, see fewgen.tasks.spec
    image_size: int = 0  # images are resized to image_size x image_size; 0: the source's own (icons 32, others 28)
    binarize: bool = True  # threshold at 0.5 after an antialiased resize (ink = 1)
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)  # train / val / test, by group
    split_seed: int = 0
    split_file: str = ""  # optional JSON {"train": [...], "val": [...], "test": [...]} of task or group names; "" = the source's own split if it has one (words), else by split_fractions; "random" = by split_fractions always
    max_examples_per_task: int = 0  # 0 = all
    augment: bool = True  # false: no task augmentation at all (whatever task_augment says)
    task_augment: tuple[str, ...] = ("default",)  # meta-train task transforms, NAME or NAME@P (fewgen.tasks.augment): letters, script, reverse, mix | rot90, flip, invert, channels, hue; "default" = the modality's measured best
    strict: bool = False  # unreadable files are errors (default: skipped with a warning)
    cache_dir: str = ""  # where downloads and prepared data go ("" = $FEWGEN_CACHE or ~/.cache/fewgen)
    min_examples: int = 5  # icons: a task (an icon name, or a theme with by=theme) needs at least this many examples (themes that draw the name)


@dataclass(frozen=True)
class ModelConfig:
    """The generator family and its sizes."""

    family: str = "image_vae"  # see fewgen.models.FAMILIES: image_vae | image_diffusion | text_lm | text_ngram | text_transformer | hf_causal_lm
    hidden: int = 32  # base channel count (images) / hidden size (text)
    latent: int = 32  # VAE latent size
    context: int = 128  # size of the set (support) encoding
    extra: dict[str, Any] = field(default_factory=dict)  # family-specific keys: the family's Extra dataclass (e.g. fewgen.models.image_vae.ImageVAEExtra) names them, their defaults and allowed values


@dataclass(frozen=True)
class TrainConfig:
    """Episodic meta-training."""

    algo: str = "amortized"
    steps: int = 2000
    meta_batch: int = 16  # tasks per meta-batch
    shots: int = 5  # maximum support size K during meta-training
    min_shots: int = 0  # support sizes are drawn uniformly in [min_shots, shots] per task
    queries: int = 10  # query examples per task
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    ema: float | str = "auto"  # decay of a moving average of the weights used for validation and checkpoints (0 = off; e.g. 0.999); "auto" = the family's measured default (fewgen.models.weight_average: 0.999 for the diffusion model, else 0)
    inner_steps: int = 1  # gradient-based algorithms: inner-loop steps
    inner_lr: float = 1e-3  # SGD step on the support loss (nats per example: a sum over pixels)
    learn_inner_lr: bool = False  # Meta-SGD: learned per-parameter inner learning rates
    first_order: bool = False
    reptile_inner: str = "sgd"  # sgd | adam
    adapt_params: str = "auto"  # what the inner loop changes: all | bias | film | lora (fewgen.meta.inner); auto = film for maml, fomaml, reptile, hybrid, all otherwise (fewgen.meta.resolve_fine_tuning)
    lora_rank: int = 4  # adapt_params = lora: rank of the weight deltas
    inner_augment: bool = False  # images: every inner step sees a freshly jittered support
    inner_select: str = "auto"  # last | heldout: keep the inner step with the lowest held-out jittered loss; auto = heldout for maml, fomaml, reptile, hybrid, last otherwise
    inner_steps_random: bool = False  # meta-train each task with a uniform 1..inner_steps steps
    task_chunk: int = 8  # gradient-based algorithms: tasks per vmapped chunk, backward per chunk (0 = all)
    task_map: str = "auto"  # maml / fomaml / meta-sgd: how a chunk's tasks run: vmap | loop (a Python loop, ordinary autograd) | auto (loop for first order on CPU, vmap otherwise: the measured faster; fewgen.meta.maml)
    seed: int = 0
    val_every: int = 200
    val_tasks: int = 64  # meta-val tasks per validation (0 = no validation: the checkpoint holds the latest weights)
    log_every: int = 20
    ckpt_every: int = 200
    patience: int = 0  # early stopping: validations without improvement (0 = off)
    max_seconds: float = 0.0  # stop (and save) after this much training time (0 = no limit)
    clock: str = "wall"  # what max_seconds counts: wall (elapsed seconds) | cpu (this process's CPU seconds, all threads: an equal budget on a loaded machine)
    device: str = "auto"  # auto (CUDA if visible, else CPU) | cpu | cuda | cuda:N (torchrun: cuda = this process's GPU)
    compile: bool = False  # torch.compile the meta-loss (falls back to eager with a warning)
    precision: str = "fp32"  # fp32 | bf16 (bf16 autocast of the meta-loss; meant for GPUs)
    tensorboard: bool = False  # also write the metrics as TensorBoard events in RUN/tensorboard (extra: fewgen[tensorboard])


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation."""

    split: str = "test"
    shots: tuple[int, ...] = (1, 5)
    steps: tuple[int, ...] = (0,)
    importance_samples: int = 100
    chunk: int = 25  # importance samples per chunk: memory does not grow with the data
    batch_tasks: int = 8  # tasks evaluated together
    max_queries: int = 15
    finetune_lr: float = 3e-4  # Adam step size when fine-tuning models not meta-learned for it (amortized, transfer, scratch)
    max_tasks: int = 0  # 0 = all tasks of the split
    seed: int = 0
    latent: str = "fusion"  # image samplers: fusion (blends of the support's posteriors) | prior (p(z | support))
    guidance: float = 3.0  # image_diffusion: classifier-free guidance (0 = unconditional, 1 = conditional, >1 sharper; 3 measured best on held-out Omniglot)
    sample_steps: int = 10  # image_diffusion: denoising steps per sample (10, 15 and 25 DDIM steps measured equal on held-out Omniglot)
    strength: float = 1.0  # image_diffusion: 1 = samples from noise (the model's own); < 1 = variations of a shot noised to t = strength (SDEdit)
    sampler: str = "ddim"  # image_diffusion: ddim (deterministic) | ddpm (stochastic, ancestral)
    text_guidance: float = 2.0  # text_transformer: classifier-free guidance toward the support when sampling (1 = the model's own distribution, the one its NLL scores; >1 follows the support more)


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of a run; stored in every checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ----------------------------------------------------------------------------- conversion

_INT_LIMIT = 2**62  # integers are used as seeds and sizes: keep them far from int64 overflow


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for one-line error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _coerce_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ConfigError(f"config key '{key}' must be true or false, got {_short(value)}")


def _coerce_int(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"config key '{key}' must be an integer, got {_short(value)}")
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            pass
    if isinstance(value, int) and not isinstance(value, bool):
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise ConfigError(f"config key '{key}' is out of range: {_short(value)}")
        return value
    raise ConfigError(f"config key '{key}' must be an integer, got {_short(value)}")


def finite_number(value: Any, what: str) -> float:
    """The one float coercion of fewgen: ``value`` (a number or its text) as a finite float, or a
    ConfigError "``what`` must be a (finite) number". Config values and command-line options
    (:func:`fewgen.cli.common.finite_float`) both go through it, so NaN and infinities stop at parse time."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        raise ConfigError(f"{what} must be a number, got {_short(value)}")
    try:
        number = float(number)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(f"{what} must be a finite number, got {_short(value)}")
    return number


def _coerce_float(value: Any, key: str) -> float:
    return finite_number(value, f"config key '{key}'")


def _coerce_str(value: Any, key: str) -> str:
    if isinstance(value, str):
        return value
    raise ConfigError(f"config key '{key}' must be a string, got {_short(value)}")


def _coerce_tuple(value: Any, typ: Any, key: str) -> tuple:
    args = typ.__args__
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"config key '{key}' must be a list, got {_short(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(v, args[0], key) for v in value)
    if len(value) != len(args):
        raise ConfigError(f"config key '{key}' must have {len(args)} values, got {len(value)}")
    return tuple(_coerce(v, a, key) for v, a in zip(value, args))


def _coerce_dict(value: Any, key: str) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(f"config key '{key}' must be a JSON object, got {_short(value)}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"config key '{key}' must be a table, got {_short(value)}")
    return {k: _finite_leaves(v, f"{key}.{k}") for k, v in value.items()}


def _finite_leaves(value: Any, key: str) -> Any:
    """``value`` (a free-form table's entry, e.g. ``model.extra``) with every float checked finite."""
    if isinstance(value, float):
        return _coerce_float(value, key)
    if isinstance(value, dict):
        return {k: _finite_leaves(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_finite_leaves(v, f"{key}[{i}]") for i, v in enumerate(value))
    return value


_SCALARS = {bool: _coerce_bool, int: _coerce_int, float: _coerce_float, str: _coerce_str}


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _coerce_union(value: Any, members: tuple[Any, ...], key: str) -> Any:
    """A value of a union type (e.g. ``bool | str``): kept as it is when it already has one
    member's type, else the first member's coercion that accepts it. Text first tries the other
    members (``--set train.ema=0.99`` is the number 0.99, ``template=true`` the flag), else stays text."""
    if type(value) is str and str in members:
        for m in (m for m in members if m is not str):
            try:
                return _coerce(value, m, key)
            except ConfigError:
                pass
        return value
    if any(type(value) is m for m in members):
        return value
    for m in members:
        try:
            return _coerce(value, m, key)
        except ConfigError:
            pass
    names = " or ".join(_TYPE_NAMES.get(m, getattr(m, "__name__", str(m))) for m in members)
    raise ConfigError(f"config key '{key}' must be {names}, got {_short(value)}")


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert a TOML / JSON / CLI value to the dataclass field type, or raise ConfigError."""
    origin = get_origin(typ)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a table, got {_short(value)}")
        return _from_dict(typ, value, key + ".")
    if typ in _SCALARS:
        return _SCALARS[typ](value, key)
    if origin is tuple:
        return _coerce_tuple(value, typ, key)
    if origin is dict:
        return _coerce_dict(value, key)
    if origin in (Union, UnionType):
        return _coerce_union(value, get_args(typ), key)
    raise ConfigError(f"config key '{key}' has an unsupported type")  # pragma: no cover


def _from_dict(cls: type, data: dict[str, Any], prefix: str = "", owner: str = "") -> Any:
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in data.items():
        if k not in names:
            raise ConfigError(f"unknown config key '{prefix}{k}'{' for ' + owner if owner else ''}; valid keys: "
                              f"{', '.join(prefix + n for n in names) or 'none'}")
        kwargs[k] = _coerce(v, hints[k], prefix + k)
    return cls(**kwargs)


def parse_table(cls: type[T], data: dict[str, Any], prefix: str, owner: str = "") -> T:
    """The table ``data`` as the frozen dataclass ``cls``, every value converted as a config
    value is (numbers from text, ``bool | str`` unions, ...): a key ``cls`` lacks or a value of
    the wrong type is a one-line ConfigError naming ``prefix + key`` (and ``owner``, whose keys
    they are). A model family's ``model.extra`` is parsed so (:func:`fewgen.models.base.parse_extra`)."""
    return _from_dict(cls, data, prefix, owner)


# Value ranges: a value outside them would fail deep inside training or evaluation (a modulo
# by zero, an empty batch, a negative size), so it is refused here with the key's name.
_AT_LEAST = {
    "data.image_size": 0, "data.split_seed": 0, "data.max_examples_per_task": 0,
    "model.hidden": 1, "model.latent": 1, "model.context": 1,
    "train.steps": 0, "train.meta_batch": 1, "train.shots": 0, "train.min_shots": 0, "train.queries": 1,
    "train.weight_decay": 0, "train.grad_clip": 0, "train.inner_steps": 0, "train.inner_lr": 0, "train.task_chunk": 0,
    "train.lora_rank": 1,
    "train.seed": 0, "train.val_every": 1, "train.val_tasks": 0, "train.log_every": 1, "train.ckpt_every": 1,
    "train.patience": 0, "train.max_seconds": 0,
    "eval.shots": 0, "eval.steps": 0, "eval.importance_samples": 1, "eval.chunk": 1, "eval.batch_tasks": 1,
    "eval.max_queries": 1, "eval.max_tasks": 0, "eval.seed": 0, "data.split_fractions": 0,
    "eval.guidance": 0, "eval.sample_steps": 1, "eval.text_guidance": 0,
}
_AT_MOST = {"eval.guidance": 20.0, "eval.text_guidance": 20.0, "eval.sample_steps": 1000, "eval.strength": 1.0}
_POSITIVE = {"train.lr", "eval.strength"}
# Keys with a fixed set of values.
_CHOICES = {
    "train.algo": ALGORITHM_NAMES, "train.adapt_params": ADAPT_PARAMS, "train.inner_select": ("auto", "last", "heldout"),
    "train.task_map": ("auto", "vmap", "loop"),
    "train.reptile_inner": ("sgd", "adam"), "train.clock": ("wall", "cpu"), "train.precision": ("fp32", "bf16"),
    "eval.latent": ("fusion", "prior"), "eval.sampler": ("ddim", "ddpm"),
}


def _one_of(valid: tuple[str, ...]) -> str:
    """``a or b`` / ``one of a, b, c``."""
    return " or ".join(valid) if len(valid) == 2 else "one of " + ", ".join(valid)


def validate(cfg: Config) -> Config:
    """Refuse values outside their ranges (``_AT_LEAST``, ``_AT_MOST``) or choices (``_CHOICES``), and
    combinations that cannot run, with a one-line ConfigError naming the key. (``model.extra`` is
    the family's: :func:`fewgen.models.family_config` parses and validates it.)"""
    for section in dataclasses.fields(cfg):
        sub = getattr(cfg, section.name)
        for f in dataclasses.fields(sub):
            key, value = f"{section.name}.{f.name}", getattr(sub, f.name)
            values = value if isinstance(value, tuple) else (value,)
            if key in _AT_LEAST and any(v < _AT_LEAST[key] for v in values):
                raise ConfigError(f"config key '{key}' must be at least {_AT_LEAST[key]}, got {_short(value)}")
            if key in _AT_MOST and any(v > _AT_MOST[key] for v in values):
                raise ConfigError(f"config key '{key}' must be at most {_AT_MOST[key]}, got {_short(value)}")
            if key in _POSITIVE and not value > 0:
                raise ConfigError(f"config key '{key}' must be greater than 0, got {_short(value)}")
            if key in _CHOICES and value not in _CHOICES[key]:
                raise ConfigError(f"config key '{key}' must be {_one_of(_CHOICES[key])}, got {_short(value)}")
    if 0 < cfg.data.image_size < 4:
        raise ConfigError(f"config key 'data.image_size' must be 0 (the source's own size) or at least 4, "
                          f"got {cfg.data.image_size}")
    if cfg.train.min_shots > cfg.train.shots:
        raise ConfigError(f"config key 'train.min_shots' ({cfg.train.min_shots}) must not exceed "
                          f"train.shots ({cfg.train.shots})")
    if not cfg.eval.shots or not cfg.eval.steps:
        raise ConfigError("config keys 'eval.shots' and 'eval.steps' need at least one value each")
    if sum(cfg.data.split_fractions) <= 0:
        raise ConfigError("config key 'data.split_fractions' must not be all zero")
    ema = cfg.train.ema
    if ema != "auto" and (isinstance(ema, str) or not 0 <= ema < 1):
        raise ConfigError(f"config key 'train.ema' must be in [0, 1) (0 = no weight average) or \"auto\", got {ema!r}")
    if cfg.train.algo == "reptile" and cfg.train.learn_inner_lr:
        raise ConfigError("config key 'train.learn_inner_lr' (Meta-SGD) needs a differentiable inner loop, "
                          "which reptile has not: use algo maml, fomaml or hybrid")
    _check_task_augment(cfg.data.task_augment)
    return cfg


def _check_task_augment(items: tuple[str, ...]) -> None:
    """Each ``data.task_augment`` item is ``NAME`` or ``NAME@P`` with a known name and 0 < P <= 1."""
    for item in items:
        name, at, p = item.partition("@")
        if name not in TASK_AUGMENTS + ("default",):
            raise ConfigError(f"config key 'data.task_augment': unknown transform {_short(item)}; valid: "
                              f"default, {', '.join(TASK_AUGMENTS)} (each NAME or NAME@P)")
        if at:
            try:
                prob = float(p)
            except ValueError:
                prob = math.nan
            if name == "default" or not 0 < prob <= 1:
                raise ConfigError(f"config key 'data.task_augment': {_short(item)} needs a probability "
                                  f"in (0, 1] after '@', e.g. {name}@0.5")


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a :class:`Config` from a nested dict (TOML or JSON), validating every key and value."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a table of sections, got {_short(data)}")
    return validate(_from_dict(Config, data))


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The nested-dict (JSON-safe) form of a config."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def load_config(path: str | Path) -> Config:
    """Load a TOML preset; missing keys keep their defaults."""
    import tomllib  # imported where TOML is read: most commands read none

    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    try:
        return config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def _parse_scalar(text: str) -> Any:
    """A --set value: TOML syntax when it parses (numbers, booleans, lists), else a string."""
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` overrides (``model.extra.key=value`` also works)."""
    data = config_to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {_short(item)} must look like section.key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) < 2 or parts[0] not in data:
            raise ConfigError(f"unknown config key '{key}'; sections: {', '.join(data)}")
        node = data
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], dict):
                valid = ", ".join(sorted(node)) if isinstance(node, dict) else ""
                raise ConfigError(f"unknown config key '{key}'; valid here: {valid}")
            node = node[p]
        is_extra = parts[-2] == "extra"
        if parts[-1] not in node and not is_extra:
            raise ConfigError(
                f"unknown config key '{key}'; valid keys: {', '.join(parts[0] + '.' + k for k in node)}"
            )
        value = _parse_scalar(text.strip())
        if isinstance(node.get(parts[-1]), str) and not isinstance(value, str):
            value = text.strip()  # a string key takes the text as written (e.g. a path "2024")
        node[parts[-1]] = value
    return config_from_dict(data)


def replace(cfg: Config, **sections: dict[str, Any]) -> Config:
    """Return a copy of ``cfg`` with some fields of some sections replaced, e.g.
    ``replace(cfg, train={"steps": 10})``."""
    new = {}
    for name, changes in sections.items():
        new[name] = dataclasses.replace(getattr(cfg, name), **changes)
    return dataclasses.replace(cfg, **new)
