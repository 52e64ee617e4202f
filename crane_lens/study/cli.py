"""``crane-lens study``: its options and what it runs."""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path
from typing import Any

log = logging.getLogger("crane_lens")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def add_study_command(sub: Any, formatter: type[argparse.HelpFormatter], dtype_help: str) -> None:
    """Add ``study`` to the ``crane-lens`` subcommands."""
    from crane_lens.study.config import PRESETS, STAGES, StudyConfig

    d = StudyConfig()
    parser = sub.add_parser(
        "study",
        help="reproduce the paper's measurements for one model, resumable",
        description="Every measurement of the CRANE paper for one model, each stage saved as "
        "soon as it is done: statistics of every method (and the stability of their sets), "
        "ablation matrices with random control sets and 95 % intervals, the budget sweep, "
        "zero- vs mean-ablation, LRP variants (CP-LRP, log-probability target), exact "
        "single-neuron causality, benchmarks under masking, sets selected against three "
        "languages or all and, with --chat-model, base → chat transfer. Every option is checked "
        "before any work starts; the same command continues an interrupted study and, with "
        "--write-docs, fills a results page from whatever is finished. Presets: "
        + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()) + ".",
        formatter_class=formatter,
    )  # fmt: skip
    add = parser.add_argument
    add("--model", default=d.model, help="built-in or installed name, folder or hub id")
    add("--preset", default=d.preset, choices=list(PRESETS), help="which languages")
    add(
        "--langs",
        default=None,
        help="comma-separated languages instead of the preset's (default: the preset's)",
    )
    add("--budget", type=float, default=d.budget,
        help="main budget: neurons per language, a fraction of all MLP neurons")  # fmt: skip
    add("--sweep", default=",".join(f"{x:g}" for x in d.sweep),
        help="further budgets of the sweep, comma-separated (CRANE and LAPE)")  # fmt: skip
    add("--max-tokens", type=int, default=d.max_tokens_per_lang,
        help="training tokens per language for the statistics")  # fmt: skip
    add("--eval-tokens", type=int, default=d.eval_tokens_per_lang,
        help="held-out tokens per language for every ablation matrix")  # fmt: skip
    add("--seq-len", type=int, default=d.seq_len, help="tokens per statistics block")
    add("--eval-seq-len", type=int, default=d.eval_seq_len,
        help="tokens per held-out block: the unit the intervals resample (--eval-tokens / "
        "--eval-seq-len blocks per language; 8 or more advised)")  # fmt: skip
    add("--batch-size", type=int, default=d.batch_size, help="blocks per statistics pass")
    add("--eval-batch-size", type=int, default=d.eval_batch_size,
        help="rows per ablation pass (memory and speed only)")  # fmt: skip
    add("--random-seeds", type=int, default=d.random_seeds,
        help="random control sets per language for CRANE and LAPE")  # fmt: skip
    add("--random-langs", default=None, choices=["all", "own"],
        help="evaluate random sets on every language or their own only (default: all for "
        "--preset paper, own for full)")  # fmt: skip
    add("--causal-layers", default=None,
        help="layers of the single-neuron ablations, comma-separated (default: first, middle, "
        "last)")  # fmt: skip
    add("--causal-neurons", type=int, default=d.causal_neurons,
        help="neurons sampled per causal layer")  # fmt: skip
    add("--mc-items", type=int, default=d.mc_items, help="multiple-choice items per language")
    add("--mc-origins", default=None,
        help="corpus origins of the multiple-choice items, comma-separated (default: all)")  # fmt: skip
    add("--steer-strengths", default=",".join(f"{x:g}" for x in d.steer_strengths),
        help="strengths s of the steering stage, comma-separated (replace: h' = (1-s)h + s*mean)")  # fmt: skip
    add("--steer-prompts", type=int, default=d.steer_prompts,
        help="held-out prompts per language of the steering stage")  # fmt: skip
    add("--steer-random-seeds", type=int, default=d.steer_random_seeds,
        help="random control sets per target of the steering stage")  # fmt: skip
    add("--chat-model", default=None,
        help="a fine-tuned version of --model for the transfer stage (default: no transfer)")  # fmt: skip
    add("--stages", default=",".join(STAGES), help="stages to run, comma-separated")
    add("--sets", default=None,
        help="the sets whose matrices are measured, comma-separated labels as in the page's "
        "tables, e.g. 'crane,lape,crane (CP-LRP)' (default: all; crane and lape always)")  # fmt: skip
    add("--dtype", default=d.dtype, help=dtype_help)
    add("--device", default=None, help="cpu, cuda, cuda:1... (default: CUDA when available)")
    add("--out", default=None,
        help="the study folder (default: $CRANE_LENS_HOME/studies/MODEL-PRESET, outside any "
        "work tree)")  # fmt: skip
    add("--write-docs", default=None, metavar="PAGE",
        help="fill PAGE's generated blocks and export its figures beside it (default: none)")  # fmt: skip
    add("--docs-only", action="store_true",
        help="with --write-docs: load no model, write what is finished")  # fmt: skip
    add("-q", "--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_study_command)


def config_from_args(args: argparse.Namespace) -> Any:
    from crane_lens.data import canonical_lang
    from crane_lens.study.config import StudyConfig

    langs = [canonical_lang(x.strip()) for x in args.langs.split(",")] if args.langs else None
    return StudyConfig(
        model=args.model, preset=args.preset, langs=langs, budget=args.budget,
        sweep=_floats(args.sweep), max_tokens_per_lang=args.max_tokens,
        eval_tokens_per_lang=args.eval_tokens, seq_len=args.seq_len,
        eval_seq_len=args.eval_seq_len, batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size, random_seeds=args.random_seeds,
        random_langs=args.random_langs,
        causal_layers=_ints(args.causal_layers) if args.causal_layers else None,
        causal_neurons=args.causal_neurons, mc_items=args.mc_items,
        mc_origins=args.mc_origins.split(",") if args.mc_origins else None,
        steer_strengths=_floats(args.steer_strengths), steer_prompts=args.steer_prompts,
        steer_random_seeds=args.steer_random_seeds,
        chat_model=args.chat_model, dtype=args.dtype, device=args.device,
        stages=[s.strip() for s in args.stages.split(",") if s.strip()],
        sets=[s.strip() for s in args.sets.split(",") if s.strip()] if args.sets else None,
    )  # fmt: skip


# StudyConfig field -> its option, where the two names differ.
_FLAGS = {"max_tokens_per_lang": "--max-tokens", "eval_tokens_per_lang": "--eval-tokens"}


def study_command(config: Any, page: str | Path | None = None) -> str:
    """The ``crane-lens study`` command of ``config``: every setting that differs from the
    defaults (the device and the stages aside), then ``--write-docs PAGE``; what a results page
    quotes, from the study's own settings, so it reproduces the study whatever command redrew the
    page. Every stage: a page shows all that the study has finished and names what it has not,
    whichever stages the last command ran.

    Example:
        >>> from crane_lens.study import StudyConfig
        >>> study_command(StudyConfig(model="gemma-3-270m", preset="full", sweep=[0.01]), "p.md")
        'crane-lens study --model gemma-3-270m --preset full --sweep 0.01 --write-docs p.md'
    """
    from crane_lens.study.config import StudyConfig

    default = StudyConfig()
    shown = ["crane-lens", "study", "--model", config.model, "--preset", config.preset]
    for name, value in config.to_dict().items():
        if name in ("model", "preset", "device", "stages") or value == getattr(default, name):
            continue
        flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
        if isinstance(value, list):
            value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        shown += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if page is not None:
        shown += ["--write-docs", str(page)]
    return shlex.join(shown)


def run_study_command(args: argparse.Namespace) -> int:
    from crane_lens.study.page import write_page
    from crane_lens.study.run import StudyResult, default_folder, study

    config = config_from_args(args)
    folder = Path(args.out) if args.out else default_folder(config)
    if args.docs_only and not args.write_docs:
        raise ValueError("--docs-only needs --write-docs PAGE.")
    if args.write_docs:
        from crane_lens.report.export import check_exporter

        check_exporter()  # the figures need kaleido and a browser: say so before hours of work
    log.info("study folder %s", folder)
    if args.docs_only:
        result = StudyResult.load(folder)
    else:
        study(config, folder, progress=not args.quiet)
        result = StudyResult.load(folder)
    if args.write_docs:
        write_page(result, args.write_docs, study_command(result.config, args.write_docs))
    print(f"study in {folder}" + (f"; not finished: {', '.join(result.missing)}"  # noqa: T201
                                  if result.missing else ""))  # fmt: skip
    return 0
