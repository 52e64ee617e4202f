"""Test tiers across the whole collection — tests/, the doctests in crane_lens/ and notebooks/.

``-m "not integration"`` is meant to be the fast tier (``make test-fast``): every test that loads
a model must carry the ``integration`` marker. Tests in tests/ are marked by hand; here the
doctests whose examples load a model (``load_model(``: the embedded demo model, and with it
transformers and TransformerLens) and every notebook cell (each notebook starts a kernel that
loads a model) are marked too.
"""

from __future__ import annotations

import os

import pytest


def _one_share_of_the_cores() -> None:
    """Under pytest-xdist, give each worker its share of the cores (and the notebook kernels and
    subprocesses it starts, through the environment): torch's default of one thread per core in
    every worker oversubscribes the machine, and OpenMP threads that spin-wait on busy cores slow
    each other down several times over."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1 or "OMP_NUM_THREADS" in os.environ:
        return
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


_one_share_of_the_cores()

# Doctests whose examples load the embedded model (or run a study on it).
MODEL_LOADING = ("load_model(", "crane-tiny", "cl.study(")


def _loads_a_model(item: pytest.Item) -> bool:
    if ".ipynb" in item.nodeid:
        return True
    test = getattr(item, "dtest", None)  # a doctest
    if test is None:
        return False
    source = "".join(example.source for example in test.examples)
    return any(call in source for call in MODEL_LOADING)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _loads_a_model(item):
            item.add_marker(pytest.mark.integration)
