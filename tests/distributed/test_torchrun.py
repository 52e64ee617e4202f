"""Data parallelism under ``torchrun``: two CPU processes (gloo) against one process.

Each launch is ``python -m torch.distributed.run --standalone --nproc_per_node 2``. The worker
(``worker.py``) calls the collective ``compute_stats`` and ``ablation_matrix`` on every rank, or
``crane-lens run`` (``crane_lens.cli.main``), and records what each rank returned and which files
it wrote; the ``crane-lens`` console script itself is launched too. Expected: every rank returns
the same result, equal to the single-process one up to float32 summation order — sums are
all-reduced across ranks, so they add in another order (statistics: ``rtol=1e-5``, ``atol=1e-6``
× the largest magnitude of the tensor; NLL and ΔNLL: 1e-6 nats) —, rank 0 alone writes, the
folders hold a complete result, an interrupted launch resumes, and bad input on any rank ends
every rank.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

import crane_lens as cl
from crane_lens.cli import main
from crane_lens.pipeline import RunResult
from crane_lens.stats import engine
from tests.distributed import worker

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("worker.py")
LAUNCH_TIMEOUT_S = 300
NATS_ATOL = 1e-6
STATS_RTOL, STATS_ATOL = 1e-5, 1e-6  # atol relative to the tensor's largest magnitude
LAUNCH = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
CLI_ARGS = ["run", "--max-tokens", "1024", "--eval-tokens", "512", "--random-seeds", "1",
            "--batch-size", "4", "--device", "cpu", "-q"]  # fmt: skip


def descendants(pid: int) -> list[int]:
    """The processes started by ``pid``, their children and so on (from ``/proc``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # "pid (name) state ppid ...": the name may hold spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def torchrun(
    *args: str, env: dict[str, str] | None = None, timeout: float = LAUNCH_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Launch two processes with ``torchrun`` and wait; the whole process group is killed if it
    runs past ``timeout`` seconds."""
    command = [sys.executable, *LAUNCH, *args]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    process = subprocess.Popen(
        command,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # torchrun starts each worker in a session of its own: killing torchrun's group alone
        # leaves them waiting in a collective call until gloo's 30-minute timeout.
        for pid in [process.pid, *descendants(process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"torchrun ran past {timeout} s; its output:\n{output[-8000:]}")
    print(output[-8000:])  # the workers' logs, which pytest shows when the test fails
    return subprocess.CompletedProcess(command, process.returncode, output, "")


def crane_lens_command() -> list[str]:
    """``crane-lens`` for torchrun: the console script, as in the docs (else the module)."""
    script = Path(sys.executable).with_name("crane-lens")
    return [str(script)] if script.is_file() else ["-m", "crane_lens.cli"]


def succeeded(launch: subprocess.CompletedProcess[str]) -> None:
    assert launch.returncode == 0, f"torchrun failed; the workers' output:\n{launch.stdout[-8000:]}"


def records(folder: Path) -> list[dict[str, Any]]:
    found = [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [x["rank"] for x in found] == [0, 1] and all(x["world_size"] == 2 for x in found)
    return found


def assert_stats_close(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(actual) == sorted(expected)
    for name, want in expected.items():
        scale = float(want.abs().max()) if want.numel() and want.isfinite().all() else 1.0
        try:
            torch.testing.assert_close(actual[name], want, rtol=STATS_RTOL, atol=STATS_ATOL * scale)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def assert_same_tree(actual: Any, expected: Any, atol: float, where: str = "") -> None:
    """Equal structure and values; floats within ``atol``."""
    if isinstance(expected, float) or isinstance(actual, float):
        assert math.isclose(actual, expected, rel_tol=0, abs_tol=atol), (where, actual, expected)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), where
        for key, value in expected.items():
            assert_same_tree(actual[key], value, atol, f"{where}/{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, b) in enumerate(zip(actual, expected, strict=True)):
            assert_same_tree(a, b, atol, f"{where}[{i}]")
    else:
        assert actual == expected, (where, actual, expected)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """In-process work on one thread, like each rank (OMP_NUM_THREADS=1): two threads on a
    shared 2-core machine spin against the launched ranks."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The single-process result, with the neuron sets the ranks mask saved for the worker."""
    folder = tmp_path_factory.mktemp("single")
    model = cl.load_model("crane-tiny", device="cpu")
    stats = worker.statistics(model, folder)
    neurons = cl.select_language_neurons(stats, "crane", budget=0.01)
    neurons_file = neurons.save(folder / "neurons.json")
    matrix = worker.matrix(model, folder, neurons)
    return {
        "model": model,
        "stats": stats,
        "neurons": neurons,
        "neurons_file": neurons_file,
        "matrix": matrix.to_dict(),
    }


def launch_worker(
    out: Path, neurons_file: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], Path]:
    record = out.parent / f"{out.name}_records"
    return torchrun(str(WORKER), str(out), str(record), str(neurons_file), env=env), record


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory, reference: dict[str, Any]) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("distributed") / "out"
    launch, record = launch_worker(out, reference["neurons_file"])
    succeeded(launch)
    return {"out": out, "records": records(record)}


