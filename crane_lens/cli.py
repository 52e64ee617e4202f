"""The ``crane-lens`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from crane_lens.errors import CraneLensError

log = logging.getLogger("crane_lens")


def _add_corpus_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="builtin", help="corpus source (default: builtin)")
    parser.add_argument("--langs", default=None, help="comma-separated languages, or 'all'")
    parser.add_argument("--split", default="train", help="split to load (default: train)")


def _corpus_summary(args: argparse.Namespace) -> int:
    from crane_lens.data import load_corpus

    langs = None if args.langs in (None, "all") else args.langs
    print(load_corpus(args.source, langs=langs, split=args.split).summary())  # noqa: T201
    return 0


def _run(args: argparse.Namespace) -> int:
    # The analysis stages (model, statistics, selection, evaluation) are not part of this
    # release yet; the main job runs the stage that exists, on the embedded default.
    log.info("crane-lens run: data stage (the analysis stages are not in this release yet)")
    return _corpus_summary(args)


def _model_info(args: argparse.Namespace) -> int:
    from crane_lens.model import get_spec, load_model

    model = load_model(args.model, device=args.device, dtype=args.dtype)
    print(get_spec(model).summary())  # noqa: T201
    return 0


def build_parser() -> argparse.ArgumentParser:
    from crane_lens import __version__

    parser = argparse.ArgumentParser(
        prog="crane-lens",
        description="Find and test the language-specific neurons of multilingual LLMs.",
    )
    parser.add_argument("--version", action="version", version=f"crane_lens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the main job on the embedded default")
    _add_corpus_args(run)
    run.set_defaults(func=_run)

    corpus = sub.add_parser("corpus", help="corpus tools")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", required=True)
    summary = corpus_sub.add_parser("summary", help="languages and volumes of a corpus")
    _add_corpus_args(summary)
    summary.set_defaults(func=_corpus_summary)

    model = sub.add_parser("model", help="model tools")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    info = model_sub.add_parser("info", help="load a model and print its ModelSpec")
    info.add_argument(
        "model", nargs="?", default="crane-tiny", help="built-in name, folder or hub id"
    )
    info.add_argument("--device", default=None)
    info.add_argument("--dtype", default=None)
    info.set_defaults(func=_model_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crane-lens`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except CraneLensError as exc:
        # Bad input is the user's to fix: the message says how, a traceback would bury it.
        print(f"crane-lens: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    sys.exit(main())
