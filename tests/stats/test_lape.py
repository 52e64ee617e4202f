"""LAPE against a plain, independently written transcription of the published algorithm."""

from __future__ import annotations

import math

import torch

from crane_lens.stats import lape_entropy, lape_neurons


def _plain_lape(
    probs: list[list[list[float]]], top_rate: float = 0.01
) -> list[set[tuple[int, int]]]:
    """Loops over Python floats: normalise over languages, entropy, 95th-percentile filter,
    lowest-entropy ``top_rate``, assign to every language over the same threshold."""
    n_lang, n_layers, d_mlp = len(probs), len(probs[0]), len(probs[0][0])
    flat = sorted(p for lang in probs for layer in lang for p in layer)
    bar = flat[round(len(flat) * 0.95) - 1]  # kthvalue is 1-based
    scored = []
    for layer in range(n_layers):
        for neuron in range(d_mlp):
            ps = [probs[lang][layer][neuron] for lang in range(n_lang)]
            total = sum(ps)
            normed = [p / total if total > 0 else 0.0 for p in ps]
            entropy = -sum(q * math.log(q) for q in normed if q > 0)
            if not any(p > bar for p in ps):
                entropy = math.inf
            scored.append((entropy, layer, neuron))
    kept = sorted(scored)[: round(len(scored) * top_rate)]
    out: list[set[tuple[int, int]]] = [set() for _ in range(n_lang)]
    for entropy, layer, neuron in kept:
        for lang in range(n_lang):
            if entropy < math.inf and probs[lang][layer][neuron] > bar:
                out[lang].add((layer, neuron))
    return out


def test_lape_matches_plain_implementation_on_random_statistics() -> None:
    generator = torch.Generator().manual_seed(1)
    # Skewed random probabilities, a few neurons almost exclusive to one language.
    probs = torch.rand(5, 6, 200, generator=generator) ** 3
    probs[2, 1, :10] = 0.9
    expected = _plain_lape(probs.tolist(), top_rate=0.02)
    got = lape_neurons(probs, top_rate=0.02)
    assert len(got) == 5 and all(len(layers) == 6 for layers in got)
    for lang in range(5):
        as_set = {(layer, int(n)) for layer, idx in enumerate(got[lang]) for n in idx}
        assert as_set == expected[lang]
    assert sum(len(s) for s in expected) > 10  # the test exercises real assignments


def test_lape_entropy_by_hand() -> None:
    # Two languages, one layer, three neurons: p = (0.5, 0.5) → ln 2; (1, 0) → 0; (0, 0) → inf.
    probs = torch.tensor([[[0.5, 0.9, 0.0]], [[0.5, 0.0, 0.0]]])
    entropy = lape_entropy(probs, ratio=0.5)
    assert math.isclose(float(entropy[0, 0]), math.log(2), rel_tol=1e-6)
    assert float(entropy[0, 1]) == 0.0
    assert math.isinf(float(entropy[0, 2]))
