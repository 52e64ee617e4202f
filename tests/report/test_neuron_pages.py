"""``crane-lens neurons``: the pages of a run's selected neurons, their contexts, in a browser."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

import crane_lens as cl
from crane_lens.cli import main
from crane_lens.pipeline import RunResult
from crane_lens.pipeline.neuron_pages import chosen_neurons, page_name
from tests.report.browser import inspect_page
from tests.report.png import read_png

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pages(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("pages") / "run"
    shutil.copytree(tiny_run, run)  # the shared run stays as it is
    assert main(["neurons", str(run), "--top", "2", "--contexts", "3", "-q"]) == 0
    return run


def test_every_chosen_neuron_has_a_card_linked_from_the_index_and_the_report(pages: Path) -> None:
    result = RunResult.load(pages)
    chosen = chosen_neurons(result, 2)
    # The two highest-scored neurons of each of 2 methods × 3 languages (some shared).
    assert 2 <= len(chosen) <= 12
    for sets in result.neurons.values():
        for lang in sets.langs:
            best = sets.top(2).per_layer(lang)
            assert {(layer, int(i)) for layer, idx in enumerate(best) for i in idx} <= set(chosen)
    index = (pages / "neuron_pages" / "index.html").read_text()
    linked = re.findall(r'href="(L\d+-N\d+\.html)"', index)
    assert linked == [page_name(*n) for n in chosen]
    assert all((pages / "neuron_pages" / name).is_file() for name in linked)
    assert 'href="neuron_pages/index.html"' in (pages / "report.html").read_text()


def test_a_card_shows_each_languages_top_contexts_by_the_neurons_activation(pages: Path) -> None:
    """The contexts pass (the run kept none) found each neuron's top tokens; the page shows
    the neuron's activation at every token of the window, its highest at the outlined one."""
    result = RunResult.load(pages)
    contexts = cl.NeuronStats.load(pages / "contexts")
    assert contexts.n_tokens == result.stats.n_tokens  # the run's training text
    layer, neuron = chosen_neurons(result, 2)[0]
    page = (pages / "neuron_pages" / page_name(layer, neuron)).read_text()
    assert page.count("outline:2px solid") == 3 * len(result.config.langs)
    shown = [float(v) for v in re.findall(r'title="([-+][0-9.e+-]+) activation · top token', page)]
    expected = contexts.contexts(layer, neuron)
    expected = expected[expected["rank"] < 3]["value"].tolist()
    assert shown == pytest.approx(expected, rel=1e-3)
    assert torch.tensor(shown).abs().max() > 0


def test_bad_options_are_refused_before_the_model_loads(
    pages: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("crane_lens.model.loader.load_model", lambda *a, **k: pytest.fail("loaded"))
    assert main(["neurons", str(pages), "--top", "0"]) != 0
    assert "--top must be >= 1, not 0" in capsys.readouterr().err
    assert main(["neurons", str(pages), "--contexts", "40"]) != 0
    assert "--contexts must be 1 to 32" in capsys.readouterr().err
    assert main(["neurons", str(pages / "missing")]) != 0
    assert "missing" in capsys.readouterr().err


def test_the_pages_render_offline_without_errors(pages: Path, browser: str) -> None:
    for page in (pages / "neuron_pages" / "index.html",
                 next((pages / "neuron_pages").glob("L*-N*.html"))):  # fmt: skip
        seen = inspect_page(page, browser, width=1200, scale=0.5)
        assert seen.errors == []
        assert [r for r in seen.requests if not r.startswith(("data:", "file:"))] == []
        shot = read_png(seen.screenshot)
        assert len(shot.colours(step=2)) > 20
