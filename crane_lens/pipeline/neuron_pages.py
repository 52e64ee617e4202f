"""``crane-lens neurons RUN_DIR``: static, offline pages for a finished run's selected neurons.

``RUN_DIR/neuron_pages/index.html`` lists every shown neuron (sortable: click a column) and
links one card per neuron (``L<layer>-N<neuron>.html``, :func:`~crane_lens.neuron_card`): its
statistics per language, the sets that hold it, and its top contexts with every token coloured
by its activation (the top ones by magnitude). The top contexts come from the run's statistics when they kept them, else
from a pass over the run's training text into ``RUN_DIR/contexts/`` (resumable; forward and
CRANE backward, as the run's own statistics). The run's report links the pages.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from crane_lens.explore.neuron_card import NeuronCard, contexts_in_blocks, neuron_card
from crane_lens.runs.layout import NEURON_PAGES_DIR
from crane_lens.runs.result import RunResult
from crane_lens.stats.results import NeuronStats
from crane_lens.stats.top_contexts import MAX_TOP_CONTEXTS, TOP_KINDS
from crane_lens.utils.io import write_text
from crane_lens.utils.progress import tqdm

log = logging.getLogger(__name__)

CONTEXTS_DIR = "contexts"
PAGE_STYLE = """body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#222}
main{max-width:1100px;margin:0 auto;padding:24px 32px}
table{border-collapse:collapse;margin:8px 0 16px}
th,td{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f4f4f4;cursor:pointer;user-select:none}
td:first-child,th:first-child,td.text{text-align:left}
.muted{color:#666}a{color:#1a5fb4}h4{margin:18px 0 4px}"""
SORT_SCRIPT = """document.querySelectorAll('table.sortable th').forEach((th, col) => {
  th.addEventListener('click', () => {
    const body = th.closest('table').tBodies[0];
    const down = th.dataset.order !== 'desc';
    th.dataset.order = down ? 'desc' : 'asc';
    const key = r => { const t = r.cells[col].dataset.value ?? r.cells[col].textContent;
                       const n = parseFloat(t); return isNaN(n) ? t : n; };
    Array.from(body.rows).sort((a, b) => { const x = key(a), y = key(b);
      return (x > y ? 1 : x < y ? -1 : 0) * (down ? -1 : 1); })
      .forEach(r => body.appendChild(r));
  });
});"""


def page_name(layer: int, neuron: int) -> str:
    """The file of one neuron's card: ``L3-N17.html``."""
    return f"L{layer}-N{neuron}.html"


def chosen_neurons(result: RunResult, top: int) -> list[tuple[int, int]]:
    """The ``top`` highest-scored neurons of every method's set for every language (each
    neuron once, in (layer, neuron) order)."""
    found: set[tuple[int, int]] = set()
    for sets in result.neurons.values():
        best = sets.top(top)
        for lang in best.langs:
            for layer, index in enumerate(best.per_layer(lang)):
                found |= {(layer, int(i)) for i in index.tolist()}
    return sorted(found)


def neuron_pages(
    run_dir: str | os.PathLike[str],
    *,
    top: int = 10,
    n_contexts: int = 5,
    max_tokens: int | None = None,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Write the neuron pages of a finished run (see the module docstring).

    Args:
        run_dir: A folder written by ``crane-lens run``.
        top: Neurons per method and language: the highest-scored of each set.
        n_contexts: Top contexts per language on each card (1–32).
        max_tokens: Training tokens per language for the contexts pass, when the run's
            statistics kept no contexts (default: the run's own).
        device: Where to run the model (default: the run's device).
        progress: Show progress bars.

    Returns:
        ``RUN_DIR/neuron_pages/index.html``.

    Raises:
        CraneLensError: Not a finished run.
        ValueError: ``top`` < 1 or ``n_contexts`` outside 1–32.
    """
    from crane_lens.data import load_corpus
    from crane_lens.data.tokens import make_token_blocks
    from crane_lens.model.loader import load_model
    from crane_lens.report import write_report
    from crane_lens.stats import compute_stats

    if top < 1:
        raise ValueError(f"--top must be >= 1, not {top}.")
    if not 1 <= n_contexts <= MAX_TOP_CONTEXTS:
        raise ValueError(f"--contexts must be 1 to {MAX_TOP_CONTEXTS}, not {n_contexts}.")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"--max-tokens must be >= 1, not {max_tokens}.")
    result = RunResult.load(run_dir)
    config, stats = result.config, result.stats
    chosen = chosen_neurons(result, top)
    dtype = result.resolved.get("dtype", config.dtype).removeprefix("torch.")
    model = load_model(config.model, device=device or result.resolved.get("device"), dtype=dtype)
    train = load_corpus(config.corpus, langs=config.langs, split="train")
    kept = all(len(stats.top_contexts.get(lang, {})) == len(TOP_KINDS) for lang in stats.langs)
    if kept and max_tokens is None:
        source = stats
    else:
        log.info("top contexts: a pass over the training text into %s",
                 result.folder / CONTEXTS_DIR)  # fmt: skip
        source = compute_stats(
            model, train, ["crane"], seq_len=config.seq_len, batch_size=config.batch_size,
            max_tokens_per_lang=max_tokens or config.max_tokens_per_lang, seed=config.seed,
            target=config.target,  # type: ignore[arg-type]
            top_contexts=_contexts_k(result.folder / CONTEXTS_DIR, n_contexts), parts=False,
            output_dir=result.folder / CONTEXTS_DIR, progress=progress,
        )  # fmt: skip
    blocks = make_token_blocks(train, model.tokenizer, int(source.config["seq_len"]),
                               source.config.get("max_tokens_per_lang"), int(source.config["seed"]))  # fmt: skip
    per_token = _activations(model, source, blocks, chosen, n_contexts, progress)
    folder = result.folder / NEURON_PAGES_DIR
    cards = []
    for layer, neuron in tqdm(chosen, desc="neuron pages", disable=not progress):
        card = neuron_card(stats, layer, neuron, neurons=result.neurons)
        found = source.contexts(layer, neuron, "activation")
        card.contexts = contexts_in_blocks(
            found[found["rank"] < n_contexts], blocks, model.tokenizer,
            {key: values[:, chosen.index((layer, neuron))] for key, values in per_token.items()},
            (16, 4),
        )  # fmt: skip
        card.kind = "activation"
        write_text(folder / page_name(layer, neuron), _card_page(card, result, source, n_contexts))
        cards.append(card)
    index = write_text(folder / "index.html", _index_page(cards, result))
    write_report(result.folder)
    return index


def _contexts_k(folder: Path, n_contexts: int) -> int:
    """Contexts kept per neuron by the contexts pass: at least 8; a pass already in
    ``folder`` that kept enough is reused as it is."""
    import json

    from crane_lens.stats.engine import CHECKPOINT_META
    from crane_lens.stats.results import META_FILE

    for name in (META_FILE, CHECKPOINT_META):
        if (folder / name).is_file():
            kept = int(json.loads((folder / name).read_text())["config"].get("top_contexts", 0))
            if kept >= n_contexts:
                return kept
    return max(n_contexts, 8)


def _activations(
    model: Any, source: NeuronStats, blocks: Any, chosen: Sequence[tuple[int, int]],
    n_contexts: int, progress: bool,
) -> dict[tuple[str, int], Tensor]:  # fmt: skip
    """``(lang, block) -> [pos, chosen neuron]``: the chosen neurons' activations over every
    block that holds one of their shown contexts — one forward pass per batch of blocks."""
    from crane_lens.model.runner import neuron_activations

    needed: dict[tuple[str, int], None] = {}
    for layer, neuron in chosen:
        found = source.contexts(layer, neuron, "activation")
        for lang, block in found[found["rank"] < n_contexts][["lang", "block"]].itertuples(
            index=False
        ):
            needed[(lang, int(block))] = None
    keys = list(needed)
    out: dict[tuple[str, int], Tensor] = {}
    for start in tqdm(range(0, len(keys), 8), desc="contexts", disable=not progress):
        batch = keys[start : start + 8]
        rows = torch.stack([blocks.blocks[lang][block] for lang, block in batch])
        values = neuron_activations(model, rows, chosen)
        out |= {key: values[i] for i, key in enumerate(batch)}
    return out


def _page(title: str, body: str, script: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head>"
            f"<body><main>{body}</main>"
            + (f"<script>{script}</script>" if script else "") + "</body></html>\n")  # fmt: skip


def _card_page(card: NeuronCard, result: RunResult, source: NeuronStats, n_contexts: int) -> str:
    tokens = ", ".join(f"{lang}: {n:,}" for lang, n in source.n_tokens.items())
    body = (f'<p><a href="index.html">← all neurons</a> · <a href="../report.html">report</a></p>'
            f"{card.to_html()}<p class=\"muted\">Top {n_contexts} contexts per language by "
            f"|activation|, from {tokens} training tokens; every token coloured by the neuron's "
            "activation (hover for the value), the top token outlined. Columns: activation "
            "probability and mean activation per token; crane: mean relevance per token; kojima: "
            "average precision as a language detector; sets: the run's selected sets that hold "
            "the neuron.</p>")  # fmt: skip
    return _page(f"Neuron ({card.layer}, {card.neuron}) · {result.folder.name}", body)


def _index_page(cards: list[NeuronCard], result: RunResult) -> str:
    rows = []
    for card in cards:
        t = card.table
        sets = "; ".join(f"{lang}: {s}" for lang, s in zip(t.index, t.get("sets", []), strict=False)
                         if s)  # fmt: skip
        crane = t.get("crane")
        best = str(crane.idxmax()) if crane is not None else "–"
        rows.append(
            f'<tr><td data-value="{card.layer * 1_000_000 + card.neuron}"><a href="'
            f'{page_name(card.layer, card.neuron)}">({card.layer}, {card.neuron})</a></td>'
            f"<td>{card.layer}</td><td>{card.neuron}</td><td class=\"text\">{html.escape(sets)}</td>"
            f"<td class=\"text\">{html.escape(best)}</td>"
            f"<td>{(crane.max() if crane is not None else float('nan')):.4g}</td>"
            f"<td>{t['activation_probability'].max():.3f}</td></tr>"
        )  # fmt: skip
    head = "".join(f"<th>{h}</th>" for h in ("neuron", "layer", "index", "in the sets of",
                                               "top language (crane)", "crane (max)",
                                               "activation probability (max)"))  # fmt: skip
    body = (f'<h1>Selected neurons of {html.escape(result.folder.name)}</h1><p><a href="'
            f'../report.html">← report</a> · {len(cards)} neurons: the highest-scored of every '
            "method's set for every language. Click a column to sort, a neuron for its card.</p>"
            f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
            "</tbody></table>")  # fmt: skip
    return _page(f"Neurons · {result.folder.name}", body, SORT_SCRIPT)
