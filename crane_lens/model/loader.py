"""``load_model``: the embedded demo models, local checkpoints and hub models, one code path.

Every model is booted with ``TransformerBridge.boot_transformers`` (TransformerLens 4): the
built-in names only resolve to folders inside the package, so the demo models exercise exactly
the hooks a user's Llama or Qwen checkpoint does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import textwrap
import weakref
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from crane_lens.errors import ModelLoadError
from crane_lens.model.compat import quiet_generate, repair_kv_cache
from crane_lens.model.dtype import (
    DTYPE_NAMES,
    DtypeChoice,
    choose_dtype,
    dtype_name,
    parameter_count,
    parse_dtype,
)
from crane_lens.model.installable import (
    INSTALLABLE_MODELS,
    installed_model_dir,
    is_installed,
    not_installed_error,
)
from crane_lens.model.spec import ModelSpec, model_spec

if TYPE_CHECKING:
    from transformer_lens import TransformerBridge

log = logging.getLogger(__name__)

BUILTIN_MODELS = ("crane-tiny", "crane-tiny-chat")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")
_SPECS: weakref.WeakKeyDictionary[Any, ModelSpec] = weakref.WeakKeyDictionary()
_CHOICES: weakref.WeakKeyDictionary[Any, DtypeChoice] = weakref.WeakKeyDictionary()


def builtin_model_dir(name: str) -> Path:
    """Folder of a built-in model inside the installed package."""
    if name not in BUILTIN_MODELS:
        raise ModelLoadError(
            f"{name!r} is not a built-in model; those are {', '.join(BUILTIN_MODELS)}."
        )
    return Path(str(resources.files("crane_lens.model") / "builtin" / name))


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """A concrete dtype: torch dtypes and names such as ``"bf16"`` or ``"float16"``; ``None``
    → float32.

    ``"auto"`` and ``"checkpoint"`` depend on a model and a machine: :func:`load_model` resolves
    them (:func:`crane_lens.model.dtype.choose_dtype`); here they are an error.

    Example:
        >>> resolve_dtype("bf16"), resolve_dtype(None)
        (torch.bfloat16, torch.float32)
    """
    parsed = parse_dtype(dtype) if dtype is not None else torch.float32
    if not isinstance(parsed, torch.dtype):
        raise ModelLoadError(
            f"dtype {dtype!r} depends on the model and the machine; load_model resolves it. "
            "Give a concrete dtype here: float32, bfloat16 or float16."
        )
    return parsed


def checkpoint_dtype(target: str, **config_kwargs: Any) -> torch.dtype:
    """The dtype a checkpoint's ``config.json`` records; float32 when it records none.

    Reads only the config (``AutoConfig``: no weights), from a local folder or a hub id.
    transformers 5 writes ``dtype``, older versions ``torch_dtype``; a multimodal config may
    record it on its text config only. A dtype crane_lens does not compute in (e.g. float64)
    also falls back to float32.

    Args:
        target: A local model folder or a hub id.
        **config_kwargs: ``revision``, ``trust_remote_code``, ``token``... for ``AutoConfig``.

    Raises:
        OSError: The config cannot be read (no such hub model, no network).

    Example:
        >>> checkpoint_dtype(str(builtin_model_dir("crane-tiny")))  # bf16 weights, float32 compute
        torch.float32
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(target, **config_kwargs)
    recorded = None
    for candidate in (config, config.get_text_config()):
        recorded = getattr(candidate, "dtype", None) or getattr(candidate, "torch_dtype", None)
        if recorded is not None:
            break
    if isinstance(recorded, str):
        recorded = DTYPE_NAMES.get(recorded.lower().removeprefix("torch."), recorded)
    if not isinstance(recorded, torch.dtype) or recorded not in DTYPE_NAMES.values():
        log.info("%s records no dtype crane_lens computes in (%s): float32", target, recorded)
        return torch.float32
    return recorded


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → CUDA when available, else CPU. Refuses devices this machine lacks."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ModelLoadError(f"Unknown device {device!r}: {exc}. Use 'cpu' or 'cuda'.") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"Device {device!r} requested but CUDA is not available on this machine (torch "
            f"{torch.__version__}). Use device='cpu', or install a CUDA build of torch."
        )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"Device {device!r} requested but MPS is not available. Use 'cpu'.")
    return resolved


