"""Typed training configs (GRPO and SFT): YAML files plus ``key=value`` overrides, validated in one place.

Sections mirror what a person tunes: ``model`` (checkpoint, dtype, quantization, frozen vision tower),
``lora``, ``data``, ``reward`` (GRPO only), ``diagnostics`` (held-out evaluation during training) and
``train`` (the trainer's knobs). ``train`` is TRL-native: besides the typed keys below, any field of
TRL's ``GRPOConfig`` / ``SFTConfig`` (and so of ``transformers.TrainingArguments``) passes through
unchanged and TRL validates its value (``train.lr_scheduler_type=cosine train.warmup_ratio=0.05``).
Unknown keys in any section are errors with a "did you mean", so a typo never silently trains with a
default. Configs are files or names of the shipped ones (``--config sft``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from differad_edge.errors import ConfigError
from differad_edge.prompts import DEFAULT_TRAIN_TEMPLATE, PROMPT_FILE, PromptTemplate, get_template

from .rewards import DCLRParams

#: LoRA targets: the attention and MLP projections of the language model (the vision tower stays frozen).
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def did_you_mean(key: str, known: list[str] | tuple[str, ...] | set[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known names, or an empty string."""
    close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        """Unknown keys name the closest known one, before pydantic's generic "extra inputs" message."""
        if isinstance(data, dict) and cls.model_config.get("extra") == "forbid":
            for key in data:
                if key not in cls.model_fields:
                    raise ValueError(
                        f"unknown key {key!r}{did_you_mean(str(key), set(cls.model_fields))}; "
                        f"known: {', '.join(cls.model_fields)}"
                    )
        return data


class ModelSection(_Section):
    path: str = Field("", description="local Qwen3-VL checkpoint folder (config.json + safetensors)")
    dtype: Literal["fp32", "bf16", "fp16"] = Field("bf16", description="weights/compute dtype")
    quant: Literal["nf4", "int8"] | None = Field(None, description="bitsandbytes quantization (QLoRA); needs lora")
    freeze_vision: bool = Field(True, description="keep the vision encoder frozen (paper setting)")
    gradient_checkpointing: bool = Field(False, description="trade compute for memory")
    max_pixels: int | None = Field(None, ge=4096, description="cap pixels per image in the processor")


class LoraSection(_Section):
    enabled: bool = True
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))


class DataSection(_Section):
    pairs: str = Field("", description="pairs JSONL (differad_edge.dataset format)")
    template: str = Field(
        DEFAULT_TRAIN_TEMPLATE,
        description="prompt template: an id, a template JSON file, "
        "or 'model' (the differad_prompt.json stored with model.path)",
    )
    paraphrase: bool = Field(True, description="draw the instruction from the 20 paraphrases")
    seed: int = 0
    limit: int | None = Field(None, ge=1, description="use only the first N pairs")


class DiagnosticsSection(_Section):
    """Held-out evaluation during training: the project's metrics beside trivial baselines, and the image-use check."""

    enabled: bool = Field(True, description="evaluate on a held-out split at train begin, every `steps` and at the end")
    eval_pairs: str | None = Field(
        None, description="held-out pairs JSONL (default: split eval_fraction off data.pairs)"
    )
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of data.pairs held out when no eval_pairs")
    min_train: int = Field(8, ge=1, description="split only when at least this many pairs remain for training")
    max_eval: int = Field(32, ge=2, description="held-out pairs scored per evaluation (generation is slow)")
    steps: int = Field(50, ge=1, description="evaluate every N optimizer steps")
    max_new_tokens: int | None = Field(
        None,
        ge=1,
        description="answer length limit on the held-out pairs (default: "
        "train.max_completion_length for GRPO, 256 with <think>, else 32)",
    )
    image_check: bool = Field(True, description="loss on real vs shuffled image pairs (does the model look?)")


class RewardSection(_Section):
    variant: Literal["dclr", "dclr_code", "iou", "iou_authors", "center", "center_authors"] = "dclr"
    alpha: float = 0.6
    lam: float = 0.3
    tau: float = 0.3
    delta: float = 0.0
    format_weight: float = Field(1.0, ge=0.0)
    loc_weight: float = Field(1.0, ge=0.0)
    extra: list[str] = Field(default_factory=list, description="extra reward functions as 'module:function'")
    extra_weights: list[float] | None = None

    def params(self) -> DCLRParams:
        return DCLRParams(alpha=self.alpha, lam=self.lam, tau=self.tau, delta=self.delta)


#: TrainingArguments keys set from other sections (or by the runner): where to set them instead.
RESERVED_TRAIN_KEYS = {
    "output_dir": "the top-level output_dir",
    "bf16": "model.dtype",
    "fp16": "model.dtype",
    "gradient_checkpointing": "model.gradient_checkpointing",
    "reward_weights": "reward.format_weight/loc_weight",
    "remove_unused_columns": None,
    "max_completion_length": None,
}


