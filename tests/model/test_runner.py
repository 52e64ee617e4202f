"""The forward-pass runner: the one gold-token log-probability against the model's own logits,
its chunked backward against autograd, and models loaded with a device map."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import crane_lens as cl
from crane_lens.model import runner


def _tokens(n_rows: int = 3, width: int = 12, vocab: int = 300) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(2, vocab, (n_rows, width), generator=generator)
    tokens[:, 0] = 0  # BOS
    return tokens


def _reference(model, tokens: torch.Tensor, first: int = 1) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    logits = model(tokens, return_type="logits").float()[:, first - 1 : -1]
    gold = tokens[:, first:, None]
    return {"logit": logits.gather(-1, gold)[..., 0],
            "logprob": logits.log_softmax(-1).gather(-1, gold)[..., 0]}  # fmt: skip


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2", "bloom"])
def test_gold_scores_equal_the_models_logits(tiny_checkpoints, arch, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Soft-capped (Gemma 2), biased (BLOOM) and tied heads: every kind, every first position,
    one chunk or 7-entry chunks, and the full-logit fallback."""
    model = cl.load_model(tiny_checkpoints[arch], device="cpu")
    tokens = _tokens()
    with torch.no_grad():
        for first in (1, 5):
            expected = _reference(model, tokens, first)
            for chunk in (None, 7):
                got = runner.score_kinds(model, tokens, ["logit", "logprob"], first=first,
                                         chunk=chunk)  # fmt: skip
                for kind in ("logit", "logprob"):
                    torch.testing.assert_close(got[kind], expected[kind], rtol=1e-5, atol=1e-5)
        real = runner._head
        monkeypatch.setattr(
            runner, "_head", lambda m, p: dataclasses.replace(real(m, p), exact=False)
        )
        fallback = runner.gold_scores(model, tokens, chunk=7)
    torch.testing.assert_close(fallback, _reference(model, tokens)["logprob"], rtol=1e-5, atol=1e-5)


def test_the_vocabulary_is_never_projected_at_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With a chunk of 1000 entries, no logits tensor is wider than 1000 (crane-tiny: 8192)."""
    model = cl.load_model("crane-tiny", device="cpu")
    widths: list[int] = []
    real = runner._logits_chunk

    def spy(x, head, start, stop):  # type: ignore[no-untyped-def]
        out = real(x, head, start, stop)
        widths.append(out.shape[-1])
        return out

    tokens = _tokens(2, 16, 8000)
    runner.gold_scores(model, tokens)  # checks the head once (full width, on a 16-token probe)
    monkeypatch.setattr(runner, "_logits_chunk", spy)
    torch.testing.assert_close(runner.gold_scores(model, tokens, chunk=1000),
                               runner.gold_scores(model, tokens), rtol=1e-5, atol=1e-5)  # fmt: skip
    assert widths and max(widths) <= 8192 and max(widths[: len(widths) // 2]) == 1000
    assert len(widths) == 9 + 1  # ceil(8192 / 1000) chunks, then the single default chunk


@pytest.mark.parametrize("softcap", [2.0, None])
@pytest.mark.parametrize("keep_bytes", [0, runner.KEEP_BYTES], ids=["recomputed", "kept"])
def test_chunked_log_normaliser_gradients_equal_autograd(monkeypatch, keep_bytes, softcap) -> None:  # type: ignore[no-untyped-def]
    """Backward recomputes each chunk, or reads each chunk's softmax kept by the forward pass
    (under KEEP_BYTES): gradients for the input, the weight and the bias equal autograd through
    the plain (soft-capped) logsumexp (float64 gradcheck too)."""
    monkeypatch.setattr(runner, "KEEP_BYTES", keep_bytes)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(11, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(11, dtype=torch.float64, generator=generator, requires_grad=True)

    def chunked(x, weight, bias):  # type: ignore[no-untyped-def]
        head = runner._Head(weight, bias, softcap, exact=True)
        return runner._LogNormaliser.apply(x, weight, bias, head, 3)

    def plain(x, weight, bias):  # type: ignore[no-untyped-def]
        z = x @ weight.T + bias
        return (softcap * torch.tanh(z / softcap) if softcap else z).logsumexp(-1)

    torch.testing.assert_close(chunked(x, weight, bias), plain(x, weight, bias))
    assert torch.autograd.gradcheck(chunked, (x, weight, bias))
    upstream = torch.randn(5, dtype=torch.float64, generator=generator)
    got = torch.autograd.grad(chunked(x, weight, bias), (x, weight, bias), upstream)
    expected = torch.autograd.grad(plain(x, weight, bias), (x, weight, bias), upstream)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


def test_first_must_predict_something() -> None:
    model = cl.load_model("crane-tiny", device="cpu")
    with pytest.raises(ValueError, match="first must be >= 1"):
        runner.gold_scores(model, _tokens(1, 4), first=0)
    with pytest.raises(ValueError, match="kind must be"):
        runner.gold_scores(model, _tokens(1, 4), kind="nll")  # type: ignore[arg-type]


@pytest.mark.integration
def test_a_device_mapped_model_gives_the_single_device_results() -> None:
    """A model loaded with a per-module ``device_map`` (all CPU: TransformerLens refuses maps
    that mix CPU and GPU, and CI has no GPU) runs every statistic and the ablation matrix with
    the results of the plainly loaded model."""
    layers = {f"model.layers.{i}": "cpu" for i in range(4)}
    device_map = {"model.embed_tokens": "cpu", **layers, "model.norm": "cpu", "lm_head": "cpu",
                  "model.rotary_emb": "cpu"}  # fmt: skip
    plain = cl.load_model("crane-tiny", device="cpu")
    mapped = cl.load_model("crane-tiny", device_map=device_map)
    corpus = cl.load_corpus("builtin", langs=["en", "vi"], split="train")
    methods = ["crane", "attribution", "lape", "kojima", "plnd"]
    kwargs = {"max_tokens_per_lang": 512, "seq_len": 64, "batch_size": 4, "progress": False}
    a = cl.compute_stats(plain, corpus, methods, **kwargs)  # type: ignore[arg-type]
    b = cl.compute_stats(mapped, corpus, methods, **kwargs)  # type: ignore[arg-type]
    for name in a.statistics:
        torch.testing.assert_close(a.scores(name), b.scores(name), rtol=1e-5, atol=1e-6)
    neurons = cl.select_language_neurons(a, "crane", k=20)
    held_out = cl.load_corpus("builtin", langs=["en", "vi"], split="eval")
    matrices = [cl.ablation_matrix(m, held_out, neurons, random_seeds=1, max_tokens_per_lang=256,
                                   progress=False) for m in (plain, mapped)]  # fmt: skip
    for a_lang in neurons.langs:
        assert matrices[0].nll[a_lang] == pytest.approx(matrices[1].nll[a_lang], abs=1e-5)
    assert matrices[0].baseline == pytest.approx(matrices[1].baseline, abs=1e-5)


def test_no_gold_log_probability_outside_the_runner() -> None:
    """One implementation: no other module of the package normalises logits itself."""
    import re
    from pathlib import Path

    package = Path(cl.__file__).parent
    pattern = re.compile(r"log_softmax|logsumexp|cross_entropy|return_type=\"loss\"")
    offenders = [
        f"{path.relative_to(package)}:{number}"
        for path in package.rglob("*.py")
        if path.name != "runner.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith((">>>", "...", "#"))
    ]
    assert offenders == []
