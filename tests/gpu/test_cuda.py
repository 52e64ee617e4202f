"""CPU and CUDA agree: every method's statistics, the selected sets and the ablation matrix in
float32; bfloat16 on CUDA runs, stays finite and ranks neurons like float32.

crane-tiny on a little English and Vietnamese training text (512 tokens per language, blocks of
64 tokens, batches of 4; exact ablation of layer 0 on 256 tokens per language). Skipped without
CUDA (``conftest.py``); ``benchmarks/gpu_check.sh`` runs this tier on a GPU machine.

Tolerances. float32 on the two devices differs by rounding only (other kernels, other reduction
orders; TF32 is off), so a statistic must match to ``rtol=1e-4`` plus ``atol=1e-5`` of its
largest magnitude on the CPU — on the CPU, float32 and float64 runs of this data differ by at
most 2.5e-7 of it. Exact ablation is a difference of two NLLs: its rounding is absolute (about
1e-6 nats per token against float64), so it may also differ by 1e-5 nats. Two statistics are not
continuous in the activations: ``activation_probability`` counts tokens whose gate
pre-activation is > 0, and ``kojima`` ranks block means. A value within rounding of that
threshold, or of another block's mean, may land on the other side on the GPU, so a few entries
(at most ``DISCRETE_SHARE`` of them) may differ by up to a few tokens' share or one swap of
ranks. The ablation matrix holds mean NLLs per token and must match to 1e-4 nats.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor

import crane_lens as cl
from crane_lens.evaluation.ablation import ablation_matrix
from crane_lens.stats.methods import METHODS, STATISTICS
from crane_lens.utils.ranking import spearman

pytestmark = [pytest.mark.gpu, pytest.mark.integration]

DEVICES = ("cpu", "cuda")
LANGS = ["en", "vi"]
DATA: dict[str, Any] = {"seq_len": 64, "batch_size": 4, "max_tokens_per_lang": 512,
                        "progress": False}  # fmt: skip
# One compute_stats call per engine path: forward + backward passes, forward only, ablation.
RUNS: dict[str, list[str]] = {
    "gradient": ["crane", "attribution", "grad_act"],
    "activation": ["lape", "activation_probability", "mean_activation", "kojima", "plnd"],
    "ablation": ["ablation"],
}
EXTRA: dict[str, dict[str, Any]] = {
    "ablation": {"ablation_layers": [0], "max_tokens_per_lang": 256}
}
RTOL, ATOL_OF_SCALE = 1e-4, 1e-5
# Exact ablation is a difference of two NLLs: its rounding is absolute, about 1e-6 nats per token
# against float64 (2e-5 of the largest effect on 63 tokens).
ATOL_NATS = {"ablation": 1e-5}
DISCRETE_SHARE = 1e-3
# statistic -> the largest difference a flipped entry may show
DISCRETE: dict[str, float] = {
    "activation_probability": 4 / 500,  # 4 of the ~504 predicted tokens across act(gate) = 0
    "kojima": 0.25,  # one swap of two blocks among 8 per language moves the AP by < 1/4
}
NATS = 1e-4
MIN_SPEARMAN = 0.95


def _run_of(method: str) -> str:
    return next(run for run, methods in RUNS.items() if method in methods)


@pytest.fixture(scope="module", autouse=True)
def _no_tf32() -> Iterator[None]:
    """float32 means float32 on the GPU too (TF32 matmuls would differ by ~1e-3)."""
    flag = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = flag


@pytest.fixture(scope="module")
def corpus() -> cl.Corpus:
    return cl.load_corpus("builtin", langs=LANGS, split="train")


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    return {d: cl.load_model("crane-tiny", device=d, dtype="float32") for d in DEVICES}


@pytest.fixture(scope="module")
def stats(models: dict[str, Any], corpus: cl.Corpus) -> dict[str, dict[str, cl.NeuronStats]]:
    """device -> run -> statistics of that run's methods."""
    return {
        device: {run: cl.compute_stats(model, corpus, methods, **(DATA | EXTRA.get(run, {})))
                 for run, methods in RUNS.items()}
        for device, model in models.items()
    }  # fmt: skip


def _off(cpu: Tensor, cuda: Tensor, statistic: str) -> tuple[Tensor, float]:
    """Entries of ``cuda`` outside the tolerance around ``cpu`` (NaN = NaN), and the scale."""
    cpu, cuda = cpu.double().nan_to_num(), cuda.double().cpu().nan_to_num()
    scale = float(cpu.abs().max())
    atol = max(ATOL_OF_SCALE * scale, ATOL_NATS.get(statistic, 0.0))
    return (cuda - cpu).abs() > RTOL * cpu.abs() + atol, scale


