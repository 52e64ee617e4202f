"""Which dtype a model computes in: ``dtype="auto"``, decided by the device and the CPU.

On a GPU the checkpoint's own dtype is the fast one (most recent checkpoints record bfloat16).
On a CPU it depends on the processor: without native bfloat16 matrix instructions (x86 CPUs
lacking AVX-512 BF16 and AMX, such as AVX2-only server CPUs), PyTorch emulates bfloat16 — on a
2-core AMD EPYC, Gemma 3 270M's forward pass takes 4–6× as long as in float32 and CRANE's
forward + backward 43–51× (``benchmarks/bench_real_model.py``). CPUs with native
bfloat16 (AVX-512 BF16, AMX, Arm's BF16 extension) behave the other way. So ``"auto"`` is:

* CUDA (or another accelerator): the checkpoint's dtype (float32 where a GPU lacks bfloat16);
* CPU: float32, unless the CPU has native bfloat16 and the checkpoint is bfloat16 — then
  bfloat16; and bfloat16 when float32 weights would not fit in the available memory but
  bfloat16 ones would.

Native support is read from the CPU's flags (``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS,
and torch's reported CPU capability: no AVX-512 means no AVX-512 BF16). Where the flags cannot
be read, a one-off micro-probe (a linear layer's forward and backward in both dtypes, a few
seconds at most) decides, cached per machine in ``$CRANE_LENS_HOME/machine.json``. The same
probe gives the factor an explicit ``dtype="bf16"`` on such a CPU warns with.

Example:
    >>> import torch
    >>> choice = choose_dtype("auto", checkpoint=torch.float32, device=torch.device("cpu"))
    >>> choice.dtype, choice.requested
    (torch.float32, 'auto')
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from crane_lens.errors import ModelLoadError

log = logging.getLogger(__name__)

DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}  # fmt: skip
AUTO, CHECKPOINT = "auto", "checkpoint"
DTYPE_CHOICES = (AUTO, CHECKPOINT, "float32", "bfloat16", "float16")
# x86 flags of native bf16 matrix instructions (Linux /proc/cpuinfo names); Arm's is "bf16".
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
MACHINE_FILE = "machine.json"
# float32 weights must fit in this share of the available memory (activations, the loader's
# temporary copies and the rest of the process need the remainder).
MEMORY_SHARE = 0.7


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str:
    """A torch dtype for a concrete request, or ``"auto"`` / ``"checkpoint"`` (``None`` is
    ``"auto"``).

    Raises:
        ModelLoadError: An unknown name or a non-floating-point dtype.

    Example:
        >>> parse_dtype("bf16"), parse_dtype(None), parse_dtype("Checkpoint")
        (torch.bfloat16, 'auto', 'checkpoint')
    """
    if dtype is None:
        return AUTO
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    elif isinstance(dtype, str) and dtype.lower() in (AUTO, CHECKPOINT):
        return dtype.lower()
    elif isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in DTYPE_NAMES:
        resolved = DTYPE_NAMES[dtype.lower().removeprefix("torch.")]
    else:
        raise ModelLoadError(
            f"Unknown dtype {dtype!r}; use auto (the default: float32 on CPUs without native "
            "bfloat16, else the checkpoint's), checkpoint, float32, bfloat16 or float16."
        )
    if not resolved.is_floating_point:
        raise ModelLoadError(
            f"dtype {resolved} is not a floating-point type; use auto, float32 or bfloat16."
        )
    return resolved


# -- what the CPU can do -------------------------------------------------------------------------
@dataclass(frozen=True)
class CpuBf16:
    """Whether this CPU has native bfloat16 matrix instructions, and how we know.

    Attributes:
        native: ``True``/``False`` from the CPU's flags; ``None`` when they cannot be read.
        cpu: The processor's name.
        evidence: What decided it, in words (logged and shown in messages).
    """

    native: bool | None
    cpu: str
    evidence: str


def _read_cpuinfo() -> str | None:
    """``/proc/cpuinfo`` (Linux), or ``None``. Tests replace it to fake a CPU."""
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _sysctl(name: str) -> str | None:
    try:
        done = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_capability() -> str:
    """torch's vectorisation level (``"AVX2"``, ``"AVX512"``, ...). Tests replace it."""
    return str(torch.backends.cpu.get_cpu_capability())