def check_device_dtype(device: torch.device, dtype: torch.dtype) -> None:
    """Run a tiny matmul + softmax in ``dtype`` on ``device``; raise a clear error if it cannot."""
    try:
        x = torch.ones(4, 4, device=device, dtype=dtype)
        float(torch.softmax(x @ x, dim=-1).sum())
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        raise ModelLoadError(
            f"The device {device} cannot run dtype {dtype} ({exc}). Use dtype='float32' "
            "(or bfloat16 on recent CPUs/GPUs)."
        ) from exc


@torch.no_grad()
def check_float16_range(model: Any, name: str) -> None:
    """Refuse a model whose activations overflow float16 (every logit NaN or inf).

    Some checkpoints (Gemma among them) were trained in bfloat16 and carry activations beyond
    float16's range (65 504): they load in float16 without complaint and then produce NaN for
    every token. One short forward pass finds out before any expensive work does.
    """
    tokenizer = model.tokenizer
    ids = tokenizer("The quick brown fox jumps over the lazy dog.", add_special_tokens=False)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    device = next(model.parameters()).device
    tokens = torch.tensor([[*bos, *ids["input_ids"]]], device=device)
    logits = model(tokens, return_type="logits")
    if not bool(torch.isfinite(logits).all()):
        raise ModelLoadError(
            f"{name} overflows in float16: its logits are NaN/inf (activations beyond float16's "
            "range, as in Gemma). Load it with dtype='bfloat16' (or 'float32') instead."
        )


def _check_local_folder(folder: Path, has_tokenizer_arg: bool) -> None:
    if not folder.is_dir():
        raise ModelLoadError(
            f"No such model folder: {folder}. Pass a folder written by save_pretrained, a hub id, "
            f"or a built-in name ({', '.join(BUILTIN_MODELS)})."
        )
    if not (folder / "config.json").exists():
        raise ModelLoadError(
            f"{folder} is not a Hugging Face model folder (no config.json). Save the model with "
            "model.save_pretrained(folder)."
        )
    if not has_tokenizer_arg and not any((folder / f).exists() for f in _TOKENIZER_FILES):
        raise ModelLoadError(
            f"{folder} has no tokenizer files ({', '.join(_TOKENIZER_FILES)}). Save the tokenizer "
            "beside the weights with tokenizer.save_pretrained(folder), or pass tokenizer=."
        )


def _resolve_source(name_or_path: str | os.PathLike[str]) -> tuple[str, bool]:
    """(what to boot, whether it is a local folder)."""
    text = os.fspath(name_or_path)
    if text in BUILTIN_MODELS:
        folder = builtin_model_dir(text)
        if not (folder / "config.json").exists():
            raise ModelLoadError(
                f"The built-in model {text!r} is missing from this installation ({folder}). "
                "Reinstall crane_lens, or rebuild it with scripts/train_demo_model.py."
            )
        return str(folder), True
    if text in INSTALLABLE_MODELS and (is_installed(text) or not Path(text).is_dir()):
        # The installed copy wins over a folder of that name here; "./name" picks the folder.
        if not is_installed(text):
            raise not_installed_error(text)
        return str(installed_model_dir(text)), True
    path = Path(text).expanduser()
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") > 1:
        # Absolute: a relative "gemma-3-270m" would reach TransformerLens as a model alias.
        return str(path.resolve()), True
    return text, False  # a hub id such as "Qwen/Qwen2.5-0.5B"