def _differences(cpu: Tensor, cuda: Tensor, statistic: str) -> list[str]:
    """What is wrong with ``cuda`` against ``cpu`` under the tolerances above (empty: fine)."""
    if cpu.shape != cuda.shape:
        return [f"{statistic}: shape {tuple(cuda.shape)} on CUDA, {tuple(cpu.shape)} on the CPU"]
    if not torch.equal(cpu.isnan(), cuda.cpu().isnan()):
        return [f"{statistic}: NaN in other places on CUDA than on the CPU"]
    bad, scale = _off(cpu, cuda, statistic)
    if not bad.any():
        return []
    worst = float((cuda.double().cpu() - cpu.double()).nan_to_num().abs().max())
    if (statistic in DISCRETE and int(bad.sum()) <= DISCRETE_SHARE * bad.numel()
            and worst <= DISCRETE[statistic]):  # fmt: skip
        return []
    return [f"{statistic}: {int(bad.sum())} of {bad.numel()} entries differ, the most by "
            f"{worst:.3g} (scale {scale:.3g})"]  # fmt: skip


@pytest.mark.parametrize("run", list(RUNS))
def test_float32_statistics_match_the_cpu(stats: dict[str, dict[str, cl.NeuronStats]],
                                          run: str) -> None:  # fmt: skip
    cpu, cuda = stats["cpu"][run], stats["cuda"][run]
    assert cuda.statistics == cpu.statistics
    assert cuda.n_tokens == cpu.n_tokens
    problems = [p for s in cpu.statistics for p in _differences(cpu.scores(s), cuda.scores(s), s)]
    assert not problems, "\n".join(problems)


def test_the_runs_cover_every_statistic() -> None:
    covered = {s for methods in RUNS.values() for m in methods for s in METHODS[m].statistics}
    assert covered == set(STATISTICS), "a statistic this tier does not compare: add it to RUNS"


@pytest.mark.parametrize("method", [m for methods in RUNS.values() for m in methods])
def test_selected_sets_match_the_cpu(stats: dict[str, dict[str, cl.NeuronStats]],
                                     method: str) -> None:  # fmt: skip
    cpu_stats, cuda_stats = stats["cpu"][_run_of(method)], stats["cuda"][_run_of(method)]
    cpu = cl.select_language_neurons(cpu_stats, method)
    cuda = cl.select_language_neurons(cuda_stats, method)
    # A few flipped entries of a DISCRETE statistic may move a few neurons across the cut;
    # every other selection must be the same set.
    flipped = any(bool(_off(cpu_stats.scores(s), cuda_stats.scores(s), s)[0].any())
                  for s in METHODS[method].statistics if s in DISCRETE)  # fmt: skip
    for lang in LANGS:
        a = {tuple(p) for p in cpu.ranked[lang].tolist()}
        b = {tuple(p) for p in cuda.ranked[lang].tolist()}
        if flipped:
            assert len(a & b) >= 0.9 * max(len(a), len(b)), (method, lang, sorted(a ^ b))
        else:
            assert a == b, (method, lang, sorted(a ^ b))


def test_ablation_matrix_matches_the_cpu(models: dict[str, Any],
                                         stats: dict[str, dict[str, cl.NeuronStats]]) -> None:  # fmt: skip
    neurons = cl.select_language_neurons(stats["cpu"]["gradient"], "crane")  # same sets on both
    held_out = cl.load_corpus("builtin", langs=LANGS, split="eval")
    cpu, cuda = (ablation_matrix(models[d], held_out, neurons, random_seeds=1, seq_len=64,
                                 max_tokens_per_lang=256, progress=False) for d in DEVICES)  # fmt: skip
    assert cuda.tokens == cpu.tokens

    def values(m: cl.AblationMatrix) -> Tensor:
        flat = [m.baseline[b] for b in m.evaluated]
        flat += [m.nll[a][b] for a in m.masked for b in m.evaluated]
        flat += [v for a in m.masked for b in m.evaluated for v in m.random_nll[a][b]]
        return torch.tensor(flat, dtype=torch.float64)

    torch.testing.assert_close(values(cuda), values(cpu), rtol=0, atol=NATS)


def test_bfloat16_on_cuda_runs_and_ranks_like_float32(
    corpus: cl.Corpus, stats: dict[str, dict[str, cl.NeuronStats]]
) -> None:
    model = cl.load_model("crane-tiny", device="cuda", dtype="bfloat16")
    for run, methods in RUNS.items():
        bf16 = cl.compute_stats(model, corpus, methods, **(DATA | EXTRA.get(run, {})))
        reference = stats["cuda"][run]
        for statistic in bf16.statistics:  # finite wherever float32 is
            finite = torch.isfinite(reference.scores(statistic))
            assert torch.isfinite(bf16.scores(statistic)[finite]).all(), statistic
        if run == "gradient":
            for i, lang in enumerate(bf16.langs):
                rho = spearman(bf16.scores("crane")[i], reference.scores("crane")[i])
                assert rho > MIN_SPEARMAN, (lang, rho)