def assert_matches_reference(ranks: list[dict[str, Any]], reference: dict[str, Any]) -> None:
    first, second = ranks
    # Every rank returns the identical result...
    for name, tensor in first["stats"].items():
        torch.testing.assert_close(second["stats"][name], tensor, rtol=0, atol=0)
    assert first["matrix"] == second["matrix"]
    # ...which is the single-process one, up to float32 summation order.
    for rank in ranks:
        assert rank["n_tokens"] == reference["stats"].n_tokens
        assert rank["config"] == reference["stats"].config
        assert_stats_close(rank["stats"], reference["stats"].tensors())
        assert_same_tree(rank["matrix"], reference["matrix"], NATS_ATOL)


def test_every_rank_returns_the_single_process_result(
    launched: dict[str, Any], reference: dict[str, Any]
) -> None:
    ranks = launched["records"]
    assert_matches_reference(ranks, reference)
    # The work was shared out: each rank ran about half of the statistics batches.
    blocks = worker.STATS_KWARGS["max_tokens_per_lang"] // worker.STATS_KWARGS["seq_len"]
    total = len(worker.LANGS) * -(-blocks // worker.STATS_KWARGS["batch_size"])
    assert [r["engine_runs"] for r in ranks] == [total // 2, total // 2]


def test_rank_zero_alone_writes_a_complete_result(
    launched: dict[str, Any], reference: dict[str, Any]
) -> None:
    out, (first, second) = launched["out"], launched["records"]
    assert second["writes"] == []
    writes = pd.Series(first["writes"]).value_counts().to_dict()
    # The result once; checkpoints as pairs (tensors, then their marker); nothing else.
    assert writes.pop("stats/stats.safetensors") == 1 and writes.pop("stats/stats.json") == 1
    checkpoints = writes.pop("stats/checkpoint.safetensors")
    assert checkpoints >= 1 and writes.pop("stats/checkpoint.json") == checkpoints
    assert writes.pop("ablation/ablation_checkpoint.json") >= 1
    assert writes == {}
    # The folders hold the complete result: the statistics rank 0 returned, and an ablation
    # checkpoint from which a single process rebuilds the matrix without a forward pass.
    assert sorted(p.name for p in (out / "stats").iterdir()) == ["stats.json", "stats.safetensors"]
    assert_stats_close(cl.NeuronStats.load(out / "stats").tensors(), first["stats"])
    model = reference["model"]
    forwards = []
    handle = model.register_forward_hook(lambda *_: forwards.append(1))
    try:
        rebuilt = worker.matrix(model, out, reference["neurons"])
    finally:
        handle.remove()
    assert forwards == [] and rebuilt.to_dict() == first["matrix"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_an_interrupted_launch_resumes(
    launched: dict[str, Any],
    reference: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Interrupted after 3 batches per rank: a second launch finishes, and so does one process
    (a checkpoint holds the sums of all ranks)."""
    out = tmp_path / "out"
    crash, _ = launch_worker(out, reference["neurons_file"], {worker.CRASH_ENV: "3"})
    assert crash.returncode != 0, "the interrupted launch did not fail"
    assert "simulated interruption" in crash.stdout
    stats_dir = out / "stats"
    assert (stats_dir / "checkpoint.json").is_file() and not (stats_dir / "stats.json").exists()
    shutil.copytree(out, tmp_path / "one")
    runs: list[Any] = []
    real = engine._Engine.run

    def counted(self: Any, item: Any) -> None:
        runs.append(item)
        real(self, item)

    monkeypatch.setattr(engine._Engine, "run", counted)
    alone = worker.statistics(reference["model"], tmp_path / "one")
    assert 0 < len(runs) < sum(r["engine_runs"] for r in launched["records"])
    assert_stats_close(alone.tensors(), reference["stats"].tensors())
    launch, record = launch_worker(out, reference["neurons_file"])
    succeeded(launch)
    resumed = records(record)
    assert_matches_reference(resumed, reference)
    full = [r["engine_runs"] for r in launched["records"]]
    assert all(0 < r["engine_runs"] < n for r, n in zip(resumed, full, strict=True))


def test_rank_zero_decides_every_resume_when_ranks_see_different_folders(
    launched: dict[str, Any], reference: dict[str, Any], tmp_path: Path
) -> None:
    """Each rank's output folder on its own disk (OUT/node<r>): only rank 0's holds the
    checkpoint (rank 0 alone writes), so a rank deciding from its own folder would start over
    while rank 0 resumes — different work lists, a hang or sums counted twice. Rank 0 decides
    and broadcasts: the interrupted launch resumes, and a finished one is read back, on every
    rank, to the single-process result."""
    out, local = tmp_path / "out", {worker.NODE_LOCAL_ENV: "1"}
    crash, _ = launch_worker(out, reference["neurons_file"], {**local, worker.CRASH_ENV: "3"})
    assert crash.returncode != 0 and "simulated interruption" in crash.stdout
    assert (out / "node0" / "stats" / "checkpoint.json").is_file()
    assert not (out / "node1").exists() or not any((out / "node1").rglob("*.json"))
    full = [r["engine_runs"] for r in launched["records"]]
    for _ in ("resumed", "finished"):
        launch, record = launch_worker(out, reference["neurons_file"], local)
        succeeded(launch)
        ranks = records(record)
        assert_matches_reference(ranks, reference)
        runs = [r["engine_runs"] for r in ranks]
        assert all(n < f for n, f in zip(runs, full, strict=True)), runs
    assert runs == [0, 0]  # the finished statistics and matrix read back on both ranks
    assert not (out / "node1").exists() or not any((out / "node1").rglob("*.json"))


def test_crane_lens_run_under_torchrun_equals_one_process(tmp_path: Path) -> None:
    """``crane-lens run`` on two ranks (``crane_lens.cli.main`` inside the worker, which records
    the files written): the single-process results, one folder and one summary, written by
    rank 0 alone."""
    assert main([*CLI_ARGS, "--out", str(tmp_path / "single"), "--name", "run"]) == 0
    out, records = tmp_path / "torchrun", tmp_path / "records"
    launch = torchrun(
        str(WORKER), "--command", str(records), *CLI_ARGS, "--out", str(out), "--name", "run"
    )
    succeeded(launch)
    assert [p.name for p in out.iterdir()] == ["run"]
    assert launch.stdout.count("# crane-lens run:") == 1  # rank 0's summary
    assert "INFO [rank 1]" not in launch.stdout  # the other rank logs warnings only
    first, second = (json.loads((records / f"rank{r}.json").read_text()) for r in range(2))
    assert first["code"] == second["code"] == 0
    assert second["writes"] == []
    # Rank 0 wrote every file of the folder once (run_config.json twice: started, complete).
    final = Counter(p for p in first["writes"] if "checkpoint" not in Path(p).name)
    assert final.pop("run/run_config.json") == 2 and set(final.values()) == {1}
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert on_disk == {*final, "run/run_config.json"}
    single, distributed = (RunResult.load(x / "run") for x in (tmp_path / "single", out))
    assert distributed.config.comparable() == single.config.comparable()
    assert_stats_close(distributed.stats.tensors(), single.stats.tensors())
    for method in single.config.methods:
        assert distributed.neurons[method].to_dict() == single.neurons[method].to_dict()
        delta = [
            pd.read_csv(run.folder / "ablation" / method / "delta.csv", index_col=0)
            for run in (distributed, single)
        ]
        pd.testing.assert_frame_equal(*delta, rtol=0, atol=NATS_ATOL)
    selectivity = [pd.read_csv(run.folder / "selectivity.csv") for run in (distributed, single)]
    pd.testing.assert_frame_equal(*selectivity, rtol=1e-5, atol=NATS_ATOL)


def test_an_input_error_on_one_rank_ends_every_rank(tmp_path: Path) -> None:
    """Rank 1 alone refuses the run (other settings; the model does not load): rank 0 must
    raise too, not wait for rank 1 in a collective call."""
    launch = torchrun(
        str(WORKER), "--refusals", str(tmp_path / "out"), str(tmp_path / "records"), timeout=120
    )
    succeeded(launch)
    first, second = (
        (tmp_path / "records" / f"rank{r}.txt").read_text().split("\n") for r in range(2)
    )
    assert second == [
        "CraneLensError: The settings of rank 1 differ from rank 0's (budget); every rank must "
        "run the same command.",
        "ModelLoadError: simulated: rank 1 cannot load the model",
    ]
    assert first == [f"CraneLensError: rank 1 failed before the work started: {x}" for x in second]
    assert not (tmp_path / "out").exists()  # refused before rank 0 created the folder


def test_bad_input_is_refused_on_every_rank_by_the_command(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    launch = torchrun(
        *crane_lens_command(), *CLI_ARGS, "--out", str(tmp_path), "--name", "run", timeout=120
    )
    assert launch.returncode != 0
    for prefix in ("crane-lens: error: ", "crane-lens: error (rank 1): "):
        assert (
            f"{prefix}{tmp_path / 'run'} exists and is not a crane-lens run folder" in launch.stdout
        ), launch.stdout[-4000:]
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["notes.txt"]
