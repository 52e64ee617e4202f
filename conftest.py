"""Test tiers across the whole collection — tests/, the doctests in crane_lens/ and notebooks/.

``-m "not integration"`` is meant to be the fast tier (``make test-fast``): every test that loads
a model must carry the ``integration`` marker. Tests in tests/ are marked by hand; here the
doctests whose examples load a model (``load_model(``: the embedded demo model, and with it
transformers and TransformerLens) and every notebook cell (each notebook starts a kernel that
loads a model) are marked too.
"""

from __future__ import annotations

import pytest

MODEL_LOADING = ("load_model(",)


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