def load_model(
    name_or_path: str | os.PathLike[str] = "crane-tiny",
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = "auto",
    **bridge_kwargs: Any,
) -> TransformerBridge:
    """Load a model as a TransformerLens ``TransformerBridge``, validated for neuron analyses.

    Args:
        name_or_path: A built-in name (``"crane-tiny"``, ``"crane-tiny-chat"``), an installed
            model (``"gemma-3-270m"``, see ``crane-lens models list``), a local folder written by
            ``save_pretrained`` (weights + tokenizer), or a hub id (needs a hub).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available, else CPU.
            Leave it unset when passing ``device_map`` / ``n_devices``.
        dtype: Compute dtype. ``"auto"`` (default; ``None`` too): on a GPU the checkpoint's own
            dtype (its ``config.json``: :func:`checkpoint_dtype`); on a CPU float32, unless the
            CPU has native bfloat16 instructions and the checkpoint is bfloat16, or float32
            weights would not fit in memory — bfloat16 is emulated, 4–70× slower, on CPUs
            without them (:mod:`crane_lens.model.dtype`). The choice and its reason are logged
            once (:func:`dtype_choice`). ``"checkpoint"``: the checkpoint's own dtype wherever
            the model runs. Or a dtype: ``"float32"`` (the most exact statistics),
            ``"bfloat16"`` (half the memory; warns on a CPU where it is slow, with the measured
            factor), ``"float16"``, or a torch dtype. A checkpoint that records float16 is used
            in float16 only on request or on a GPU, with a warning: relevance and gradients are
            back-propagated in that dtype, where small gradients can underflow.
        **bridge_kwargs: Passed to ``TransformerBridge.boot_transformers`` — e.g.
            ``device_map="auto"`` or ``n_devices=2`` for models larger than one device,
            ``tokenizer=``, ``revision=``, ``n_ctx=``.

    Returns:
        The bridge, in eval mode, with its KV-cache lookup repaired for transformers >= 5.24
        (:mod:`crane_lens.model.compat`). Its :class:`ModelSpec` is available via :func:`get_spec`.

    Raises:
        ModelLoadError: Missing folder, config or tokenizer; a model not installed; unknown or
            unusable device/dtype; a float16 load whose logits overflow.
        UnsupportedModelError: The architecture has no ``blocks.{l}.mlp.hook_post`` neurons.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> spec = cl.get_spec(model)
        >>> spec.architecture, spec.gated, spec.dtype
        ('LlamaForCausalLM', True, 'torch.float32')
    """
    from transformer_lens import TransformerBridge

    target, local = _resolve_source(name_or_path)
    if local:
        _check_local_folder(Path(target), "tokenizer" in bridge_kwargs)
    requested = parse_dtype(dtype)  # an unknown name fails before anything is read
    multi_device = any(k in bridge_kwargs for k in ("device_map", "n_devices"))
    if multi_device and device is not None:
        raise ModelLoadError("Pass either device= or device_map=/n_devices=, not both.")
    torch_device = None if multi_device else resolve_device(device)
    choice = _choose_dtype(requested, target, local, torch_device, bridge_kwargs)
    torch_dtype = choice.dtype
    if torch_dtype == torch.float16:
        log.warning(
            "%s: computing in float16. Gradients and LRP relevance can underflow in float16; "
            "pass dtype='bf16' or 'float32' to avoid it.", name_or_path,
        )  # fmt: skip
    if torch_device is not None:
        check_device_dtype(torch_device, torch_dtype)
    try:
        with no_loading_bars():
            bridge = TransformerBridge.boot_transformers(
                target, device=torch_device, dtype=torch_dtype, **bridge_kwargs
            )
    except OSError as exc:  # not found / no network / unreadable weights
        raise _load_error(target, local, exc) from exc
    bridge.eval()
    repair_kv_cache(bridge)  # generation under transformers >= 5.24: see model/compat.py
    quiet_generate(bridge)
    if torch_dtype == torch.float16:
        check_float16_range(bridge, os.fspath(name_or_path))
    _CHOICES[bridge] = choice
    _SPECS[bridge] = model_spec(bridge, os.fspath(name_or_path))
    log.info("loaded %s\n%s", name_or_path, textwrap.indent(_SPECS[bridge].summary(), "    "))
    return bridge


