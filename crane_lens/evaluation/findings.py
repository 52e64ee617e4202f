"""What a run's numbers say, in words: one conclusion per method and the caveats to read first.

Everything here is computed from the ablation matrices alone, so the sentences of the report
always restate the tables next to them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from crane_lens.evaluation.intervals import DEFAULT_LEVEL, smallest_p_value

if TYPE_CHECKING:
    import pandas as pd

    from crane_lens.evaluation.ablation import AblationMatrix

# Fewer random control sets than this and the random mean/std (so vs_random) are rough.
MIN_STABLE_SEEDS = 5
# The p-value a set must reach against its random sets, where the number of random sets allows
# it (19 or more); with fewer the best a set can do is beat every random set (p = 1 / (n + 1)).
SIGNIFICANCE = 0.05
# Held-out blocks per language below which bootstrap intervals are clearly too narrow.
MIN_BLOCKS = 8
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


def beats_random(p_value: float, n_random: int) -> bool:
    """Whether a set hurts its language more than its random control sets do: p ≤
    :data:`SIGNIFICANCE` where ``n_random`` allows it, else above every random set (p at its
    floor, 1 / (n_random + 1)).

    Example:
        >>> beats_random(1 / 6, 5), beats_random(2 / 6, 5)  # 5 sets: above all of them or not
        (True, False)
        >>> beats_random(0.05, 19), beats_random(0.1, 19)
        (True, False)
    """
    if not (n_random > 0 and math.isfinite(p_value)):
        return False
    return p_value <= max(SIGNIFICANCE, smallest_p_value(n_random)) + 1e-12


def random_rule(n_random: int) -> str:
    """What :func:`beats_random` asks of a set, in words, with what ``n_random`` allows.

    Example:
        >>> random_rule(5)
        'above all 5 of its random sets (p = 0.17, the smallest p 5 random sets allow; p ≤ 0.05 needs 19 or more)'
        >>> random_rule(20)
        'above its random sets at p ≤ 0.05 (20 random sets)'
    """
    floor = smallest_p_value(n_random)
    if floor <= SIGNIFICANCE:
        return f"above its random sets at p ≤ {SIGNIFICANCE:g} ({n_random} random sets)"
    needed = math.ceil(1 / SIGNIFICANCE) - 1
    sets = "its one random set" if n_random == 1 else f"all {n_random} of its random sets"
    allow = "1 random set allows" if n_random == 1 else f"{n_random} random sets allow"
    return (f"above {sets} (p = {floor:.2f}, the smallest p {allow}; p ≤ {SIGNIFICANCE:g} "
            f"needs {needed} or more)")  # fmt: skip


def _value(row: Mapping[str, object] | pd.Series, key: str) -> float:
    value = row.get(key, math.nan)
    return float(value) if value is not None else math.nan  # type: ignore[arg-type]


def clear_effect(row: Mapping[str, object] | pd.Series) -> bool:
    """Whether a set's own ΔNLL is large and clearly not chance, so that its selectivity index
    means something. ``row`` is a row of :meth:`AblationMatrix.selectivity`: own ≥
    :data:`MIN_EFFECT`; with an interval, its lower end above 0; with random control sets,
    also own − max(random own, 0) ≥ :data:`MIN_EFFECT` and :func:`beats_random`.

    The index is a ratio: a set that raises its language's NLL by 0.03 nats/token and the
    others' by 0.001 gets 0.94, as high as one that raises it by 0.5. Random sets that lower the
    NLL (random own < 0) do not lower the bar.

    Example:
        >>> clear_effect({"own": 0.23}), clear_effect({"own": 0.029})
        (True, False)
        >>> clear_effect({"own": 0.23, "own_low": -0.01})  # the interval reaches 0
        False
        >>> clear_effect({"own": 0.3, "random_own": 0.01, "p_value": 1 / 6, "n_random": 5})
        True
        >>> clear_effect({"own": 0.12, "random_own": 0.09, "p_value": 1 / 6, "n_random": 5})
        False
    """
    own = _value(row, "own")
    if not own >= MIN_EFFECT:
        return False
    low = _value(row, "own_low")
    if math.isfinite(low) and not low > 0:
        return False
    random_own = _value(row, "random_own")
    if math.isnan(random_own):
        return True
    n_random = int(_value(row, "n_random")) if math.isfinite(_value(row, "n_random")) else 0
    return own - max(random_own, 0.0) >= MIN_EFFECT and beats_random(
        _value(row, "p_value"), n_random
    )


def _clear_rows(sel: pd.DataFrame) -> list[bool]:
    """:func:`clear_effect` of every row of a selectivity table."""
    return [clear_effect(row) for _, row in sel.iterrows()]


def _interval(row: Mapping[str, object] | pd.Series, key: str, label: str = "") -> str:
    """`` [0.55, 0.85]`` (after ``label``) for a key with bounds, else ``""``.

    Example:
        >>> _interval({"own_low": 0.55, "own_high": 0.851}, "own", "95 % CI ")
        ' [95 % CI 0.55, 0.85]'
        >>> _interval({"own": 0.7}, "own")
        ''
    """
    low, high = _value(row, f"{key}_low"), _value(row, f"{key}_high")
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    text = f"{low:.2f}, {high:.2f}" if key == "index" else f"{_nats(low)}, {_nats(high)}"
    return f" [{label}{text.replace('-', chr(0x2212))}]"


def method_conclusion(matrix: AblationMatrix) -> str:
    """One line on what masking a method's sets does, computed from its selectivity table.

    Means over the masked languages of the own ΔNLL, the others' ΔNLL and the selectivity index,
    each with its bootstrap interval where the matrix has per-block results; with random control
    sets, how many languages beat them (:func:`beats_random`), said with what the number of
    random sets allows.

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> m = AblationMatrix(
        ...     "crane", "zero", ["en", "zh"], ["en", "zh"], {"en": 2.0, "zh": 3.0},
        ...     {"en": {"en": 2.5, "zh": 3.0}, "zh": {"en": 2.1, "zh": 3.9}},
        ...     {"en": {"en": [2.0, 2.02], "zh": [3.0, 3.0]},
        ...      "zh": {"en": [2.0, 2.0], "zh": [3.0, 3.01]}}, {"en": 41, "zh": 41})
        >>> print(method_conclusion(m))  # doctest: +NORMALIZE_WHITESPACE
        crane: masking a language's 41 neurons raises its own NLL by 0.70 nats/token vs 0.050 on
        the others (index 0.90 mean); 2/2 languages above all 2 of its random sets (p = 0.33,
        the smallest p 2 random sets allow; p ≤ 0.05 needs 19 or more).
    """
    sel = matrix.selectivity()
    summary = matrix.summary()
    own, others = summary["own"], summary["others"]
    sizes = [int(x) for x in sel["n_neurons"].dropna()]
    verb = "raises" if own >= 0 else "lowers"
    level = f"{round(100 * DEFAULT_LEVEL):g} % CI "
    # "lowers by 0.10 [0.09, 0.11]": the interval of the size of the change, as the text says it.
    flip = ({"own_low": -summary.get("own_high", math.nan),
             "own_high": -summary.get("own_low", math.nan)} if own < 0 else summary)  # fmt: skip
    text = (f"{matrix.method}: masking a language's {_sizes(sizes) if sizes else '?'} neurons "
            f"{verb} its own NLL by {_nats(abs(own))} nats/token{_interval(flip, 'own', level)} "
            f"vs {_nats(others)}{_interval(summary, 'others')} on the others (index "
            f"{summary['index']:.2f}{_interval(summary, 'index')} mean)")  # fmt: skip
    if "p_value" in sel:
        rows = sel.dropna(subset=["p_value"])
        n_random = int(rows["n_random"].min()) if len(rows) else 0
        above = sum(beats_random(float(r.p_value), int(r.n_random)) for r in rows.itertuples())
        rule = random_rule(n_random) if n_random else "above its random sets"
        text += f"; {above}/{len(rows)} languages {rule}"
    if "own_low" in summary:
        text += f"; intervals resample {_blocks(matrix)} held-out blocks per language"
    return text + "."


def _blocks(matrix: AblationMatrix) -> str:
    """``8`` or ``6–8``: held-out blocks per language behind the intervals."""
    counts = sorted({len(n) for n in (matrix.per_block or {}).get("tokens", {}).values()})
    if not counts:
        return "0"
    return f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


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

    has_interval = any("own_low" in sel and sel["own_low"].notna().any() for sel in tables.values())
    rule = (
        f"own ΔNLL ≥ {MIN_EFFECT:g} nats/token"
        + (", its interval above 0" if has_interval else "")
        + (", also beyond random sets of its sizes, and above them" if has_random else "")
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
                 f"{n - counted[leader]} of its {n} sets "
                 f"{'raises its' if n - counted[leader] == 1 else 'raise their'} own NLL by less "
                 f"than {MIN_EFFECT:g} nats/token"
                 f"{' or not clearly more than random sets' if has_random else ''}"
                 f"{', or with an interval that reaches 0' if has_interval else ''}: "
                 "their high index rests on a tiny effect.")  # fmt: skip
    return text


def _listing(items: list[str]) -> str:
    return ", ".join(items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")


def run_warnings(matrices: Mapping[str, AblationMatrix]) -> list[str]:
    """The estimates of a run that need care, one sentence each (empty when none).

    Checks: few or no random control seeds (fewer than :data:`MIN_STABLE_SEEDS`; the conclusions
    say what the p-values of more can show), intervals that are
    unavailable or rest on few held-out blocks, random sets that lower the NLL or leave it
    unchanged (random_own ≤ 0: vs_random = own − random_own then credits the set with their
    improvement too), empty sets, sets without a clear own effect (:func:`clear_effect`: their
    index rests on a tiny ΔNLL), and set sizes that differ between methods for the same language.

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> def toy(name, size, seeds):
        ...     return AblationMatrix(name, "zero", ["en"], ["en"], {"en": 1.0}, {"en": {"en": 1.5}},
        ...                           {"en": {"en": [1.1] * seeds}}, {"en": size})
        >>> for line in run_warnings({"crane": toy("crane", 41, 5), "lape": toy("lape", 17, 5)}):
        ...     print(line)  # doctest: +ELLIPSIS
        No intervals: this matrix was saved before crane_lens kept per-block results; ...
        Set sizes differ between methods (en: crane 41, lape 17): ...
    """
    warnings = []
    seeds = sorted({len(v) for x in matrices.values() for row in x.random_nll.values()
                    for v in row.values()})  # fmt: skip
    rerun = ("Re-run with --random-seeds {n} or more (with --stats-from this folder it costs "
             "no new statistics).")  # fmt: skip
    needed = math.ceil(1 / SIGNIFICANCE) - 1
    if not seeds or seeds[0] == 0:
        warnings.append(
            "No random control sets (--random-seeds 0): vs_random and the p-values are missing, "
            "so nothing here tells whether a set hurts its language more than arbitrary neurons "
            "would."
        )
    elif seeds[0] < MIN_STABLE_SEEDS:
        warnings.append(
            f"Only {seeds[0]} random control set{'s' if seeds[0] > 1 else ''} per language: "
            "the random sets' mean (random own, so vs_random) is a rough estimate, and a set's "
            f"p-value against them cannot go below {smallest_p_value(seeds[0]):.2f} (p ≤ "
            f"{SIGNIFICANCE:g} needs {needed} or more). " + rerun.format(n=MIN_STABLE_SEEDS)
        )
    reasons = {m.intervals_unavailable() for m in matrices.values()} - {None}
    if reasons:
        warnings.append(f"No intervals: {'; '.join(sorted(r for r in reasons if r))}.")
    blocks = [len(n) for m in matrices.values() if m.intervals_unavailable() is None
              for n in (m.per_block or {}).get("tokens", {}).values()]  # fmt: skip
    if blocks and min(blocks) < MIN_BLOCKS:
        warnings.append(
            f"Intervals rest on {min(blocks)} held-out block{'s' if min(blocks) > 1 else ''} per "
            f"language (fewer than {MIN_BLOCKS}): the bootstrap then covers less than its "
            f"nominal {round(100 * DEFAULT_LEVEL):g} % (about 88 % with 8 blocks in simulations), "
            "so read the intervals as too narrow; more held-out text (--eval-tokens) gives more "
            "blocks."
        )
    not_raised, empty, weak = [], [], []
    for method, matrix in matrices.items():
        sel = matrix.selectivity()
        for (lang, row), clear in zip(sel.iterrows(), _clear_rows(sel), strict=True):
            if row.get("n_neurons") == 0:
                empty.append(f"{method} {lang}")
            elif not clear:
                weak.append(f"{method} {lang}")
            if (
                "random_own" in sel
                and not row["random_own"] > 0
                and not math.isnan(row["random_own"])
            ):
                not_raised.append(f"{method} {lang}")
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
        plural = len(weak) > 1
        beyond = ("; or the interval of its own ΔNLL reaches 0" if not plural else
                  "; or the interval of their own ΔNLL reaches 0")  # fmt: skip
        if has_random:
            beyond += (f"; or {'it does' if not plural else 'they do'} not beat random sets of "
                       "the same sizes by that much (vs_random) or not all of them")  # fmt: skip
        warnings.append(
            f"Small own effects: {'the sets' if plural else 'the set'} {_listing(weak)} "
            f"{'raise' if plural else 'raises'} {'their' if plural else 'its'} own "
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
            "own sizes per language (LAPE's match the others' on average only), and a larger "
            "set tends to hurt more, so compare own and others across "
            "methods with care; vs_random and the p-values compare each set with random sets of "
            "its own per-layer sizes."
        )
    return warnings
