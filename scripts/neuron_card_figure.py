"""The neuron card in docs/neurons.md: Vietnamese's most relevant neuron of Gemma 3 270M.

Statistics and sets from the float32 study (``crane-lens study --model gemma-3-270m --preset
full ...``, 16 384 training tokens per language; docs/study.md), contexts from one forward pass
over 2 048 training tokens per language, the exact single-neuron ΔNLL on 1 024 held-out tokens;
the card's HTML is written to ``--out`` and drawn by headless Chromium.

    python scripts/neuron_card_figure.py --study ~/.cache/crane_lens/studies/gemma-3-270m-full
"""

from __future__ import annotations

import argparse
import logging
import subprocess
from pathlib import Path

import crane_lens as cl

log = logging.getLogger("neuron_card_figure")
LANGS = ["vi", "en", "zh", "fr", "ja", "ru"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True, help="the Gemma study's folder")
    parser.add_argument("--out", type=Path, default=Path("docs/figures/gemma-3-270m-neuron-card"),
                        help="file stem of the .html and .png (default: %(default)s)")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stats = cl.NeuronStats.load(args.study / "stats")
    sets = {m: cl.LanguageNeurons.load(args.study / "neurons" / f"{m}_0.001.json")
            for m in ("crane", "lape")}  # fmt: skip
    model = cl.load_model("gemma-3-270m", dtype=stats.spec.dtype.removeprefix("torch."))
    train = cl.load_corpus("builtin", langs=LANGS)
    contexts = cl.compute_stats(model, train, "activation_probability", max_tokens_per_lang=2048,
                                batch_size=4, top_contexts=4)  # fmt: skip
    best = sets["crane"].top(1).to_dataframe().query("lang == 'vi'").iloc[0]
    card = cl.neuron_card(
        stats, int(best.layer), int(best.neuron), model=model, blocks=train, contexts=contexts,
        neurons=sets, langs=LANGS, n_contexts=2,
        ablation=cl.load_corpus("builtin", langs=LANGS, split="eval"),
    )  # fmt: skip
    log.info("%s\n%s", card, card.table.round(4).to_string())
    page = args.out.with_suffix(".html")
    page.write_text('<meta charset="utf-8"><body style="font-family:sans-serif;margin:16px">'
                    + card.to_html(), encoding="utf-8")  # fmt: skip
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={args.out.with_suffix('.png').resolve()}",
                    "--window-size=1100,760", page.resolve().as_uri()], check=True)  # fmt: skip
    page.unlink()


if __name__ == "__main__":
    main()
