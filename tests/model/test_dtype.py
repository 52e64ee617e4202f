"""dtype="auto": float32 on CPUs without native bfloat16, the checkpoint's elsewhere (faked CPUs)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

import crane_lens as cl
from crane_lens.model import dtype as dtypes
from crane_lens.model.dtype import choose_dtype, cpu_bf16_support, parse_dtype

CPU = torch.device("cpu")
EPYC = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse sse2 avx avx2 fma f16c\n"
SAPPHIRE = (
    "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
    "flags\t\t: fpu avx avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile\n"
)
GRAVITON3 = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\n"
GRAVITON2 = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes crc32\n"


@pytest.fixture(autouse=True)
def _own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's cache goes to a fresh CRANE_LENS_HOME, and no warning is remembered."""
    monkeypatch.setenv("CRANE_LENS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(dtypes, "_WARNED", set())


def fake_cpu(
    monkeypatch: pytest.MonkeyPatch, cpuinfo: str | None, capability: str = "AVX2"
) -> None:
    monkeypatch.setattr(dtypes, "_read_cpuinfo", lambda: cpuinfo)
    monkeypatch.setattr(dtypes, "_cpu_capability", lambda: capability)


def no_probe(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the probe fail the test if it runs (returns the list its calls would fill)."""
    calls: list[int] = []

    def probe(repeats: int = 3) -> float:
        calls.append(repeats)
        raise AssertionError("the flags decide; no probe expected")

    monkeypatch.setattr(dtypes, "measure_bf16_slowdown", probe)
    return calls


@pytest.mark.parametrize(
    ("cpuinfo", "native"), [(EPYC, False), (SAPPHIRE, True), (GRAVITON3, True), (GRAVITON2, False)]
)
def test_cpu_flags_decide_native_bf16(monkeypatch, cpuinfo, native) -> None:  # type: ignore[no-untyped-def]
    fake_cpu(monkeypatch, cpuinfo)
    support = cpu_bf16_support()
    assert support.native is native
    assert support.evidence


def test_auto_picks_float32_on_a_cpu_without_bf16(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fake_cpu(monkeypatch, EPYC)
    no_probe(monkeypatch)
    choice = choose_dtype("auto", checkpoint=torch.bfloat16, device=CPU)
    assert choice.dtype == torch.float32
    assert "AMD EPYC has no avx512_bf16 / amx_bf16" in choice.reason


def test_auto_picks_bf16_on_a_cpu_with_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fake_cpu(monkeypatch, SAPPHIRE, "AVX512")
    no_probe(monkeypatch)
    choice = choose_dtype("auto", checkpoint=torch.bfloat16, device=CPU)
    assert choice.dtype == torch.bfloat16
    assert "native bfloat16" in choice.reason and "avx512_bf16" in choice.reason
    # a float32 checkpoint stays float32, a float16 one is not computed in float16 on a CPU
    assert choose_dtype(None, checkpoint=torch.float32, device=CPU).dtype == torch.float32
    assert choose_dtype("auto", checkpoint=torch.float16, device=CPU).dtype == torch.float32


def test_unreadable_flags_ask_the_probe_once_per_machine(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake_cpu(monkeypatch, None, capability="AVX512")
    ratios = iter([0.6, 9.0])
    monkeypatch.setattr(dtypes, "measure_bf16_slowdown", lambda repeats=3: next(ratios))
    assert choose_dtype("auto", checkpoint=torch.bfloat16, device=CPU).dtype == torch.bfloat16
    # cached: the second decision reads the first measurement (0.6), not the next one
    assert choose_dtype("auto", checkpoint=torch.bfloat16, device=CPU).dtype == torch.bfloat16
    cache = json.loads((tmp_path / "home" / "machine.json").read_text())
    (entry,) = cache["bf16_over_float32"].values()
    assert entry["ratio"] == 0.6
    assert dtypes.bf16_slowdown(refresh=True) == 9.0  # a new measurement replaces it
    assert choose_dtype("auto", checkpoint=torch.bfloat16, device=CPU).dtype == torch.float32


def test_no_avx512_means_no_native_bf16_without_reading_flags(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fake_cpu(monkeypatch, None, capability="AVX2")
    monkeypatch.setattr(dtypes.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(dtypes.platform, "system", lambda: "Linux")
    no_probe(monkeypatch)
    assert cpu_bf16_support().native is False
    assert choose_dtype("auto", checkpoint=torch.bfloat16, device=CPU).dtype == torch.float32


def test_auto_falls_back_to_bf16_when_float32_does_not_fit(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    fake_cpu(monkeypatch, EPYC)
    no_probe(monkeypatch)
    monkeypatch.setattr(dtypes, "available_memory", lambda: 10 * 2**30)
    n_params = 3_000_000_000  # 12 GB in float32, 6 GB in bfloat16
    with caplog.at_level(logging.WARNING, logger="crane_lens"):
        choice = choose_dtype("auto", checkpoint=torch.bfloat16, device=CPU, n_params=n_params)
    assert choice.dtype == torch.bfloat16 and "does not fit" in choice.reason
    assert "would not fit" in caplog.text
    small = choose_dtype("auto", checkpoint=torch.bfloat16, device=CPU, n_params=10**8)
    assert small.dtype == torch.float32
    counted: list[int] = []  # the count is only asked for when it matters
    choose_dtype("auto", checkpoint=torch.float32, device=CPU,
                 n_params=lambda: counted.append(1) or 1)  # fmt: skip
    assert counted == []


def test_a_control_group_limit_lowers_the_available_memory(tmp_path: Path) -> None:
    """A container's limit counts, not only the host's MemAvailable (v2, then v1; none: None)."""
    assert dtypes._cgroup_memory_left(tmp_path) is None  # no files: no limit known
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("100\n")
    assert dtypes._cgroup_memory_left(tmp_path) is None
    (tmp_path / "memory.max").write_text(f"{8 * 2**30}\n")
    (tmp_path / "memory.current").write_text(f"{3 * 2**30}\n")
    assert dtypes._cgroup_memory_left(tmp_path) == 5 * 2**30
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(2**63 - 4096))  # v1's "no limit"
    (v1 / "memory" / "memory.usage_in_bytes").write_text("1")
    assert dtypes._cgroup_memory_left(v1) is None
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(4 * 2**30))
    assert dtypes._cgroup_memory_left(v1) == 4 * 2**30 - 1


def test_explicit_bf16_on_a_slow_cpu_warns_with_the_measured_factor(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    fake_cpu(monkeypatch, EPYC)
    monkeypatch.setattr(dtypes, "measure_bf16_slowdown", lambda repeats=3: 23.4)
    with caplog.at_level(logging.WARNING, logger="crane_lens"):
        choice = choose_dtype("bf16", checkpoint=torch.bfloat16, device=CPU)
        choose_dtype("checkpoint", checkpoint=torch.bfloat16, device=CPU)  # warned once only
    assert choice.dtype == torch.bfloat16 and choice.reason == "requested"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "23× slower than in float32" in warnings[0] and "--dtype auto" in warnings[0]


def test_explicit_bf16_on_a_native_cpu_does_not_warn(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    fake_cpu(monkeypatch, SAPPHIRE, "AVX512")
    no_probe(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="crane_lens"):
        assert choose_dtype("bf16", checkpoint=torch.float32, device=CPU).dtype == torch.bfloat16
    assert not caplog.records


def test_auto_on_a_gpu_is_the_checkpoints(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = torch.device("cuda")
    assert choose_dtype("auto", checkpoint=torch.bfloat16, device=cuda).dtype == torch.bfloat16
    assert choose_dtype("auto", checkpoint=torch.float32, device=cuda).dtype == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    old_gpu = choose_dtype("auto", checkpoint=torch.bfloat16, device=cuda)
    assert old_gpu.dtype == torch.float32 and "no bfloat16" in old_gpu.reason


def test_dtype_names_and_errors() -> None:
    assert parse_dtype(None) == parse_dtype("AUTO") == "auto"
    assert parse_dtype("checkpoint") == "checkpoint"
    assert parse_dtype("torch.bfloat16") is torch.bfloat16
    with pytest.raises(cl.ModelLoadError, match="Unknown dtype 'fp8'.*auto"):
        parse_dtype("fp8")
    with pytest.raises(cl.ModelLoadError, match="load_model resolves it"):
        cl.model.resolve_dtype("auto")


def test_probe_measures_both_dtypes() -> None:
    ratio = dtypes.measure_bf16_slowdown(repeats=1)
    assert ratio > 0 and ratio == ratio  # a finite measurement, whatever this CPU does


def test_load_model_auto_on_a_faked_cpu(monkeypatch, tiny_tokenizer, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    """A bfloat16 checkpoint loads in float32 on a CPU without bf16, in bf16 on one with it;
    the choice is logged once and kept with the model."""
    from transformers import AutoModelForCausalLM

    from tests.tiny_models import _configs

    folder = tmp_path / "bf16-model"
    AutoModelForCausalLM.from_config(_configs()["llama"]).to(torch.bfloat16).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    no_probe(monkeypatch)
    fake_cpu(monkeypatch, EPYC)
    with caplog.at_level(logging.INFO, logger="crane_lens"):
        model = cl.load_model(folder, device="cpu")
    assert next(model.parameters()).dtype == torch.float32
    assert cl.model.dtype_choice(model).requested == "auto"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dtype ")]
    assert lines == ["dtype float32 (auto: CPU without native bfloat16 (AMD EPYC has no "
                     "avx512_bf16 / amx_bf16))"]  # fmt: skip
    fake_cpu(monkeypatch, SAPPHIRE, "AVX512")
    model = cl.load_model(folder, device="cpu")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert cl.model.dtype_choice(model).dtype == torch.bfloat16
