"""What a run's numbers say, in words: one conclusion per method and the caveats to read first.

Everything here is computed from the ablation matrices alone, so the sentences of the report
always restate the tables next to them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crane_lens.evaluation.ablation import AblationMatrix

# Fewer random control sets than this and the random mean/std (so vs_random and z) are rough.
MIN_STABLE_SEEDS = 5
# z at or above this: the set hurts its language clearly more than random sets of its sizes.
Z_CLEAR = 2.0


def _nats(x: float) -> str:
    """A ΔNLL in nats/token at a precision that keeps small effects visible."""
    return f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.3f}"


def _sizes(sizes: list[int]) -> str:
    low, high = min(sizes), max(sizes)
    if low == high:
        return f"{low}"
    return f"{low}–{high} (mean {sum(sizes) / len(sizes):.0f})"


def beats_random(own: float, random_mean: float, random_std: float) -> bool:
    """Whether a set's own ΔNLL is clearly above random sets of its sizes: z ≥ 2, or, where the
    random std is 0 or undefined (one seed), above the random mean.

    Example:
        >>> beats_random(0.5, 0.1, 0.1), beats_random(0.25, 0.1, 0.1)
        (True, False)
        >>> beats_random(0.2, 0.1, float("nan"))  # one seed: no z, the mean decides
        True
    """
    if math.isfinite(random_std) and random_std > 0:
        return (own - random_mean) / random_std >= Z_CLEAR
    return own > random_mean


def method_conclusion(matrix: AblationMatrix) -> str:
    """One line on what masking a method's sets does, computed from its selectivity table.

    Means over the masked languages: own ΔNLL, the others' ΔNLL and the selectivity index; with
    random control sets, how many languages beat them (:func:`beats_random`).

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> m = AblationMatrix(
        ...     "crane", "zero", ["en", "zh"], ["en", "zh"], {"en": 2.0, "zh": 3.0},
        ...     {"en": {"en": 2.5, "zh": 3.0}, "zh": {"en": 2.1, "zh": 3.9}},
        ...     {"en": {"en": [2.0, 2.02], "zh": [3.0, 3.0]},
        ...      "zh": {"en": [2.0, 2.0], "zh": [3.0, 3.01]}}, {"en": 41, "zh": 41})
        >>> print(method_conclusion(m))  # doctest: +NORMALIZE_WHITESPACE
        crane: masking a language's 41 neurons raises its own NLL by 0.70 nats/token vs 0.050 on
        the others (index 0.90 mean; 2/2 languages clearly above the random control, z ≥ 2).
    """
    sel = matrix.selectivity()
    own, others = float(sel["own"].mean()), float(sel["others"].mean())
    sizes = [int(x) for x in sel["n_neurons"].dropna()]
    verb = "raises" if own >= 0 else "lowers"
    text = (f"{matrix.method}: masking a language's {_sizes(sizes) if sizes else '?'} neurons "
            f"{verb} its own NLL by {_nats(abs(own))} nats/token vs {_nats(others)} on the "
            f"others (index {float(sel['index'].mean()):.2f} mean")  # fmt: skip
    if "random_own" in sel:
        rows = sel.dropna(subset=["random_own"])
        above = sum(beats_random(float(r.own), float(r.random_own), float(r.random_own_std))
                    for r in rows.itertuples())  # fmt: skip
        no_z = sum(not (math.isfinite(x) and x > 0) for x in rows["random_own_std"])
        rule = (f"clearly above the random control, z ≥ {Z_CLEAR:g}" if no_z == 0 else
                "above the random sets' mean, z undefined" if no_z == len(rows) else
                f"above the random control: z ≥ {Z_CLEAR:g} or, where z is undefined, above "
                "the random mean")  # fmt: skip
        text += f"; {above}/{len(rows)} languages {rule}"
    return text + ")."


def ranking(matrices: Mapping[str, AblationMatrix]) -> str | None:
    """The methods ordered by their mean selectivity index (``None`` for a single method).

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> def toy(name, hit):
        ...     return AblationMatrix(name, "zero", ["en", "zh"], ["en", "zh"],
        ...                           {"en": 1.0, "zh": 1.0},
        ...                           {"en": {"en": 1 + hit, "zh": 1.1}, "zh": {"en": 1.1, "zh": 1 + hit}})
        >>> ranking({"lape": toy("lape", 0.2), "crane": toy("crane", 0.9)})
        'Highest mean selectivity index: crane (0.80), then lape (0.33).'
    """
    if len(matrices) < 2:
        return None
    index = {m: float(x.selectivity()["index"].mean()) for m, x in matrices.items()}
    order = sorted(index, key=lambda m: -index[m] if math.isfinite(index[m]) else math.inf)
    rest = ", ".join(f"{m} ({index[m]:.2f})" for m in order[1:])
    return f"Highest mean selectivity index: {order[0]} ({index[order[0]]:.2f}), then {rest}."


def _listing(items: list[str]) -> str:
    return ", ".join(items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")


def run_warnings(matrices: Mapping[str, AblationMatrix]) -> list[str]:
    """The estimates of a run that need care, one sentence each (empty when none).

    Checks: few or no random control seeds (vs_random and z rest on them), a random std of 0 or
    NaN (z undefined), random sets that lower the NLL or leave it unchanged (random_own ≤ 0:
    vs_random = own − random_own then credits the set with their improvement too), empty sets,
    and set sizes that differ between methods for the same language.

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> def toy(name, size, seeds):
        ...     return AblationMatrix(name, "zero", ["en"], ["en"], {"en": 1.0}, {"en": {"en": 1.5}},
        ...                           {"en": {"en": [1.1] * seeds}}, {"en": size})
        >>> for line in run_warnings({"crane": toy("crane", 41, 5), "lape": toy("lape", 17, 5)}):
        ...     print(line)  # doctest: +ELLIPSIS
        z is undefined for crane en, lape en: the random sets' ΔNLL has a standard deviation of 0...
        Set sizes differ between methods (en: crane 41, lape 17): ...
    """
    warnings = []
    seeds = sorted({len(v) for x in matrices.values() for row in x.random_nll.values()
                    for v in row.values()})  # fmt: skip
    if not seeds or seeds[0] == 0:
        warnings.append(
            "No random control sets (--random-seeds 0): vs_random and z are missing, so nothing "
            "here tells whether a set hurts its language more than arbitrary neurons would."
        )
    elif seeds[0] < MIN_STABLE_SEEDS:
        rerun = (f"Re-run with --random-seeds {MIN_STABLE_SEEDS} or more (with --stats-from this "
                 "folder it costs no new statistics).")  # fmt: skip
        if seeds[0] == 1:
            warnings.append(
                "Only 1 random control seed: the random sets have no standard deviation, so z is "
                "undefined, and vs_random compares each set with a single random set. " + rerun
            )
        else:
            warnings.append(
                f"Only {seeds[0]} random control seeds: the random sets' mean and standard "
                "deviation, and so vs_random and z, are rough estimates (a std from "
                f"{seeds[0]} samples can be off several-fold). " + rerun
            )
    no_z, not_raised, empty = [], [], []
    for method, matrix in matrices.items():
        sel = matrix.selectivity()
        for lang, row in sel.iterrows():
            if row.get("n_neurons") == 0:
                empty.append(f"{method} {lang}")
            if "random_own_std" in sel and not math.isnan(row["random_own"]):
                std = float(row["random_own_std"])
                if not (math.isfinite(std) and std > 0):
                    no_z.append(f"{method} {lang}")
                if not row["random_own"] > 0:
                    not_raised.append(f"{method} {lang}")
    if no_z and seeds and seeds[0] > 1:  # one seed is covered by the warning above
        warnings.append(
            f"z is undefined for {_listing(no_z)}: the random sets' ΔNLL has a standard deviation "
            "of 0 or NaN, so it says nothing about their spread; compare own with random_own."
        )
    if not_raised:
        warnings.append(
            f"Random sets do not raise the NLL for {_listing(not_raised)}: masking random "
            "neurons of the same per-layer sizes lowered that language's NLL or left it "
            "unchanged on average (random_own ≤ 0), so vs_random = own − random_own exceeds "
            "own there: it counts that improvement too. Read own beside it."
        )
    if empty:
        warnings.append(
            f"Empty sets: {_listing(empty)} selected no neurons; their rows measure nothing."
        )
    langs = dict.fromkeys(lang for x in matrices.values() for lang in x.masked)
    differ = []
    for lang in langs:
        sizes = {m: x.n_neurons.get(lang) for m, x in matrices.items() if lang in x.n_neurons}
        if len(set(sizes.values())) > 1:
            differ.append(f"{lang}: " + ", ".join(f"{m} {n}" for m, n in sizes.items()))
    if differ:
        warnings.append(
            f"Set sizes differ between methods ({'; '.join(differ[:6])}"
            f"{'; …' if len(differ) > 6 else ''}): LAPE and other threshold rules pick their "
            "own sizes, and a larger set tends to hurt more, so compare own and others across "
            "methods with care; vs_random and z compare each set with random sets of its own "
            "per-layer sizes."
        )
    return warnings
