"""One rank of the ``torchrun`` group that ``test_torchrun.py`` launches.

Run as ``python -m torch.distributed.run --standalone --nproc_per_node 2 worker.py OUT RECORD
NEURONS``: every rank loads crane-tiny on the CPU, joins the gloo group, calls the collective
``compute_stats`` (output in ``OUT/stats``) and ``ablation_matrix`` (checkpoint in
``OUT/ablation``) with the same arguments, and saves what it returned, the files it wrote and how
many statistics work items it ran to ``RECORD/rank<r>.pt``. With ``CRANE_LENS_TEST_CRASH_AFTER=N``
in the environment, ``_Engine.run`` raises on its (N+1)-th call on every rank (an interruption);
with ``CRANE_LENS_TEST_NODE_LOCAL_OUT=1``, rank ``r`` uses ``OUT/node<r>`` (a node-local disk).

``worker.py --command RECORD run ...`` runs ``crane-lens run ...`` on every rank and records
which files each rank wrote (:func:`command`); ``worker.py --refusals OUT RECORD`` checks that
an input error on one rank ends every rank of ``pipeline.run`` (:func:`refusals`).

Importing this module does nothing: the test imports :func:`statistics` and :func:`matrix` so
that the single-process reference uses exactly the arguments the ranks use.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LANGS = ["en", "vi", "zh"]
STATS_METHODS = ["crane", "attribution", "lape", "kojima"]
# 3 languages × 1024 tokens in blocks of 64, 4 blocks a batch: 12 work items, a checkpoint every 2.
STATS_KWARGS: dict[str, Any] = {
    "seq_len": 64,
    "batch_size": 4,
    "max_tokens_per_lang": 1024,
    "seed": 0,
    "checkpoint_every": 2,
    "top_contexts": 4,  # merged across ranks and checkpoints like every sum
}
# 10 conditions (baseline, 3 sets, 2 random controls each) × 3 languages in stacks of 4 rows.
ABLATION_KWARGS: dict[str, Any] = {
    "random_seeds": 2,
    "seq_len": 64,
    "max_tokens_per_lang": 256,
    "max_batch_rows": 4,
}
CRASH_ENV = "CRANE_LENS_TEST_CRASH_AFTER"
# With this set, each rank writes and reads its own OUT/node<r>: an output folder on a
# node-local disk, which the other ranks cannot see.
NODE_LOCAL_ENV = "CRANE_LENS_TEST_NODE_LOCAL_OUT"


def statistics(model: Any, out: Path) -> Any:
    """The neuron statistics, written to ``out/stats`` (collective in a process group)."""
    import crane_lens as cl

    train = cl.load_corpus("builtin", langs=LANGS, split="train")
    return cl.compute_stats(
        model, train, STATS_METHODS, output_dir=out / "stats", progress=False, **STATS_KWARGS
    )


def matrix(model: Any, out: Path, neurons: Any) -> Any:
    """The ablation matrix of ``neurons``, checkpointed in ``out/ablation`` (collective)."""
    import crane_lens as cl

    held_out = cl.load_corpus("builtin", langs=LANGS, split="eval")
    return cl.ablation_matrix(
        model, held_out, neurons, checkpoint_dir=out / "ablation", progress=False, **ABLATION_KWARGS
    )


def record_writes(root: Path) -> list[str]:
    """Wrap ``crane_lens.utils.io.atomic_path`` (through which ``write_json``, ``write_text`` and
    every result writer go) in every crane_lens module that holds it; return the list it fills
    with the paths written, relative to ``root``."""
    import importlib

    import crane_lens.utils.io as io

    for writer in (
        "cli",
        "evaluation.ablation",
        "pipeline",
        "selection.neurons",
        "stats.engine",
        "stats.results",
    ):
        importlib.import_module(f"crane_lens.{writer}")  # loaded, so that the wrap reaches them

    original, written = io.atomic_path, []

    @contextlib.contextmanager
    def recording(path: str | os.PathLike[str]) -> Iterator[Path]:
        with original(path) as tmp:
            yield tmp
        target = Path(path).resolve()
        written.append(
            str(target.relative_to(root)) if target.is_relative_to(root) else str(target)
        )

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("crane_lens"):
            for name, value in list(vars(module).items()):
                if value is original:
                    setattr(module, name, recording)
    return written


def count_engine_runs(crash_after: int | None) -> list[int]:
    """Count ``_Engine.run`` calls in the returned one-item list; raise after ``crash_after``."""
    from crane_lens.stats import engine

    real, calls = engine._Engine.run, [0]

    def counted(self: Any, item: tuple[Any, ...]) -> None:
        if crash_after is not None and calls[0] >= crash_after:
            raise RuntimeError(f"simulated interruption after {crash_after} work items")
        calls[0] += 1
        real(self, item)

    engine._Engine.run = counted  # type: ignore[method-assign]
    return calls


def refusals(out: Path, record: Path) -> int:
    """``pipeline.run`` twice, refused on rank 1 alone: first rank 1 runs other settings (a
    budget of 0.02), then rank 1 cannot load the model. Every rank must raise each time (none
    left waiting in a collective call) and no run folder appear. Saves each rank's two errors,
    one a line, to ``RECORD/rank<r>.txt``."""
    import torch

    import crane_lens as cl
    import crane_lens.model
    from crane_lens import pipeline
    from crane_lens.utils import distributed

    assert distributed.init_from_env("cpu"), "not started by torchrun with several processes"
    rank, real = distributed.rank(), crane_lens.model.load_model

    def load_model(*args: Any, **kwargs: Any) -> Any:
        if rank == 1:
            raise cl.ModelLoadError("simulated: rank 1 cannot load the model")
        return real(*args, **kwargs)

    outcomes = []
    for refusal in ("settings", "model"):
        config = pipeline.RunConfig(
            device="cpu",
            max_tokens_per_lang=256,
            eval_tokens_per_lang=256,
            budget=0.02 if refusal == "settings" and rank == 1 else 0.01,
        )
        if refusal == "model":
            crane_lens.model.load_model = load_model
        try:
            pipeline.run(config, out=out, name="run", progress=False)
            outcomes.append("no error")
        except Exception as exc:  # what each rank raised is the result
            outcomes.append(f"{type(exc).__name__}: {exc}")
    record.mkdir(parents=True, exist_ok=True)
    (record / f"rank{rank}.txt").write_text("\n".join(outcomes), encoding="utf-8")
    torch.distributed.destroy_process_group()
    return 0


def command(record: Path, argv: list[str]) -> int:
    """``crane-lens ARGV`` (``crane_lens.cli.main``, which joins the group itself) with its
    writes recorded: saves the exit code and the files written to ``RECORD/rank<r>.json``."""
    import json

    from crane_lens.cli import main as crane_lens_main

    written = record_writes(Path(argv[argv.index("--out") + 1]).resolve())
    code = crane_lens_main(argv)
    record.mkdir(parents=True, exist_ok=True)
    result = json.dumps({"code": code, "writes": written})
    (record / f"rank{os.environ['RANK']}.json").write_text(result, encoding="utf-8")
    return code


def main(argv: list[str]) -> int:
    if argv[0] == "--refusals":
        return refusals(Path(argv[1]).resolve(), Path(argv[2]).resolve())
    if argv[0] == "--command":
        return command(Path(argv[1]).resolve(), argv[2:])
    import torch

    import crane_lens as cl
    from crane_lens.utils import distributed

    out, record, neurons_file = (Path(x).resolve() for x in argv)
    torch.set_num_threads(1)
    assert distributed.init_from_env("cpu"), "not started by torchrun with several processes"
    rank = distributed.rank()
    if os.environ.get(NODE_LOCAL_ENV):
        out = out / f"node{rank}"
    crash = os.environ.get(CRASH_ENV)
    written = record_writes(out)
    calls = count_engine_runs(int(crash) if crash else None)
    model = cl.load_model("crane-tiny", device="cpu")
    neurons = cl.LanguageNeurons.load(neurons_file)
    result: dict[str, Any] = {}  # what this rank returned; empty when it was interrupted
    try:
        stats = statistics(model, out)
        result = {"stats": stats.tensors(), "n_tokens": stats.n_tokens, "config": stats.config}
        result["matrix"] = matrix(model, out, neurons).to_dict()
    finally:
        record.mkdir(parents=True, exist_ok=True)
        tmp = record / f".rank{rank}.tmp"
        torch.save(
            {
                "rank": rank,
                "world_size": distributed.world_size(),
                "writes": written,
                "engine_runs": calls[0],
                **result,
            },
            tmp,
        )
        os.replace(tmp, record / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
