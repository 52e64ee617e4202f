"""load_model: resolution, the ModelSpec, and clear errors for bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import crane_lens as cl
from crane_lens.cli import main
from crane_lens.model import ModelSpec, resolve_dtype
from crane_lens.model.loader import BUILTIN_MODELS, builtin_model_dir, checkpoint_dtype


def test_spec_of_a_local_checkpoint(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["qwen2"], device="cpu", dtype="bf16")
    spec = cl.get_spec(model)
    assert (spec.architecture, spec.n_layers, spec.d_mlp, spec.d_model) == (
        "Qwen2ForCausalLM",
        2,
        96,
        64,
    )
    assert spec.dtype == "torch.bfloat16" and spec.device == "cpu" and spec.n_neurons == 192
    assert spec.hook_name(1) == "blocks.1.mlp.hook_post"
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert not model.training


def test_model_info_cli(tiny_checkpoints, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert main(["model", "info", str(tiny_checkpoints["gpt2"])]) == 0
    out = capsys.readouterr().out
    assert "GPT2LMHeadModel" in out and "d_mlp" in out and "256" in out


def test_missing_path() -> None:
    with pytest.raises(cl.ModelLoadError, match="No such model folder.*crane-tiny"):
        cl.load_model("./no/such/model")


def test_folder_without_tokenizer(tiny_checkpoints, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "weights_only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_checkpoints["llama"] / name, folder / name)
    with pytest.raises(cl.ModelLoadError, match="no tokenizer files.*tokenizer.save_pretrained"):
        cl.load_model(folder)


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(cl.ModelLoadError, match="no config.json"):
        cl.load_model(tmp_path)


def test_architecture_without_mlp_neurons(tiny_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM, MixtralConfig

    config = MixtralConfig(vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2, num_local_experts=2)  # fmt: skip
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(cl.UnsupportedModelError, match="MixtralForCausalLM.*mixture of experts"):
        cl.load_model(tmp_path)


def test_dtype_the_device_cannot_run(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(cl.ModelLoadError, match="cannot run dtype torch.float8_e4m3fn.*float32"):
        cl.load_model(tiny_checkpoints["llama"], device="cpu", dtype=torch.float8_e4m3fn)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(cl.ModelLoadError, match="CUDA is not available.*device='cpu'"):
        cl.load_model(tiny_checkpoints["llama"], device="cuda")


def test_dtype_names() -> None:
    assert resolve_dtype(None) is torch.float32
    assert resolve_dtype("bf16") is resolve_dtype("torch.bfloat16") is torch.bfloat16
    with pytest.raises(cl.ModelLoadError, match="Unknown dtype 'fp8'"):
        resolve_dtype("fp8")
    with pytest.raises(cl.ModelLoadError, match="not a floating-point"):
        resolve_dtype(torch.int8)


def test_hub_model_without_a_hub() -> None:
    # conftest sets HF_HUB_OFFLINE=1
    with pytest.raises(cl.ModelLoadError, match="(?s)Cannot load the hub model.*pass the folder"):
        cl.load_model("someorg/some-model", device="cpu")


def test_device_and_device_map_are_exclusive(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(cl.ModelLoadError, match="not both"):
        cl.load_model(tiny_checkpoints["llama"], device="cpu", device_map="auto")


def _tiny_llama(
    folder: Path, tokenizer: object, dtype: torch.dtype, config_key: str | None
) -> Path:
    """A tiny random Llama saved in ``dtype``, its config recording it under ``config_key``."""
    import json

    from transformers import AutoModelForCausalLM

    from tests.tiny_models import _configs

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(_configs()["llama"]).to(dtype).save_pretrained(folder)
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    recorded = config.pop("dtype", None) or config.pop("torch_dtype", None)
    assert recorded == str(dtype).removeprefix("torch.")  # what transformers wrote
    if config_key is not None:
        config[config_key] = recorded
    config_path.write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("saved", "key", "expected"),
    [
        (torch.bfloat16, "dtype", torch.bfloat16),
        (torch.float32, "dtype", torch.float32),
        (torch.float16, "torch_dtype", torch.float16),  # written by transformers < 5
        (torch.bfloat16, None, torch.float32),  # a config that records no dtype
    ],
)
def test_checkpoint_dtype_is_the_checkpoints(
    tiny_tokenizer, tmp_path: Path, saved, key, expected
) -> None:  # type: ignore[no-untyped-def]
    folder = _tiny_llama(tmp_path, tiny_tokenizer, saved, key)
    assert checkpoint_dtype(str(folder)) == expected
    model = cl.load_model(folder, device="cpu", dtype="checkpoint")
    assert next(model.parameters()).dtype == expected
    assert cl.get_spec(model).dtype == str(expected)
    explicit = cl.load_model(folder, device="cpu", dtype="float32")  # an explicit dtype wins
    assert next(explicit.parameters()).dtype == torch.float32


def test_default_dtype_of_the_builtin_models() -> None:
    """crane-tiny (and crane-tiny-chat) store bf16 weights but record float32 as their compute
    dtype: they load through the same path, in float32 by default."""
    for name in BUILTIN_MODELS:
        assert checkpoint_dtype(str(builtin_model_dir(name))) == torch.float32
    assert cl.get_spec(cl.load_model("crane-tiny", device="cpu")).dtype == "torch.float32"


def test_float16_checkpoint_still_checks_for_overflow(
    tiny_tokenizer, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from crane_lens.model import loader

    folder = _tiny_llama(tmp_path, tiny_tokenizer, torch.float16, "dtype")
    checked: list[str] = []
    monkeypatch.setattr(loader, "check_float16_range", lambda model, name: checked.append(name))
    cl.load_model(folder, device="cpu", dtype="checkpoint")
    assert checked == [str(folder)]
    cl.load_model(folder, device="cpu")  # auto: float32 on a CPU, nothing to check
    assert checked == [str(folder)]
