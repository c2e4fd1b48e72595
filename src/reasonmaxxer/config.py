"""Stage configs: one dataclass per stage, each field with a one-line help text.

The same class is filled from the packaged default YAML, a user YAML and CLI flags (in that
order, later wins) by :func:`resolve`, the one resolver every command uses; ``__post_init__``
validates, and a bad value is one :class:`UserError`. The resolved config (every default
filled in) is what a run directory records. Fields that several commands share (decoding,
optimiser, LoRA) are declared once in :mod:`.blocks`.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .blocks import DecodeConfig, LoraSpec, OptimConfig, WithLora, WithOptim
from .errors import UserError
from .fields import base_type as _base_type
from .fields import check as _check
from .fields import check_fields, project, shared
from .fields import help_field as _f

DEFAULT_PROMPT = "{problem}\nPut your final answer within \\boxed{}."


DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

# Settings that change how a stage runs, not what it computes: they never enter a stage key,
# a resume check or a checkpoint scope, so changing them on a finished run folder is allowed.
EXECUTION_FIELDS = {
    "model": (
        "device",
        "threads",
        "backend",
        "merge_adapter",
        "trust_remote_code",
        "ray",
        "ray_workers",
        "max_model_len",
        "enforce_eager",
        "kv_cache_gib",
    ),
    "train": ("gradient_checkpointing", "share_prefix"),
}


@dataclass
class ModelConfig:
    model: str = _f(
        "default", "model: 'default' (embedded SmolLM2-135M), a HF id, a folder or a .gguf"
    )
    dtype: str = _f(
        "float32", "weights dtype for training and scoring", ("float32", "bfloat16", "float16")
    )
    gen_dtype: str = _f(
        "auto",
        "weights dtype for generation: auto = bfloat16 on a CUDA GPU that supports it, else "
        "float32 (on a CPU with native bf16, bfloat16 is ~2x faster but its rollouts trained "
        "worse adapters on one such CPU; emulated bf16 is ~100x slower)",
        ("auto", "float32", "bfloat16", "float16"),
    )
    backend: str = _f(
        "auto",
        "generation backend: auto = vllm when it is installed and a CUDA GPU is there, else hf",
        ("auto", "hf", "vllm"),
    )
    device: str = _f(
        "auto", "where the model runs: auto (cuda when available, else cpu), cpu, cuda, cuda:N, mps"
    )
    trust_remote_code: bool = _f(
        False,
        "allow the model repo's own code to run; only ever taken from this command line, never "
        "from a YAML file or a run folder",
    )
    threads: int | None = _f(
        None, "torch CPU threads (default: the cores other work leaves free when it starts)"
    )
    merge_adapter: bool = _f(
        True,
        "generate from the adapter merged into the weights (in float32, then cast to "
        "--gen-dtype): faster decode than unmerged LoRA layers (50.6% vs 50.0% pass@1, 271 s "
        "vs 336 s on the default eval); --no-merge-adapter serves it as LoRA layers",
    )
    ray: str | None = _f(
        None,
        "shard sample / select / eval over Ray workers: 'auto' (the running cluster, else a "
        "local one) or a cluster address HOST:PORT; how a stage runs, never what it computes",
    )
    ray_workers: int | None = _f(
        None, "Ray workers (shards) for --ray (default: one per GPU, else one per CPU)"
    )

    max_model_len: int | None = _f(
        None, "vLLM: longest prompt + completion in tokens (default: the model's own limit)"
    )
    enforce_eager: bool = _f(
        False, "vLLM: no CUDA graphs / compilation (slower decode, faster start, less memory)"
    )
    kv_cache_gib: float | None = _f(
        None, "vLLM: KV-cache memory in GiB (default: 1 on CPU, the free GPU memory on a GPU)"
    )

    def __post_init__(self) -> None:
        check_fields(self)
        _check(
            DEVICE_RE.fullmatch(self.device) is not None,
            f"--device must be auto, cpu, cuda, cuda:N or mps; got {self.device!r}",
        )
        _check(self.threads is None or self.threads >= 1, "--threads must be >= 1")
        _check(self.ray_workers is None or self.ray_workers >= 1, "--ray-workers must be >= 1")
        _check(
            self.max_model_len is None or self.max_model_len >= 1, "--max-model-len must be >= 1"
        )
        _check(self.kv_cache_gib is None or self.kv_cache_gib > 0, "--kv-cache-gib must be > 0")


@dataclass
class PromptConfig:
    prompt_template: str = _f(DEFAULT_PROMPT, "user message; {problem} is replaced by the problem")
    system_prompt: str | None = _f(None, "system message (None: the chat template's own default)")
    chat_template: str = _f("auto", "use the tokenizer's chat template", ("auto", "on", "off"))

    def __post_init__(self) -> None:
        check_fields(self)
        _check("{problem}" in self.prompt_template, "--prompt-template must contain {problem}")


@dataclass
class EvalConfig:
    benchmarks: str = _f(
        "arith:level=2,n=400,split=eval",
        "comma list of benchmark names, JSONL paths or arith specs",
    )
    limit: int | None = _f(None, "evaluate only the first N problems of each benchmark")
    k: int = _f(
        1, "samples per problem at --temperature for avg@k / pass@k (greedy pass@1 is always run)"
    )
    temperature: float = shared(
        DecodeConfig, "temperature", 0.6, "sampling temperature for the k samples"
    )
    top_p: float = shared(DecodeConfig, "top_p", help="nucleus sampling for the k samples")
    max_new_tokens: int = shared(DecodeConfig, "max_new_tokens")
    batch_size: int = shared(DecodeConfig, "batch_size")
    seed: int = _f(0, "sampling seed")
    grader_timeout: float = _f(5.0, "seconds per answer comparison before it counts as a time-out")

    def __post_init__(self) -> None:
        check_fields(self)
        _check(self.k >= 1, "--k must be >= 1")
        _check(self.limit is None or self.limit >= 1, "--limit must be >= 1")
        _check(self.temperature > 0, "--temperature must be > 0 (greedy pass@1 is always run)")
        project(self, DecodeConfig)
        _check(self.grader_timeout > 0, "--grader-timeout must be > 0")


@dataclass
class SampleConfig:
    train: str = _f(
        "arith:level=2,n=146,split=train",
        "training problems: benchmark name, JSONL path or arith spec",
    )
    limit: int | None = _f(None, "use only the first N training problems")
    k: int = _f(8, "rollouts per problem")
    temperature: float = shared(DecodeConfig, "temperature", help="sampling temperature (> 0)")
    top_p: float = shared(DecodeConfig, "top_p")
    max_new_tokens: int = shared(DecodeConfig, "max_new_tokens", 128, "rollout length limit")
    batch_size: int = shared(DecodeConfig, "batch_size")
    chunk_problems: int = _f(
        16, "problems per resumable chunk (each chunk is seeded and saved whole)"
    )
    seed: int = _f(42, "sampling seed")
    grader_timeout: float = _f(5.0, "seconds per answer comparison")

    def __post_init__(self) -> None:
        check_fields(self)
        _check(self.k >= 2, "--k must be >= 2 (a pass rate needs several rollouts)")
        _check(self.limit is None or self.limit >= 1, "--limit must be >= 1")
        _check(self.grader_timeout > 0, "--grader-timeout must be > 0")
        _check(self.temperature > 0, "--temperature must be > 0")
        _check(
            self.batch_size >= 1 and self.chunk_problems >= 1,
            "--batch-size and --chunk-problems must be >= 1",
        )
        project(self, DecodeConfig)


@dataclass
class SelectConfig:
    min_pass: float = _f(0.0, "keep problems with pass rate strictly above this")
    max_pass: float = _f(1.0, "keep problems with pass rate strictly below this")
    max_problems: int | None = _f(
        None, "keep only the N problems whose pass rate is closest to 0.5"
    )
    drop_longest: float = _f(0.0, "drop this fraction of the longest kept rollouts (paper: 0.2)")
    tau: float | None = _f(None, "entropy threshold in nats (exclusive with --top-frac)")
    top_frac: float | None = _f(
        0.1, "mark this fraction of generated tokens with the highest entropy"
    )
    gate: str = _f(
        "entropy", "where the contrastive term applies", ("entropy", "all", "random", "low")
    )
    batch_size: int = _f(16, "rollouts per teacher-forced forward pass")
    autocast: str = _f(
        "auto",
        "mixed precision for the entropy forward pass (auto: bfloat16 on a CUDA GPU, else off)",
        ("auto", "bfloat16", "off"),
    )
    seed: int = _f(0, "seed for the random gate")
    advantages: str = _f(
        "before_trim",
        "group advantages from the full group, or from the rollouts left after --drop-longest "
        "(the authors' code)",
        ("before_trim", "after_trim"),
    )
    adv_eps: float = _f(1e-6, "added to the group's population std (the authors': 1e-8)")

    def __post_init__(self) -> None:
        check_fields(self)
        _check(0 < self.adv_eps <= 1, "--adv-eps must be in (0, 1]")
        _check(0 <= self.min_pass < self.max_pass <= 1, "need 0 <= --min-pass < --max-pass <= 1")
        _check(0 <= self.drop_longest < 1, "--drop-longest must be in [0, 1)")
        _check(self.max_problems is None or self.max_problems >= 1, "--max-problems must be >= 1")
        if self.tau is not None:
            self.top_frac = None  # an explicit tau wins over the default fraction
        _check(self.top_frac is not None or self.tau is not None, "give --tau or --top-frac")
        _check(self.top_frac is None or 0 < self.top_frac <= 1, "--top-frac must be in (0, 1]")
        _check(self.tau is None or self.tau >= 0, "--tau must be >= 0 (nats)")
        _check(self.batch_size >= 1, "--batch-size must be >= 1")


@dataclass
class TrainConfig(WithLora, WithOptim):
    loss: str = _f("bounded", "decision-point loss", ("contrastive", "bounded"))
    lam: float = _f(1.0, "weight of the KL anchor on non-decision tokens (paper: 0.2)")
    neg_weight: float = _f(1.0, "weight of the negative-advantage term")
    positive_only: bool = _f(False, "drop rollouts with negative advantage")
    beta: float = _f(1.0, "scale inside the bounded loss's sigmoid")
    lr: float = shared(OptimConfig, "lr")
    weight_decay: float = shared(OptimConfig, "weight_decay")
    epochs: float = shared(OptimConfig, "epochs", help="passes over the selected rollouts")
    max_steps: int | None = shared(OptimConfig, "max_steps")
    batch_size: int = _f(8, "rollouts per forward pass")
    grad_accum: int = shared(OptimConfig, "grad_accum")
    warmup_steps: int = shared(OptimConfig, "warmup_steps")
    schedule: str = _f(
        "constant",
        "learning rate after the warm-up: constant, or linear decay to 0 over the scheduled "
        "epochs (even when --max-steps stops earlier)",
        ("constant", "linear"),
    )
    order: str = _f(
        "shuffle",
        "rollout order: shuffled length buckets, or the authors' curriculum (|A| x decision "
        "density, highest first, never shuffled)",
        ("shuffle", "curriculum"),
    )
    dec_mean: str = _f(
        "token",
        "decision loss mean: pooled over the batch's decision tokens, or per rollout first",
        ("token", "rollout"),
    )
    skip_zero_adv: bool = _f(False, "rollouts with advantage 0 get no decision loss")
    kl_scope: str = _f(
        "completion",
        "KL anchor positions: non-decision generated tokens, or every non-decision position "
        "with the prompt (needs logits over the whole sequence)",
        ("completion", "all"),
    )
    max_grad_norm: float = shared(OptimConfig, "max_grad_norm")
    autocast: str = _f(
        "auto",
        "mixed precision for forward passes: auto = bfloat16 on a CUDA GPU that supports it, "
        "else off (float32)",
        ("auto", "bfloat16", "off"),
    )
    gradient_checkpointing: bool = _f(
        True,
        "recompute each layer's activations in the backward pass instead of keeping them: the "
        "same gradients; a default step's peak memory 3.1 -> 1.9 GiB above the model for ~10% "
        "more time",
    )
    share_prefix: bool = _f(
        True,
        "run the prompt tokens every row of a micro-batch shares (chat template, system "
        "prompt) once instead of once a row: the same loss and gradients to float rounding, "
        "for fewer tokens a step; off with kl_scope all",
    )
    lora_r: int = shared(LoraSpec, "lora_r")
    lora_alpha: int = shared(LoraSpec, "lora_alpha")
    lora_dropout: float = shared(LoraSpec, "lora_dropout")
    lora_targets: str = shared(LoraSpec, "lora_targets")
    seed: int = _f(0, "training seed (adapter init, shuffling)")
    checkpoint_every: int = _f(
        20,
        "save a resumable checkpoint (adapter, optimizer, data order) every N optimizer steps; "
        "a killed train resumes from it (0: never)",
    )
    report_to: str = _f(
        "none",
        "live tracker mirroring each step's log row (the run folder stays the record)",
        ("none", "trackio", "wandb", "tensorboard"),
    )

    save_every_frac: float | None = _f(
        None,
        "save the adapter every this fraction of an epoch and keep the one best on --dev "
        "(authors: 0.15; off by default)",
    )
    dev: str | None = _f(
        None,
        "dev benchmark that picks the checkpoint (greedy pass@1), disjoint from train and "
        "eval, e.g. arith:level=2,n=20,split=dev",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        _check(
            self.save_every_frac is None or self.save_every_frac > 0,
            "--save-every-frac must be > 0",
        )
        _check(
            (self.save_every_frac is None) == (self.dev is None),
            "--save-every-frac and --dev go together (give both, or neither)",
        )
        _check(
            self.lr > 0 and self.lam >= 0 and self.beta > 0, "need --lr > 0, --lam >= 0, --beta > 0"
        )
        _check(self.neg_weight >= 0, "--neg-weight must be >= 0")
        _check(self.checkpoint_every >= 0, "--checkpoint-every must be >= 0")
        _check(
            self.batch_size >= 1 and self.grad_accum >= 1,
            "--batch-size and --grad-accum must be >= 1",
        )
        project(self, OptimConfig)
        project(self, LoraSpec)


@dataclass
class RunConfig:
    """The whole pipeline; the packaged ``configs/default.yaml`` fills it."""

    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    primary_metric: str = _f(
        "pass@1",
        "metric the final significance test uses, fixed before looking",
        ("pass@1", "avg@k"),
    )
    report: bool = _f(True, "write report.html at the end")
    rounds: int = _f(
        1, "rounds of sample -> select -> train; round r samples from round r-1's policy"
    )
    round_from: str = _f(
        "adapter",
        "round r >= 2 trains the previous adapter on, or a fresh LoRA on the previous policy "
        "with its adapter merged",
        ("adapter", "merged"),
    )
    round_anchor: str = _f(
        "previous",
        "round r >= 2 anchors (KL, π_ref) to the previous round's policy or the base",
        ("base", "previous"),
    )

    def __post_init__(self) -> None:
        check_fields(self)
        _check(self.rounds >= 1, f"--rounds must be >= 1; got {self.rounds}")
        self.resolve_precision()

    def resolve_precision(self) -> None:
        """``auto`` precisions become a concrete dtype (see
        :func:`~reasonmaxxer.devices.bf16_by_default`), so the run folder's config.yaml and every
        stage key name the dtype that was actually used."""
        from .devices import resolve_precision

        given = {
            ("model", "gen_dtype"): self.model.gen_dtype,
            ("select", "autocast"): self.select.autocast,
            ("train", "autocast"): self.train.autocast,
        }
        self._given_precision = {k: v for k, v in given.items() if v == "auto"}
        if not self._given_precision:
            return
        device = self.model.device
        self.model.gen_dtype = resolve_precision(self.model.gen_dtype, device, fallback="float32")
        self.select.autocast = resolve_precision(self.select.autocast, device, fallback="off")
        self.train.autocast = resolve_precision(self.train.autocast, device, fallback="off")


SECTIONS = {
    f.name: f.type
    for f in dataclasses.fields(RunConfig)
    if dataclasses.is_dataclass(f.default_factory)
}  # type: ignore[arg-type]


def _resolve_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _coerce(cls: type, name: str, value: Any) -> Any:
    tp, optional = _base_type(_resolve_type(cls, name))
    if optional and isinstance(value, str) and value.strip().lower() in ("none", "null"):
        value = None  # how --set and overrides switch an optional field off
    if value is None:
        if optional:
            return None
        raise UserError(f"{name} cannot be null")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=name)
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
                return bool(value)
            raise ValueError(value)  # `report: [1]` or `report: {x: 1}` is a mistake, not True
        if tp in (int, float) and isinstance(value, bool):
            raise ValueError(value)  # bool is an int subclass: `k: true` is a mistake
        if tp is float and isinstance(value, str):
            return float(value)
        if tp is float and isinstance(value, int):
            return float(value)  # YAML `epochs: 3` / `lr: 1` are ints
        if tp is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if tp is int and isinstance(value, str):
            return int(value)
        if not isinstance(value, tp):
            raise ValueError(value)
        return value
    except (TypeError, ValueError):
        raise UserError(f"{name}: expected {tp.__name__}, got {_short(value)}") from None


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` cut to one short line, so a huge YAML value still makes a one-line error."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def from_dict(cls: type, data: dict | None, *, where: str = "config") -> Any:
    """Build ``cls`` from a (possibly nested) dict; unknown keys are an error, not ignored."""
    if data is None:
        data = {}
    if not isinstance(data, dict):  # `train: 0` is a mistake, not "train: defaults"
        raise UserError(f"{where}: expected a mapping, got {type(data).__name__} {_short(data)}")
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise UserError(f"{where}: keys must be strings, got {_short(bad_keys[0])}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
        )
    return cls(**{k: _coerce(cls, k, v) for k, v in data.items()})


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def as_given(cfg: RunConfig) -> dict:
    """``to_dict(cfg)`` with the precisions that were ``auto`` back at ``auto``: a defaults
    dict must not fix them for the default device before a ``--device`` applies (on a GPU
    machine, ``--device cpu`` would otherwise keep the GPU's bfloat16)."""
    data = to_dict(cfg)
    for (section, name), value in getattr(cfg, "_given_precision", {}).items():
        data[section][name] = value
    return data


def on_model(cfg: RunConfig, model: str) -> RunConfig:
    """``cfg`` with ``model.model`` replaced by ``model`` (a round's policy or base, π_ref)."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, model=model))


def identity(cfg: Any) -> dict:
    """``to_dict(cfg)`` without the execution settings (:data:`EXECUTION_FIELDS`): what a
    stage computes depends on this, so stage keys, resume checks and checkpoints use it."""
    out = to_dict(cfg)
    for section, names in EXECUTION_FIELDS.items():
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k not in names}
    return out


def merge(base: dict, override: dict) -> dict:
    """Recursive dict update; ``None`` or ``{}`` in ``override`` means 'not given' and keeps
    ``base``. A mapping over a value that is not one (``train: 0`` then ``--lr 1``) is an error,
    not a silent replacement that would hide the bad value."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        elif isinstance(v, dict) and not v:
            continue  # a section with no flags given
        elif isinstance(v, dict) and out.get(k) is not None:
            raise UserError(f"{k}: given both as {_short(out[k])} and as a mapping {_short(v)}")
        elif v is not None:
            out[k] = v
    return out


def load_yaml(path: str | Path, *, run_folder: bool = False) -> dict:
    """A YAML mapping from ``path``; every way it can be bad is one :class:`UserError`.

    A ``--config`` file may be empty (no overrides). A run folder's ``config.yaml``
    (``run_folder=True``) is what the folder was made with, so an empty one is an error:
    reading it as "all defaults" would silently change the model or the data.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"{path}: malformed YAML ({str(e).splitlines()[0]})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason})") from None
    except RecursionError:
        raise UserError(f"{path}: malformed YAML (nested too deeply)") from None
    except ValueError as e:  # a YAML integer with more digits than Python converts
        raise UserError(f"{path}: malformed YAML ({str(e).split(':')[0]})") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    if data is None and run_folder:
        raise UserError(f"{path} is empty: not a reasonmaxxer run config (use another folder)")
    if data is not None and not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    return _drop_remote_code(data or {}, path)


def _drop_remote_code(data: dict, path: Path) -> dict:
    """Remove ``trust_remote_code`` at any depth: a file (someone else's run folder, a shared
    YAML) must never switch on code execution; only the command line can."""
    out = {}
    for k, v in data.items():
        if k == "trust_remote_code":
            if v not in (False, None, "false", "False"):
                import sys

                print(
                    f"warning: {path}: trust_remote_code ignored (it is only taken from the "
                    "command line, --trust-remote-code)",
                    file=sys.stderr,
                )
            continue
        out[k] = _drop_remote_code(v, path) if isinstance(v, dict) else v
    return out


def preset_names() -> list[str]:
    """The packaged presets (``configs/NAME.yaml``): ``default`` is the embedded-model job."""
    folder = importlib.resources.files("reasonmaxxer").joinpath("configs")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def default_run_dict(preset: str = "default") -> dict:
    """A packaged preset as a dict; ``default`` is the measured best for the embedded model."""
    if preset not in preset_names():
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(preset_names())}")
    text = importlib.resources.files("reasonmaxxer").joinpath(f"configs/{preset}.yaml").read_text()
    return yaml.safe_load(text) or {}


def resolve(
    cls: type,
    *,
    defaults: dict,
    run_dir: str | Path | None = None,
    config: str | Path | None = None,
    overrides: dict | None = None,
) -> Any:
    """The one way every command turns its inputs into its config: ``defaults`` <- the run
    folder's ``config.yaml`` (when ``run_dir`` has one) <- the ``--config`` YAML <- the
    ``overrides`` (the flags, ``--set``), later wins; then built as ``cls`` and validated.

    ``defaults`` is the command's starting point (:func:`run_defaults`, :func:`field_defaults`,
    ``grpo_defaults``); ``--help`` shows the same dict, so what it says is what a command uses.
    """
    data = defaults
    if run_dir is not None and (Path(run_dir) / "config.yaml").is_file():
        data = merge(data, load_yaml(Path(run_dir) / "config.yaml", run_folder=True))
    if config:
        data = merge(data, load_yaml(config))
    return from_dict(cls, merge(data, overrides or {}))


def run_defaults(preset: str = "default", *, plain_eval: bool = False) -> dict:
    """The resolved packaged ``preset``, what the pipeline commands start from. With
    ``plain_eval`` the eval section is the dataclass's (greedy only), as ``eval`` uses it."""
    data = as_given(build_run_config(preset=preset))
    if plain_eval:
        data["eval"] = to_dict(EvalConfig())
    return data


def field_defaults(cls: type) -> dict:
    """The dataclass defaults of ``cls`` as a dict, without validating (an analysis config
    has no default teacher, so its defaults alone are not a valid config)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        else:
            value = f.default_factory()  # type: ignore[misc]
            out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def build_run_config(
    user_yaml: str | None = None, overrides: dict | None = None, *, preset: str = "default"
) -> RunConfig:
    """Dataclass defaults <- packaged ``preset`` <- ``user_yaml`` <- ``overrides``."""
    defaults = merge(as_given(RunConfig()), default_run_dict(preset))
    return resolve(RunConfig, defaults=defaults, config=user_yaml, overrides=overrides)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True, width=100)