class _TrainCommon(_Section):
    """Typed trainer knobs; any other ``GRPOConfig``/``SFTConfig`` field passes through to TRL as it is."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    trl_config: ClassVar[str] = ""

    learning_rate: float = Field(gt=0.0)
    per_device_train_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(2, ge=1)
    num_train_epochs: float = Field(1.0, gt=0.0)
    max_steps: int = Field(-1, description="> 0 overrides num_train_epochs")
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(500, ge=1)
    save_total_limit: int | None = Field(None, ge=1, description="keep only the last N checkpoints (default: all)")
    seed: int = 0
    use_cpu: bool = Field(False, description="set automatically (with model.dtype=fp32) when no CUDA device is found")
    deepspeed: str | None = Field(None, description="DeepSpeed JSON (ZeRO-3), launched with accelerate")
    report_to: list[str] = Field(default_factory=list, description="tensorboard / wandb (extras of the same name)")
    dataloader_num_workers: int = Field(0, ge=0)
    resume_from_checkpoint: bool | str | None = Field(
        None, description="true: the last checkpoint in OUTPUT/checkpoints; or a checkpoint folder"
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        trl = trl_fields(cls.trl_config)
        data = dict(data)
        for key in list(data):
            if key in cls.model_fields:
                continue
            if key in trl:
                data[key] = _yaml_bool_fix(data[key], trl[key])
            if key in RESERVED_TRAIN_KEYS:
                where = RESERVED_TRAIN_KEYS[key]
                raise ValueError(f"{key!r} is set by the runner" + (f"; set {where} instead" if where else ""))
            if key not in trl:
                raise ValueError(
                    f"unknown key {key!r}{did_you_mean(str(key), set(cls.model_fields) | set(trl))}; "
                    f"expected a key listed by `differad-train {cls.trl_config[:-6].lower()} --help` "
                    f"or any field of trl.{cls.trl_config}"
                )
        return data

    def trl_extra(self) -> dict[str, Any]:
        """The pass-through keys (not typed here), exactly as given: TRL validates them."""
        return dict(self.model_extra or {})


@functools.cache
def trl_fields(config_class: str) -> dict[str, Any]:
    """Field name -> type of ``trl.GRPOConfig`` / ``trl.SFTConfig`` (TrainingArguments included)."""
    try:
        import trl
    except ImportError:  # without the train extra nothing can train anyway; accept the key
        return {}
    return {f.name: f.type for f in dataclasses.fields(getattr(trl, config_class))}


_YAML_BOOL_WORDS = {"yes": True, "no": False, "on": True, "off": False, "true": True, "false": False}


def _yaml_bool_fix(value: Any, field_type: Any) -> Any:
    """YAML reads ``no`` as False: give string fields (``eval_strategy: no``) their word back, and bool
    fields a bool for ``yes``/``no``/``on``/``off`` (TRL does not convert strings)."""
    is_bool = field_type is bool or field_type == "bool"
    if isinstance(value, bool) and not is_bool and "str" in str(field_type):
        return "no" if value is False else "yes"
    if isinstance(value, str) and is_bool and value.lower() in _YAML_BOOL_WORDS:
        return _YAML_BOOL_WORDS[value.lower()]
    return value


class GRPOSettings(_TrainCommon):
    trl_config: ClassVar[str] = "GRPOConfig"
    learning_rate: float = Field(1e-6, gt=0.0)
    num_generations: int = Field(8, ge=2, description="G, completions per prompt")
    temperature: float = Field(0.9, gt=0.0)
    max_completion_length: int = Field(256, ge=1)
    beta: float = Field(0.0, ge=0.0, description="KL coefficient (TRL default 0)")
    loss_type: str = "dapo"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    resample: bool = Field(True, description="regenerate groups whose rewards are all equal (solved ones never)")
    resample_on: Literal["loc", "total"] = Field("loc", description="judge flatness on R_loc (authors) or R total")
    max_resample_rounds: int = Field(2, ge=0)
    resample_eps: float = Field(1e-6, ge=0.0)
    zero_advantage_warn_steps: int = Field(
        10, ge=0, description="warn after N consecutive steps without signal (0: never)"
    )
    difficulty_weighting: bool = Field(True, description="Eq. 9-12 group weight")
    log_completions: bool = False


class SFTSettings(_TrainCommon):
    trl_config: ClassVar[str] = "SFTConfig"
    learning_rate: float = Field(1e-5, gt=0.0)
    per_device_train_batch_size: int = Field(4, ge=1)
    max_length: int | None = Field(None, ge=16)


class _Job(_Section):
    model: ModelSection = Field(default_factory=ModelSection)
    lora: LoraSection = Field(default_factory=LoraSection)
    data: DataSection = Field(default_factory=DataSection)
    diagnostics: DiagnosticsSection = Field(default_factory=DiagnosticsSection)
    output_dir: str = ""
    merge_lora: bool = Field(False, description="merge the LoRA adapter into a full checkpoint at the end")

    @model_validator(mode="after")
    def _check(self) -> _Job:
        """Every cross-field rule, in one place."""
        for name, value in (
            ("model.path", self.model.path),
            ("data.pairs", self.data.pairs),
            ("output_dir", self.output_dir),
        ):
            if not str(value).strip():
                raise ValueError(f"{name} is required; set it in the YAML or as {name}=VALUE")
        resolve_template(self.data.template, self.model.path)
        if self.model.quant and not self.lora.enabled:
            raise ValueError("model.quant needs lora.enabled=true (quantized weights cannot be fine-tuned fully)")
        if self.merge_lora and not self.lora.enabled:
            raise ValueError("merge_lora needs lora.enabled=true (nothing to merge)")
        train = getattr(self, "train", None)
        if train is not None and train.deepspeed and self.model.quant:
            raise ValueError("DeepSpeed ZeRO-3 and bitsandbytes quantization do not combine; drop model.quant")
        if train is not None and train.use_cpu and self.model.dtype == "fp16":
            raise ValueError("model.dtype=fp16 does not train on CPU; use fp32 or bf16")
        reward = getattr(self, "reward", None)
        if reward is not None:
            reward.params()
            if reward.extra_weights is not None and len(reward.extra_weights) != len(reward.extra):
                raise ValueError(
                    f"reward.extra_weights has {len(reward.extra_weights)} values for {len(reward.extra)} extra rewards"
                )
        return self

    @property
    def template(self) -> PromptTemplate:
        return resolve_template(self.data.template, self.model.path)

    @property
    def think(self) -> bool:
        return self.template.think


def resolve_template(spec: str, model_path: str = "") -> PromptTemplate:
    """A prompt template from an id, a template JSON file (or a folder holding ``differad_prompt.json``),
    or ``model`` (the one stored with the model): the engine loads any template from a model folder,
    so training can use any too."""
    if spec == "model":
        path = Path(model_path) / PROMPT_FILE
        if not path.is_file():
            raise ConfigError(f"data.template=model but {path} does not exist; pass a template id or JSON file")
    elif spec.endswith(".json") or Path(spec).is_dir():
        path = Path(spec) / PROMPT_FILE if Path(spec).is_dir() else Path(spec)
        if not path.is_file():
            raise ConfigError(f"prompt template file {path} does not exist; pass a template id or a JSON file")
    else:
        return get_template(spec)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read prompt template {path}: {e}; expected differad_prompt.json content") from e
    if not isinstance(data, dict):
        raise ConfigError(f"prompt template {path} must be a JSON object with id and think")
    return PromptTemplate.from_dict(data)


class GRPOJob(_Job):
    reward: RewardSection = Field(default_factory=RewardSection)
    train: GRPOSettings = Field(default_factory=GRPOSettings)


class SFTJob(_Job):
    train: SFTSettings = Field(default_factory=SFTSettings)


JOBS: dict[str, type[_Job]] = {"grpo": GRPOJob, "sft": SFTJob}


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.num_generations=4"`` -> (["train", "num_generations"], 4); values are read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError(f"override {text!r} is not KEY=VALUE; expected e.g. train.num_generations=4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e}); quote it") from e
    return key.strip().split("."), value


def _apply(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {'.'.join(path)}: {part!r} is a value, not a section")
        node = child
    node[path[-1]] = value


def shipped_configs() -> dict[str, Path]:
    """Name -> path of the configs shipped in ``train/configs`` (``--config sft``)."""
    folder = Path(str(resources.files("differad_edge.train").joinpath("configs")))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve_config(path: str | os.PathLike) -> Path:
    """A YAML path, or the name of a shipped config (``sft``, ``grpo_authors``, ...)."""
    p = Path(path)
    if p.exists() or os.sep in str(path) or str(path).endswith((".yaml", ".yml")):
        return p
    shipped = shipped_configs()
    if str(path) in shipped:
        return shipped[str(path)]
    raise ConfigError(
        f"config {str(path)!r} is neither a file nor a shipped config"
        f"{did_you_mean(str(path), set(shipped))}; shipped: {', '.join(shipped)}"
    )


def _read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    p = resolve_config(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {p}; pass an existing YAML (see train/configs/)") from e
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config {p}: {' '.join(str(e).split())}; fix the YAML") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {p} must be a YAML mapping of sections, got {type(data).__name__}")
    return data


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        got = f" (got {err['input']!r})" if loc and not isinstance(err.get("input"), dict) else ""
        parts.append(f"{loc + ': ' if loc else ''}{msg}{got}")
    return "; ".join(parts)


def load_config(kind: str, path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """A validated ``GRPOJob`` or ``SFTJob`` from an optional YAML file plus ``key=value`` overrides."""
    if kind not in JOBS:
        raise ConfigError(f"unknown job kind {kind!r}; expected one of {', '.join(JOBS)}")
    data = _read_yaml(path) if path is not None else {}
    for text in overrides:
        _apply(data, *parse_override(text))
    where = f" in {path}" if path else ""
    try:
        return JOBS[kind].model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid {kind} config{where}: {_describe(e)}") from e
    except ConfigError as e:
        raise ConfigError(f"invalid {kind} config{where}: {e}") from e


def dump_config(job: _Job) -> dict[str, Any]:
    """Plain data, as saved next to the checkpoint (``train_config.yaml``)."""
    return job.model_dump(mode="json")
