"""``crane-lens steer``: steering with a finished run's sets and statistics, into its folder.

``RUN_DIR/steering/<method>-<mode>/steering.json`` per method (a
:class:`~crane_lens.evaluation.steering.SteeringMatrix`), checkpointed while it runs, then the
run's report is rewritten with a steering section.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from crane_lens.errors import CraneLensError
from crane_lens.evaluation.steering import STEERING_FILE, SteeringMatrix, steering_matrix
from crane_lens.intervention.steering import STEER_MODES, Statistic, SteerMode
from crane_lens.runs.layout import STEERING_DIR
from crane_lens.runs.result import RunResult

log = logging.getLogger(__name__)


def steering_folder(run_dir: str | os.PathLike[str], method: str, mode: str,
                    statistic: str = "mean") -> Path:  # fmt: skip
    """``RUN_DIR/steering/<method>-<mode>`` (``-median`` added for Kojima's statistic)."""
    suffix = "-median" if statistic == "median" and mode != "add" else ""
    return Path(run_dir) / STEERING_DIR / f"{method}-{mode}{suffix}"


def steer_run(
    run_dir: str | os.PathLike[str],
    targets: Sequence[str],
    *,
    sources: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    mode: SteerMode = "replace",
    strengths: Sequence[float] = (0.5, 1.0, 2.0),
    statistic: Statistic = "mean",
    deactivation: float | None = None,
    random_seeds: int = 2,
    n_prompts: int = 16,
    max_new_tokens: int = 24,
    batch_size: int = 16,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, SteeringMatrix]:
    """Steer prompts towards ``targets`` with each method's sets of a finished run.

    Every argument is checked against the run before the model is loaded. The model is loaded
    as the run computed (its device and dtype, unless ``device`` says otherwise).

    Args:
        run_dir: A folder written by ``crane-lens run``.
        targets: Languages to steer towards (of the run's languages).
        sources: Prompt languages (default: the run's languages).
        methods: The run's methods to steer with (default: all of them).
        mode: ``"replace"``, ``"add"`` or ``"swap"``.
        strengths: Strengths to sweep, each > 0.
        statistic: ``"mean"`` or Kojima's ``"median"`` (a run with the ``kojima`` method).
        deactivation: ``swap``'s deactivation strength (default: each strength).
        random_seeds: Random control sets per target.
        n_prompts: Prompts per language.
        max_new_tokens: Tokens per continuation at most.
        batch_size: Prompts per forward pass.
        device: Where to run (default: the run's device).
        progress: Show progress bars.

    The measurement itself: :func:`~crane_lens.evaluation.steering.steering_matrix`.

    Returns:
        ``{method: SteeringMatrix}``, each also in :func:`steering_folder`.

    Raises:
        CraneLensError: Not a finished run; a language, method or statistic it lacks.
        ValueError: A bad mode, strength or count.
    """
    result = RunResult.load(run_dir)
    langs = result.config.langs
    targets = list(targets)
    sources = list(sources or langs)
    methods = list(methods or result.config.methods)
    if mode not in STEER_MODES:
        raise ValueError(f"--mode {mode}: choose from {', '.join(STEER_MODES)}.")
    if statistic not in ("mean", "median"):
        raise ValueError(f"--statistic {statistic}: choose mean or median.")
    if not strengths or any(not (float(s) > 0) for s in strengths):
        raise ValueError(f"--strength must be > 0 (the unsteered model is measured anyway), not "
                         f"{','.join(map(str, strengths))}.")  # fmt: skip
    if random_seeds < 0 or n_prompts < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError("--random-seeds must be ≥ 0 and --prompts, --max-new-tokens and "
                         "--batch-size ≥ 1.")  # fmt: skip
    for name, chosen in (("--to", targets), ("--from", sources)):
        unknown = [x for x in chosen if x not in langs]
        if unknown or not chosen:
            raise CraneLensError(f"{name} {','.join(chosen) or '(none)'}: this run covers "
                                 f"{', '.join(langs)}.")  # fmt: skip
    if not [s for s in sources if any(s != t for t in targets)]:
        raise CraneLensError("Every prompt language is the target: add another --from language.")
    unknown = [m for m in methods if m not in result.neurons]
    if unknown:
        raise CraneLensError(f"--methods {','.join(unknown)}: this run selected "
                             f"{', '.join(result.neurons)}.")  # fmt: skip
    if statistic == "median" and "kojima" not in result.stats.methods:
        raise CraneLensError("--statistic median needs Kojima's per-block responses: a run with "
                             "--methods including kojima, or --statistic mean.")  # fmt: skip
    # A folder of other settings is refused now, not after the model has loaded.
    asked = {"targets": list(dict.fromkeys(targets)), "sources": list(dict.fromkeys(sources)),
             "mode": mode, "statistic": statistic, "deactivation": deactivation,
             "strengths": sorted({float(s) for s in strengths}), "random_seeds": random_seeds,
             "n_prompts": n_prompts, "max_new_tokens": max_new_tokens}  # fmt: skip
    for method in methods:
        folder = steering_folder(result.folder, method, mode, statistic)
        if (folder / STEERING_FILE).is_file():
            found = SteeringMatrix.load(folder).config
            differ = [k for k, v in asked.items() if found.get(k) != v]
            if differ:
                raise CraneLensError(
                    f"{folder} holds {method}'s steering with other settings "
                    f"({', '.join(differ)} differ); repeat its options to read it, or delete the "
                    "folder to measure again."
                )
    from crane_lens.model.loader import load_model

    dtype = result.resolved.get("dtype", result.config.dtype).removeprefix("torch.")
    model = load_model(result.config.model, device=device or result.resolved.get("device"),
                       dtype=dtype)  # fmt: skip
    out: dict[str, SteeringMatrix] = {}
    for method in methods:
        folder = steering_folder(result.folder, method, mode, statistic)
        log.info("steering with %s's sets (%s) into %s", method, mode, folder)
        out[method] = steering_matrix(
            model, result.neurons[method], result.stats, targets=targets, sources=sources,
            mode=mode, strengths=strengths, statistic=statistic, deactivation=deactivation,
            random_seeds=random_seeds, n_prompts=n_prompts, max_new_tokens=max_new_tokens,
            batch_size=batch_size, output_dir=folder, progress=progress,
        )  # fmt: skip
    from crane_lens.report import write_report

    write_report(result.folder)
    return out