def cpu_bf16_support() -> CpuBf16:
    """Read this CPU's native bfloat16 support from its flags.

    Example:
        >>> support = cpu_bf16_support()
        >>> support.native in (True, False, None) and bool(support.evidence)
        True
    """
    info = _read_cpuinfo()
    machine = platform.machine().lower()
    if info:
        fields: dict[str, str] = {}
        for line in info.splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
        cpu = fields.get("model name") or fields.get("cpu model") or platform.processor() or machine
        flags = set((fields.get("flags") or fields.get("features") or "").split())
        if "flags" in fields:  # x86
            found = [f for f in X86_BF16_FLAGS if f in flags]
            if found:
                return CpuBf16(True, cpu, f"{cpu} has {', '.join(found)}")
            return CpuBf16(False, cpu, f"{cpu} has no {' / '.join(X86_BF16_FLAGS)}")
        if "features" in fields:  # Arm
            if "bf16" in flags:
                return CpuBf16(True, cpu, f"{cpu} has the Arm BF16 extension")
            return CpuBf16(False, cpu, f"{cpu} lacks the Arm BF16 extension")
    if platform.system() == "Darwin" and machine == "arm64":
        cpu = _sysctl("machdep.cpu.brand_string") or "Apple silicon"
        feature = _sysctl("hw.optional.arm.FEAT_BF16")
        if feature in ("0", "1"):
            native = feature == "1"
            return CpuBf16(native, cpu, f"{cpu} {'has' if native else 'lacks'} FEAT_BF16")
    cpu = platform.processor() or machine or "unknown CPU"
    capability = _cpu_capability()
    if machine in ("x86_64", "amd64", "i386", "i686") and "AVX512" not in capability:
        return CpuBf16(False, cpu, f"{cpu}: torch reports {capability}, no AVX-512")
    return CpuBf16(None, cpu, f"{cpu}: flags unreadable (torch reports {capability})")


# -- the micro-probe -----------------------------------------------------------------------------
def _machine_file() -> Path:
    from crane_lens.model.installable import crane_lens_home

    return crane_lens_home() / MACHINE_FILE


def _probe_key(cpu: str) -> str:
    # The host name too: a $CRANE_LENS_HOME shared over a network file system serves machines
    # whose CPUs may report the same name but differ (a cloud "Virtual CPU").
    return (f"{platform.node()} | {cpu} | torch {torch.__version__} | "
            f"{torch.get_num_threads()} threads")  # fmt: skip


def _linear_pass(dtype: torch.dtype) -> Callable[[], float]:
    """A linear layer's forward + backward (input gradient only, as the statistics run it) in
    ``dtype``, 256 tokens × 1024 → 1024: a function returning its seconds. Big enough for
    float32's kernels to reach their speed (smaller products understate the gap: 3× instead
    of 10× at 128 × 512 → 1024 on an AVX2 CPU)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1024, generator=generator).to(dtype).requires_grad_(True)
    weight = torch.randn(1024, 1024, generator=generator).to(dtype)

    def run() -> float:
        start = time.perf_counter()
        out = torch.nn.functional.linear(x, weight)
        (grad,) = torch.autograd.grad(out.sum(), x)
        float(grad[0, 0])
        return time.perf_counter() - start

    return run


def measure_bf16_slowdown(repeats: int = 3) -> float:
    """bfloat16 time ÷ float32 time of a linear layer's forward + backward on this CPU.

    One warm-up each, then ``repeats`` interleaved runs, medians: about 3 s where bfloat16 is
    emulated, a fraction of a second where it is native.

    Example:
        >>> measure_bf16_slowdown(repeats=1) > 0
        True
    """
    float32, bfloat16 = _linear_pass(torch.float32), _linear_pass(torch.bfloat16)
    float32(), bfloat16()
    times32, times16 = [], []
    for _ in range(repeats):
        times32.append(float32())
        times16.append(bfloat16())
    return statistics.median(times16) / statistics.median(times32)


def bf16_slowdown(cpu: str | None = None, *, refresh: bool = False) -> float:
    """:func:`measure_bf16_slowdown`, measured once per machine, torch version and thread count
    and cached in ``$CRANE_LENS_HOME/machine.json`` (an unwritable cache only costs a re-measure).
    """
    from crane_lens.utils.io import write_json

    key = _probe_key(cpu or cpu_bf16_support().cpu)
    path = _machine_file()
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    entries = cache.get("bf16_over_float32", {}) if isinstance(cache, dict) else {}
    entry = entries.get(key) if isinstance(entries, dict) else None
    if not refresh and isinstance(entry, dict) and isinstance(entry.get("ratio"), int | float):
        return float(entry["ratio"])
    ratio = measure_bf16_slowdown()
    entries = dict(entries) if isinstance(entries, dict) else {}
    entries[key] = {
        "ratio": round(ratio, 3),
        "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        write_json(
            path, {**(cache if isinstance(cache, dict) else {}), "bf16_over_float32": entries}
        )
    except OSError as exc:
        log.debug("could not cache the bf16 probe in %s: %s", path, exc)
    return ratio


# -- memory --------------------------------------------------------------------------------------
def available_memory() -> int | None:
    """Bytes of memory available to a new allocation, or ``None``: Linux ``MemAvailable``, or
    less where this process's control group (a container, a batch job) has a lower limit."""
    system = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                system = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if system is None:
        try:
            import psutil

            system = int(psutil.virtual_memory().available)
        except Exception:
            return None
    left = _cgroup_memory_left()
    return system if left is None else min(system, left)