@contextlib.contextmanager
def no_loading_bars() -> Iterator[None]:
    """Silence transformers' own progress bars ("Loading weights") for the duration.

    Loading a checkpoint from disk takes a second or two, and its bar is noise in every
    notebook cell that loads a model. Downloads from a hub keep their bars (those are
    huggingface_hub's, and can take minutes). Both settings are restored afterwards.

    Example:
        >>> from transformers.utils import logging as hf_logging
        >>> before = hf_logging.is_progress_bar_enabled()
        >>> with no_loading_bars():
        ...     hf_logging.is_progress_bar_enabled()
        False
        >>> hf_logging.is_progress_bar_enabled() == before
        True
    """
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )
    from transformers.utils import logging as hf_logging

    was_enabled, hub_disabled = hf_logging.is_progress_bar_enabled(), are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # turns huggingface_hub's bars off too...
    if not hub_disabled:
        enable_progress_bars()  # ...which stay as they were
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()  # (and huggingface_hub's)
        if hub_disabled:
            disable_progress_bars()


def _choose_dtype(
    requested: torch.dtype | str,
    target: str,
    local: bool,
    device: torch.device | None,
    bridge_kwargs: dict[str, Any],
) -> DtypeChoice:
    """:func:`choose_dtype` with the checkpoint's dtype and size read from its config (no
    weights), logged once; a config that cannot be read is reported like a failed load."""
    if isinstance(requested, torch.dtype):
        choice = choose_dtype(requested, checkpoint=requested, device=device)
    else:
        passed = ("revision", "trust_remote_code", "token", "cache_dir")
        kwargs = {k: v for k, v in bridge_kwargs.items() if k in passed}
        try:
            recorded = checkpoint_dtype(target, **kwargs)
        except OSError as exc:
            raise _load_error(target, local, exc) from exc

        def count() -> int | None:
            from transformers import AutoConfig

            if local:
                return parameter_count(target, None) or parameter_count(
                    None, AutoConfig.from_pretrained(target, **kwargs)
                )
            return parameter_count(None, AutoConfig.from_pretrained(target, **kwargs))

        choice = choose_dtype(requested, checkpoint=recorded, device=device, n_params=count)
    log.info("dtype %s", choice.describe())
    return choice


def dtype_choice(model: Any) -> DtypeChoice:
    """The dtype a model loaded by :func:`load_model` computes in, what was asked and why.

    Example:
        >>> import crane_lens as cl
        >>> dtype_choice(cl.load_model("crane-tiny")).describe()
        "float32 (auto: the checkpoint's, on the CPU)"
    """
    choice = _CHOICES.get(model)
    if choice is None:  # loaded some other way: what its parameters are
        dtype = next(model.parameters()).dtype
        choice = DtypeChoice(dtype, dtype_name(dtype), "as loaded")
    return choice


def _load_error(target: str, local: bool, exc: Exception) -> ModelLoadError:
    where = "folder" if local else "hub model"
    return ModelLoadError(
        f"Cannot load the {where} {target!r}: {str(exc).rstrip('.')}. Without a hub, "
        "download the model elsewhere, save_pretrained it (with its tokenizer) and pass the "
        "folder."
    )


def get_spec(model: Any) -> ModelSpec:
    """The :class:`ModelSpec` of a model (computed and cached on first use)."""
    spec = _SPECS.get(model)
    if spec is None:
        name = str(getattr(model.cfg, "model_name", None) or type(model).__name__)
        spec = _SPECS[model] = model_spec(model, name)
    return spec
