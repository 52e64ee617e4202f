"""Steering costs no memory beyond generation: the edit is one ``h * keep + fill`` per edited
layer under ``torch.no_grad``, no graph is kept. Peak CUDA memory of greedy generation with and
without steering, crane-tiny (skipped without CUDA, like the rest of this tier)."""

from __future__ import annotations

import pytest
import torch

import crane_lens as cl
from crane_lens.evaluation.generation import default_prompts, greedy_generate

pytestmark = [pytest.mark.gpu, pytest.mark.integration]


def test_steered_generation_peaks_no_higher_than_generation() -> None:
    model = cl.load_model("crane-tiny", device="cuda", dtype="float32")
    stats = cl.compute_stats(model, cl.load_corpus("builtin", langs=["en", "vi"]), "crane",
                             max_tokens_per_lang=512, progress=False)  # fmt: skip
    neurons = cl.select_language_neurons(stats, budget=0.05)  # a large set: 5 % of the neurons
    prompts = default_prompts(model, ["en"], n_prompts=16)["en"][0]

    def peak(steered: bool) -> int:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        if steered:
            with cl.steer(model, neurons, "vi", stats=stats, strength=4.0):
                greedy_generate(model, prompts, max_new_tokens=24)
        else:
            greedy_generate(model, prompts, max_new_tokens=24)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before

    greedy_generate(model, prompts, max_new_tokens=2)  # warm-up: kernels, head check
    plain, steered = peak(False), peak(True)
    # The edit's keep/fill vectors (d_mlp floats per edited layer) and one activation-sized
    # temporary per hook: a few hundred KiB on crane-tiny at most.
    assert steered <= plain * 1.05 + (1 << 20), (plain, steered)