def _cgroup_memory_left(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The memory this process's control group may still allocate (cgroup v2 ``memory.max``
    minus ``memory.current``, else v1's limit minus usage); ``None`` without a limit."""
    for limit, usage in (("memory.max", "memory.current"),
                         ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):  # fmt: skip
        try:
            cap = (root / limit).read_text().strip()
            if cap == "max" or int(cap) >= 2**60:  # v1 writes "no limit" as a huge number
                return None
            return max(0, int(cap) - int((root / usage).read_text().strip()))
        except (OSError, ValueError):
            continue
    return None


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


# -- the decision --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DtypeChoice:
    """The dtype a model is loaded in and why.

    Attributes:
        dtype: The compute dtype.
        requested: What was asked for: ``"auto"``, ``"checkpoint"`` or a dtype name.
        reason: Why, in words (one log line; the run report shows it).
    """

    dtype: torch.dtype
    requested: str
    reason: str

    def describe(self) -> str:
        """``"float32 (auto: ...)"``."""
        return f"{dtype_name(self.dtype)} ({self.requested}: {self.reason})"


def choose_dtype(
    requested: str | torch.dtype | None,
    *,
    checkpoint: torch.dtype,
    device: torch.device | None,
    n_params: int | Callable[[], int | None] | None = None,
) -> DtypeChoice:
    """Resolve ``requested`` (``"auto"``, ``"checkpoint"`` or a dtype) for a model.

    Args:
        requested: ``"auto"`` (``None`` too), ``"checkpoint"``, or a dtype / dtype name.
        checkpoint: The dtype the checkpoint records (:func:`~crane_lens.model.loader.checkpoint_dtype`).
        device: Where the model computes (``None``: spread over devices by ``device_map``).
        n_params: Parameter count (or a function computing it, called only when needed), for
            the memory check on a CPU (``None``: not checked).

    Returns:
        The choice with its reason. An explicit bfloat16 on a CPU without native bfloat16 is
        honoured, with a warning giving the measured slowdown.

    Example:
        >>> import torch
        >>> choose_dtype("checkpoint", checkpoint=torch.bfloat16, device=torch.device("cuda")).dtype
        torch.bfloat16
    """
    parsed = parse_dtype(requested)
    on_cpu = device is not None and device.type == "cpu"
    if device is None:  # device_map / n_devices: accelerators when there are any
        on_cpu = not torch.cuda.is_available()
    if isinstance(parsed, torch.dtype):
        if parsed == torch.bfloat16 and on_cpu:
            _warn_slow_bf16()
        return DtypeChoice(parsed, dtype_name(parsed), "requested")
    if parsed == CHECKPOINT:
        if checkpoint == torch.bfloat16 and on_cpu:
            _warn_slow_bf16()
        return DtypeChoice(checkpoint, CHECKPOINT, "the checkpoint's")
    if not on_cpu:
        cuda = device is not None and device.type == "cuda"
        if checkpoint == torch.bfloat16 and cuda and not torch.cuda.is_bf16_supported():
            return DtypeChoice(torch.float32, AUTO, "this GPU has no bfloat16")
        return DtypeChoice(checkpoint, AUTO, f"the checkpoint's, on {device or 'device_map'}")
    return _auto_on_cpu(checkpoint, n_params)


def _auto_on_cpu(
    checkpoint: torch.dtype, count: int | Callable[[], int | None] | None
) -> DtypeChoice:
    if checkpoint == torch.float32:
        return DtypeChoice(torch.float32, AUTO, "the checkpoint's, on the CPU")
    n_params = count() if callable(count) else count
    support = cpu_bf16_support()
    native = support.native
    evidence = support.evidence
    if native is None:
        ratio = bf16_slowdown(support.cpu)
        native = ratio < 1.0
        evidence = f"{evidence}; measured bfloat16 {ratio:.2g}× float32's time"
    if native and checkpoint == torch.bfloat16:
        return DtypeChoice(torch.bfloat16, AUTO, f"the checkpoint's; native bfloat16 ({evidence})")
    reason = f"CPU without native bfloat16 ({evidence})" if not native else (
        f"the checkpoint's {dtype_name(checkpoint)} is slow or overflows on CPUs")  # fmt: skip
    memory = available_memory()
    if n_params is not None and memory is not None and n_params * 4 > MEMORY_SHARE * memory:
        fallback = torch.bfloat16
        if n_params * 2 <= MEMORY_SHARE * memory:
            log.warning(
                "float32 weights (%s) would not fit in the %s of memory available; computing "
                "in bfloat16%s (%s). Free memory, or pass dtype='float32' to try anyway.",
                _gib(n_params * 4), _gib(memory), "" if native else ", which is slower on this CPU",
                evidence,
            )  # fmt: skip
            return DtypeChoice(fallback, AUTO, f"float32 ({_gib(n_params * 4)}) does not fit "
                               f"in {_gib(memory)} available; {reason}")  # fmt: skip
        log.warning(
            "%s of float32 or %s of bfloat16 weights exceed the %s of memory available; loading "
            "in float32 anyway (use device_map='auto' or a machine with more memory).",
            _gib(n_params * 4), _gib(n_params * 2), _gib(memory),
        )  # fmt: skip
    return DtypeChoice(torch.float32, AUTO, reason)


_WARNED: set[str] = set()


def _warn_slow_bf16() -> None:
    """Warn (once per process) that bfloat16 is emulated, hence slow, on this CPU."""
    support = cpu_bf16_support()
    if support.native or "bf16" in _WARNED:
        return
    ratio = bf16_slowdown(support.cpu)
    if support.native is None and ratio < 1.0:
        return  # flags unknown, but the probe says bfloat16 is fast here
    _WARNED.add("bf16")
    log.warning(
        "bfloat16 on this CPU is emulated (%s): a linear layer's forward + backward measured "
        "%.0f× slower than in float32 (Gemma 3 270M: 4–6× for a forward pass, 40–70× with the statistics' backward pass). Use dtype='auto' or 'float32' "
        "(--dtype auto) unless memory forces bfloat16.", support.evidence, ratio,
    )  # fmt: skip


def parameter_count(folder: str | os.PathLike[str] | None, config: object | None) -> int | None:
    """Parameters of a checkpoint: from its safetensors headers (no weights read), else from its
    config on the meta device; ``None`` when neither works.

    Example:
        >>> from crane_lens.model.loader import builtin_model_dir
        >>> parameter_count(builtin_model_dir("crane-tiny"), None) > 1_000_000
        True
    """
    if folder is not None and Path(folder).is_dir():
        files = sorted(Path(folder).glob("*.safetensors"))
        if files:
            try:
                return sum(_safetensors_numel(f) for f in files)
            except (OSError, ValueError, KeyError):
                pass
    if config is None:
        return None
    try:
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        return sum(p.numel() for p in model.parameters())
    except Exception as exc:  # an architecture transformers cannot build: no memory check
        log.debug("no parameter count from the config: %s", exc)
        return None


def _safetensors_numel(path: Path) -> int:
    with path.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        numel = 1
        for dim in entry["shape"]:
            numel *= int(dim)
        total += numel
    return total
