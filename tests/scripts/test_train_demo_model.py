"""The demo-model trainer: an interrupted run resumes and ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import train_demo_model

TINY_ARCH = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 2, "num_key_value_heads": 2}  # fmt: skip


def _args(tokenizer_dir: Path, out: Path) -> list[str]:
    return [
        "--tokenizer", str(tokenizer_dir), "--out", str(out), "--steps", "6",
        "--batch-size", "2", "--seq-len", "32", "--max-tokens-per-lang", "1024",
        "--ckpt-every", "2", "--eval-every", "3", "--warmup", "2", "--threads", "1",
        "--arch", json.dumps(TINY_ARCH),
    ]  # fmt: skip


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "final" / "model.safetensors"))


def test_interrupted_training_resumes_to_the_same_model(tiny_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tok = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(tok)
    train_demo_model.main(_args(tok, tmp_path / "straight"))
    train_demo_model.main([*_args(tok, tmp_path / "resumed"), "--stop-after", "3"])
    assert not (tmp_path / "resumed" / "final").exists()
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["step"] == 2
    train_demo_model.main(_args(tok, tmp_path / "resumed"))  # picks up at step 2

    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    logs = [(tmp_path / d / "train_log.jsonl").read_text() for d in ("straight", "resumed")]
    assert logs[0] == logs[1] and len(logs[0].splitlines()) == 6


def test_resuming_with_other_settings_is_refused(tiny_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    tok = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(tok)
    train_demo_model.main([*_args(tok, tmp_path / "run"), "--stop-after", "2"])
    with pytest.raises(SystemExit, match="lr differ"):
        train_demo_model.main([*_args(tok, tmp_path / "run"), "--lr", "0.5"])
