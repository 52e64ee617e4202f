"""What a run's numbers say, in words: one conclusion per method and the caveats to read first.

Everything here is computed from the ablation matrices alone, so the sentences of the report
always restate the tables next to them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from crane_lens.evaluation.ablation import AblationMatrix

# Fewer random control sets than this and the random mean/std (so vs_random and z) are rough.
MIN_STABLE_SEEDS = 5
# z at or above this: the set hurts its language clearly more than random sets of its sizes.
Z_CLEAR = 2.0
# nats/token: the own ΔNLL (and vs_random) a set needs before its selectivity index counts in the
# ranking; e^0.05 ≈ 1.05, a 5 % rise in its language's perplexity. Below it the index, a ratio,
# can reach 1 from an effect too small to matter.
MIN_EFFECT = 0.05


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


def clear_effect(own: float, random_mean: float = math.nan, random_std: float = math.nan) -> bool:
    """Whether a set's own ΔNLL is large and clearly above chance, so that its selectivity
    index means something: own ≥ :data:`MIN_EFFECT`, and, with random control sets, also own −
    random own (``vs_random``) ≥ :data:`MIN_EFFECT` and :func:`beats_random`.

    The index (own − others) / (|own| + |others|) is a ratio: a set that raises its language's
    NLL by 0.03 nats/token and the others' by 0.001 gets 0.94, as high as one that raises it by
    0.5. Random sets that lower the NLL (random own < 0) do not lower the bar.

    Example:
        >>> clear_effect(0.23, 0.01, 0.005), clear_effect(0.029, 0.002, 0.001)
        (True, False)
        >>> clear_effect(0.3), clear_effect(0.12, 0.09, 0.01)  # no random sets; 0.03 beyond them
        (True, False)
    """
    if not own >= MIN_EFFECT:
        return False
    if math.isnan(random_mean):
        return True
    return own - max(random_mean, 0.0) >= MIN_EFFECT and beats_random(own, random_mean, random_std)


def _clear_rows(sel: pd.DataFrame) -> list[bool]:
    """:func:`clear_effect` of every row of a selectivity table."""
    if "random_own" not in sel:
        return [clear_effect(float(own)) for own in sel["own"]]
    return [clear_effect(float(r.own), float(r.random_own), float(r.random_own_std))
            for r in sel.itertuples()]  # fmt: skip


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
    """The methods ranked by selectivity index, counting only sets with a clear own effect
    (``None`` for a single method).

    A set's index counts when masking it clearly hurts its own language (:func:`clear_effect`:
    own ΔNLL ≥ :data:`MIN_EFFECT` nats/token, also beyond random sets of its sizes, and
    clearly above them); any other set counts 0, as it shows no language-specific effect worth
    the name. So a method whose sets barely hurt their own language is not ranked first on an
    index that such tiny effects make high. Each method's mean own ΔNLL is stated beside its
    score, and, when the plain mean index would order the methods differently, a second
    sentence says so.

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> def toy(name, hit, off=0.1):
        ...     return AblationMatrix(name, "zero", ["en", "zh"], ["en", "zh"],
        ...                           {"en": 1.0, "zh": 1.0},
        ...                           {"en": {"en": 1 + hit, "zh": 1 + off},
        ...                            "zh": {"en": 1 + off, "zh": 1 + hit}})
        >>> print(ranking({"lape": toy("lape", 0.03, 0.001), "crane": toy("crane", 0.9)}))
        ... # doctest: +NORMALIZE_WHITESPACE
        Ranked by mean selectivity index, counting a set only where masking it clearly hurts
        its own language (own ΔNLL ≥ 0.05 nats/token; other sets count 0): crane 0.80 (2/2
        sets; own ΔNLL 0.90 mean), then lape 0.00 (0/2; own 0.030; 0.94 over all sets). By the
        plain mean index lape would come first (0.94), but 2 of its 2 sets raise their own NLL
        by less than 0.05 nats/token: their high index rests on a tiny effect.
    """
    if len(matrices) < 2:
        return None
    tables = {m: x.selectivity() for m, x in matrices.items()}
    has_random = any("random_own" in sel for sel in tables.values())
    plain, credited, counted = {}, {}, {}
    for method, sel in tables.items():
        index = [float(x) for x in sel["index"]]
        clear = _clear_rows(sel)
        finite = [x for x in index if math.isfinite(x)]
        plain[method] = sum(finite) / len(finite) if finite else math.nan
        credited[method] = (sum(x if ok and math.isfinite(x) else 0.0
                                for x, ok in zip(index, clear, strict=True)) / len(index)
                            if index else math.nan)  # fmt: skip
        counted[method] = sum(clear)

    def key(scores: dict[str, float]) -> Callable[[str], float]:
        return lambda m: -scores[m] if math.isfinite(scores[m]) else math.inf

    rule = f"own ΔNLL ≥ {MIN_EFFECT:g} nats/token" + (
        ", also beyond random sets of its sizes, and clearly above them" if has_random else ""
    )
    if not any(counted.values()):  # every score 0: an order would be the dict's
        owns = ", ".join(f"{m} {_nats(float(t['own'].mean()))}" for m, t in tables.items())
        return (f"No ranking of the methods: no set of any method clearly hurts its own "
                f"language ({rule}); mean own ΔNLL: {owns} nats/token.")  # fmt: skip
    order = sorted(tables, key=key(credited))

    def part(method: str, first: bool) -> str:
        n, own = len(tables[method]), float(tables[method]["own"].mean())
        sets = f"{counted[method]}/{n}" + (" sets" if first else "")
        own_text = f"own ΔNLL {_nats(own)} mean" if first else f"own {_nats(own)}"
        also = (f"; {plain[method]:.2f} over all sets"
                if counted[method] < n and math.isfinite(plain[method]) else "")  # fmt: skip
        return f"{method} {credited[method]:.2f} ({sets}; {own_text}{also})"

    rest = "".join(
        (", tied with " if f"{credited[a]:.2f}" == f"{credited[b]:.2f}" else ", then ")
        + part(b, False)
        for a, b in itertools.pairwise(order)
    ).removeprefix(", ")
    text = (f"Ranked by mean selectivity index, counting a set only where masking it clearly "
            f"hurts its own language ({rule}; other sets count 0): {part(order[0], True)}, "
            f"{rest}.")  # fmt: skip
    leader = sorted(tables, key=key(plain))[0]
    if leader != order[0]:
        n = len(tables[leader])
        text += (f" By the plain mean index {leader} would come first ({plain[leader]:.2f}), but "
                 f"{n - counted[leader]} of its {n} sets raise their own NLL by less than "
                 f"{MIN_EFFECT:g} nats/token{' or not clearly more than random sets' if has_random else ''}: "
                 "their high index rests on a tiny effect.")  # fmt: skip
    return text


def _listing(items: list[str]) -> str:
    return ", ".join(items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")


def run_warnings(matrices: Mapping[str, AblationMatrix]) -> list[str]:
    """The estimates of a run that need care, one sentence each (empty when none).

    Checks: few or no random control seeds (vs_random and z rest on them), a random std of 0 or
    NaN (z undefined), random sets that lower the NLL or leave it unchanged (random_own ≤ 0:
    vs_random = own − random_own then credits the set with their improvement too), empty sets,
    sets without a clear own effect (:func:`clear_effect`: their index rests on a tiny ΔNLL),
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
    no_z, not_raised, empty, weak = [], [], [], []
    for method, matrix in matrices.items():
        sel = matrix.selectivity()
        for (lang, row), clear in zip(sel.iterrows(), _clear_rows(sel), strict=True):
            if row.get("n_neurons") == 0:
                empty.append(f"{method} {lang}")
            elif not clear:
                weak.append(f"{method} {lang}")
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
    if weak:
        has_random = any("random_own" in m.selectivity() for m in matrices.values())
        beyond = (" or by less than that beyond random sets of the same sizes (vs_random), or not "
                  "clearly more than those" if has_random else "")  # fmt: skip
        warnings.append(
            f"Small own effects: {'the sets' if len(weak) > 1 else 'the set'} {_listing(weak)} "
            f"{'raise' if len(weak) > 1 else 'raises'} {'their' if len(weak) > 1 else 'its'} own "
            f"language's NLL by less than {MIN_EFFECT:g} nats/token (under "
            f"{MIN_EFFECT * 100:g} % in perplexity){beyond}. "
            "The selectivity index is a ratio and can be high on such a tiny effect: read own "
            "beside it. The ranking in the conclusions counts these sets as 0."
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
