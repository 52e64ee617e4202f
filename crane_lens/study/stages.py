"""The stages of a study, each saved in its own folder of the study as soon as it is done.

Every stage calls the library's own functions with an output folder — :func:`compute_stats`
(which resumes from its checkpoint and refuses a folder of other settings),
:func:`select_language_neurons`, :func:`ablation_matrix` (which resumes from its checkpoint and
refuses other settings or sets) — so a study resumes the way ``crane-lens run`` does; finished
results are read back, never recomputed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from crane_lens.errors import CraneLensError
from crane_lens.evaluation.ablation import AblationMatrix, ablation_matrix
from crane_lens.selection.neurons import LanguageNeurons
from crane_lens.selection.select import select_language_neurons
from crane_lens.stats.results import NeuronStats
from crane_lens.study.config import PAPER_LANGS, STATS_METHODS, STEER_METHODS, StudyConfig
from crane_lens.utils.io import write_json

log = logging.getLogger(__name__)


class NotFinished(Exception):
    """A result a read-only study (:meth:`StudyResult.load`) does not have yet."""


@dataclass(frozen=True)
class Statistics:
    """One statistics pass: its folder, methods and CRANE rule."""

    folder: str
    methods: tuple[str, ...]
    target: str = "logit"
    attention: str = "attnlrp"


STATISTICS = {
    "main": Statistics("stats", tuple(STATS_METHODS)),
    "logprob": Statistics("stats_logprob", ("crane",), target="logprob"),
    "cp": Statistics("stats_cp", ("crane",), attention="cp"),
}


@dataclass(frozen=True)
class Variant:
    """One selected set per language: which statistics, method and rule, and whether its
    ablation matrix is measured (with random control sets or without)."""

    stats: str
    method: str
    rule: str | None = None
    top_rate: float | None = None
    matrix: bool = True
    random: bool = False


# Ablation matrices run in this order: the paper's comparison first.
VARIANTS: dict[str, Variant] = {
    "crane": Variant("main", "crane", random=True),
    "lape": Variant("main", "lape", random=True),
    "lape (top_rate 0.01)": Variant("main", "lape", top_rate=0.01, random=True),
    "crane (CP-LRP)": Variant("cp", "crane"),
    "crane (logprob target)": Variant("logprob", "crane"),
    "attribution": Variant("main", "attribution"),
    "attribution (specificity)": Variant("main", "attribution", rule="specificity"),
    "grad_act": Variant("main", "grad_act"),
    "kojima": Variant("main", "kojima"),
    "plnd": Variant("main", "plnd"),
    "crane (top, no specificity)": Variant("main", "crane", rule="top", matrix=False),
}
# The methods compared one-to-one (figures, overlap): one set of each.
MAIN_METHODS = ["crane", "lape", "attribution", "grad_act", "kojima", "plnd"]


def slug(label: str) -> str:
    """A folder name for a label: ``"lape (top_rate 0.01)"`` -> ``"lape_top_rate_0_01"``."""
    return "_".join("".join(c if c.isalnum() else " " for c in label).split())


class Study:
    """The stages of one study, sharing its model, corpora and folder.

    Nothing is loaded until a stage has work to do, so re-running a finished study (to redraw
    its page) reads its folder only.
    """

    def __init__(
        self, config: StudyConfig, folder: Path, *, compute: bool = True, progress: bool = True
    ) -> None:
        self.config, self.folder, self.progress = config, folder, progress
        self.compute = compute  # False: read what is finished, raise NotFinished for the rest
        self.incomplete: set[str] = set()  # stages read with some part not finished
        self._stats: dict[str, NeuronStats] = {}

    # -- inputs, loaded on first use ----------------------------------------------------------
    @functools.cached_property
    def model(self) -> Any:
        from crane_lens.model.loader import get_spec, load_model

        model = load_model(self.config.model, device=self.config.device, dtype=self.config.dtype)
        spec = get_spec(model)
        # One dtype for the whole study: "auto" means bfloat16 on a GPU and float32 on most CPUs,
        # and a matrix resumed in another dtype would mix both in its block sums.
        path, dtype = self.folder / "study.json", str(spec.dtype)
        saved = json.loads(path.read_text("utf-8"))
        if saved.get("dtype", dtype) != dtype:
            raise CraneLensError(
                f"This study computes in {saved['dtype']}, and the model loaded in {dtype} here "
                f"(--device {self.config.device or 'default'}, --dtype {self.config.dtype}); pass "
                f"--dtype {saved['dtype'].removeprefix('torch.')} to continue it."
            )
        if "dtype" not in saved:
            write_json(path, saved | {"dtype": dtype})
        bad = [x for x in self.config.causal_layers or [] if not 0 <= x < spec.n_layers]
        if bad:
            raise ValueError(
                f"--causal-layers {bad}: {spec.n_layers} layers (0-{spec.n_layers - 1})."
            )
        return model

    @functools.cached_property
    def train(self) -> Any:
        from crane_lens.data import load_corpus

        return load_corpus("builtin", split="train", langs=self.langs)

    @functools.cached_property
    def held_out(self) -> Any:
        from crane_lens.data import load_corpus

        return load_corpus("builtin", split="eval", langs=self.langs)

    @functools.cached_property
    def langs(self) -> list[str]:
        from crane_lens.runs import corpus_langs

        return self.config.study_langs(corpus_langs("builtin") or [])

    @property
    def paper_langs(self) -> list[str]:
        """The languages of the benchmarks, causality and transfer: en, zh, vi where studied."""
        return [x for x in PAPER_LANGS if x in self.langs] or self.langs[:3]

    # -- building blocks ----------------------------------------------------------------------
    def stats(self, key: str = "main") -> NeuronStats:
        """Statistics ``key`` of :data:`STATISTICS` on the training text (resumed or read)."""
        from crane_lens.stats.engine import compute_stats

        which = STATISTICS[key]
        folder = self.folder / which.folder
        if key in self._stats:
            return self._stats[key]
        if (folder / "stats.json").is_file():
            self._stats[key] = NeuronStats.load(folder)
            return self._stats[key]
        if not self.compute:
            raise NotFinished(f"statistics {key}")
        log.info("statistics %s (%s) on %d languages", key, ", ".join(which.methods),
                 len(self.langs))  # fmt: skip
        self._stats[key] = compute_stats(
            self.model, self.train, list(which.methods), seq_len=self.config.seq_len,
            batch_size=self.config.batch_size, max_tokens_per_lang=self.config.max_tokens_per_lang,
            target=which.target, attention=which.attention,  # type: ignore[arg-type]
            output_dir=folder, checkpoint_every=4, progress=self.progress,
        )  # fmt: skip
        return self._stats[key]

    def neurons(
        self, label: str, budget: float | None = None, among: list[str] | None = None
    ) -> LanguageNeurons:
        """The sets of variant ``label`` at ``budget`` (default: the main one), selected
        against ``among`` languages only (default: all the study's)."""
        budget = self.config.budget if budget is None else budget
        variant = VARIANTS[label]
        among_name = "" if among is None else "_among_" + "-".join(among)
        path = self.folder / "neurons" / f"{slug(label)}_{budget:g}{among_name}.json"
        if not path.is_file():
            # LAPE's published top_rate fixes its own total: the budget does not apply.
            select_language_neurons(
                self.stats(variant.stats), variant.method, budget=budget, langs=among,
                rule=variant.rule, top_rate=variant.top_rate,  # type: ignore[arg-type]
            ).save(path)  # fmt: skip
        return LanguageNeurons.load(path)

    def matrix(
        self, name: str, sets: LanguageNeurons, *, random: bool, mode: str = "zero",
        values: Any = None, model: Any = None, corpus: Any = None,
    ) -> AblationMatrix:  # fmt: skip
        """The ablation matrix ``name`` of ``sets`` (resumed or read): on the held-out text
        with the study's model, unless ``model`` / ``corpus`` say otherwise."""
        folder = self.folder / "matrices" / name
        if (folder / "matrix.json").is_file():
            return AblationMatrix.load(folder)
        if not self.compute:
            raise NotFinished(f"matrix {name}")
        log.info("ablation matrix %s", name)
        result = ablation_matrix(
            self.model if model is None else model, self.held_out if corpus is None else corpus,
            sets, mode=mode, values=values,  # type: ignore[arg-type]
            random_seeds=self.config.random_seeds if random else 0,
            random_langs=self.config.random_scope(), seq_len=self.config.eval_seq_len,
            max_tokens_per_lang=self.config.eval_tokens_per_lang,
            max_batch_rows=self.config.eval_batch_size, checkpoint_dir=folder,
            progress=self.progress,
        )  # fmt: skip
        result.save(folder)
        (folder / "ablation_checkpoint.json").unlink(missing_ok=True)
        return AblationMatrix.load(folder)

    # -- stages ---------------------------------------------------------------------------
    @property
    def variants(self) -> dict[str, Variant]:
        """The sets this study measures: ``config.sets``, else all of :data:`VARIANTS`."""
        chosen = self.config.sets
        return {k: v for k, v in VARIANTS.items() if chosen is None or k in chosen}

    def statistics(self) -> dict[str, NeuronStats]:
        """The main statistics, and the CP-LRP and log-probability passes where a set needs them."""
        needed = {"main"} | {v.stats for v in self.variants.values()}
        return {key: self.stats(key) for key in STATISTICS if key in needed}

    def matrices(self) -> dict[str, AblationMatrix]:
        """Every variant's matrix at the main budget; CRANE's and LAPE's with random sets."""
        b, out = self.config.budget, {}
        for label, v in self.variants.items():
            if v.matrix:
                with self._partial("matrices"):
                    out[label] = self.matrix(f"{slug(label)}_{b:g}", self.neurons(label),
                                             random=v.random)  # fmt: skip
        return out

    @contextlib.contextmanager
    def _partial(self, stage: str) -> Any:
        """Read-only, a missing part of a stage is left out (the stage counts as incomplete)
        instead of ending the stage."""
        try:
            yield
        except NotFinished:
            if self.compute:
                raise
            self.incomplete.add(stage)

    @property
    def budgets(self) -> list[float]:
        """The main budget and the sweep's, smallest first."""
        return sorted({self.config.budget, *self.config.sweep})

    def sweep(self) -> dict[float, dict[str, AblationMatrix]]:
        """CRANE's and LAPE's matrices at every budget (random sets at the main one only)."""
        out: dict[float, dict[str, AblationMatrix]] = {}
        for label in ("crane", "lape"):
            for b in self.budgets:
                with self._partial("sweep"):
                    out.setdefault(b, {})[label] = self.matrix(
                        f"{slug(label)}_{b:g}", self.neurons(label, b),
                        random=b == self.config.budget,
                    )  # fmt: skip
        return out

    def mean_ablation(self) -> dict[str, AblationMatrix]:
        """CRANE's and LAPE's sets replaced by their mean activation instead of zero."""
        from crane_lens.intervention.hooks import intervention_values

        b, out = self.config.budget, {}
        for label in ("crane", "lape"):
            name = f"{slug(label)}_{b:g}_mean"
            values = None
            if self.compute and not (self.folder / "matrices" / name / "matrix.json").is_file():
                values = intervention_values(self.stats(), "mean")
            with self._partial("mean"):
                out[label] = self.matrix(name, self.neurons(label), random=False, mode="mean",
                                         values=values)  # fmt: skip
        return out

    def pool(self) -> dict[float, dict[str, Any]]:
        """CRANE's sets of :attr:`paper_langs` selected against those languages only, against
        the same languages' sets selected against all the study's, at every budget; both
        masked on the paper languages' held-out text. Empty where the study has no others.

        CRANE's specificity contrasts a language with the languages it is selected against,
        so a set depends on them: this stage measures how much (a three-language run of the
        paper against this study's languages, from the same statistics).
        """
        langs = self.paper_langs
        if set(langs) == set(self.langs):
            return {}
        held_out = self.held_out.select(langs=langs)
        out: dict[float, dict[str, Any]] = {}
        for b in self.budgets:
            with self._partial("pool"):
                among_all = self.neurons("crane", b).select_langs(langs)
                among_paper = self.neurons("crane", b, among=langs)
                name = f"crane_{b:g}_on_" + "-".join(langs)
                out[b] = {
                    "all": self.matrix(name, among_all, random=False, corpus=held_out),
                    "paper": self.matrix(f"{name}_among_" + "-".join(langs), among_paper,
                                         random=False, corpus=held_out),
                    "jaccard": among_all.jaccard(among_paper),
                }  # fmt: skip
        return out

    def stability(self) -> Any:
        """How much each method's sets depend on the training text (from the per-part sums);
        ``None`` where the statistics cannot say (e.g. one block per language)."""
        from crane_lens.selection.stability import SelectionStability, selection_stability

        folder = self.folder / "stability"
        if (folder / "stability.json").is_file():
            return SelectionStability.load(folder)
        try:
            found = selection_stability(self.stats(), MAIN_METHODS, budget=self.config.budget)
        except CraneLensError as exc:  # the statistics stay valid: the study goes on without
            log.warning("no stability measure: %s", exc)
            return None
        found.save(folder)
        return found

    @torch.no_grad()
    def causality(self) -> dict[str, Any]:
        """Exact ΔNLL of zero-ablating single sampled neurons, against each method's score.

        For each language of :attr:`paper_langs` and each causal layer, ``causal_neurons``
        neurons sampled at random (seed 0) are ablated one at a time on the language's first
        held-out blocks (up to 512 tokens); Spearman's ρ between those exact effects and each
        method's score of the same neurons says which score ranks necessity.
        """
        from crane_lens.evaluation.ablation import conditions_nll, eval_blocks
        from crane_lens.intervention.hooks import Intervention, intervention
        from crane_lens.model.loader import get_spec
        from crane_lens.utils.ranking import spearman

        path = self.folder / "causality.json"
        done: dict[str, Any] = json.loads(path.read_text("utf-8")) if path.is_file() else {}
        spec = self.stats().spec
        layers = self.config.causal_layers or sorted({0, spec.n_layers // 2, spec.n_layers - 1})
        generator = torch.Generator().manual_seed(0)
        n = min(self.config.causal_neurons, spec.d_mlp)
        sample = {layer: torch.randperm(spec.d_mlp, generator=generator)[:n].tolist()
                  for layer in layers}  # fmt: skip
        keys = [f"{lang}|{layer}" for lang in self.paper_langs for layer in layers]
        todo = [k for k in keys if done.get(k, {}).get("neurons") != sample[int(k.split("|")[1])]]
        if todo and not self.compute:
            raise NotFinished("causality")
        if todo:
            blocks = eval_blocks(self.model, self.held_out, self.paper_langs,
                                 seq_len=self.config.eval_seq_len, max_tokens_per_lang=512)  # fmt: skip
            d_mlp = get_spec(self.model).d_mlp
            for key in todo:
                lang, layer = key.split("|")[0], int(key.split("|")[1])
                conditions = [Intervention({}, {}, "baseline")]
                for neuron in sample[layer]:
                    idx = [torch.zeros(0, dtype=torch.long)] * spec.n_layers
                    idx[layer] = torch.tensor([neuron])
                    conditions.append(intervention(idx, mode="zero", d_mlp=d_mlp))
                nats = conditions_nll(self.model, blocks[lang], conditions,
                                      max_batch_rows=self.config.eval_batch_size).sum(dim=1)  # fmt: skip
                done[key] = {"neurons": sample[layer], "tokens": blocks[lang].n_tokens,
                             "delta_nats": (nats[1:] - nats[0]).tolist()}  # fmt: skip
                write_json(path, done)
                log.info("causality %s: %d neurons", key, len(sample[layer]))
        stats, row = self.stats(), {x: i for i, x in enumerate(self.stats().langs)}
        table: dict[str, dict[str, float]] = {}
        # crane_abs: a neuron's relevance whatever its sign; necessity is about size.
        for method in [*MAIN_METHODS, "crane_abs"]:
            for key in keys:
                lang, layer = key.split("|")[0], int(key.split("|")[1])
                scores = stats.scores(method)[row[lang], layer, done[key]["neurons"]]
                exact = torch.tensor(done[key]["delta_nats"], dtype=torch.float64)
                rho = spearman(scores.double(), exact)
                table.setdefault(method, {})[f"{lang}, layer {layer}"] = float(rho)
        return {"table": table, "raw": {k: done[k] for k in keys}, "layers": layers}

    def benchmarks(self) -> dict[str, Any]:
        """Multiple-choice accuracy and the language of greedy continuations, unmasked and
        with each of :attr:`paper_langs`' CRANE and LAPE sets masked."""
        from crane_lens.evaluation.generation import generation_check
        from crane_lens.evaluation.multiple_choice import builtin_multiple_choice, mc_accuracy
        from crane_lens.intervention.hooks import ablate

        path = self.folder / "benchmarks.json"
        rows: dict[str, Any] = json.loads(path.read_text("utf-8")) if path.is_file() else {}
        langs = self.paper_langs
        sets = {label: self.neurons(label) for label in ("crane", "lape")}
        conditions: list[tuple[str, LanguageNeurons | None, str | None]] = [("none", None, None)]
        conditions += [(f"{name}:{x}", s, x) for name, s in sets.items() for x in langs]
        if all(label in rows.get("mc", {}) for label, _, _ in conditions):
            return rows
        if not self.compute:
            raise NotFinished("benchmarks")
        mc = builtin_multiple_choice(langs, origins=self.config.mc_origins,
                                     max_items_per_lang=self.config.mc_items)  # fmt: skip
        rows.setdefault("mc_items", {x: len(mc.items[x]) for x in langs})
        for label, neurons, lang in conditions:
            if label in rows.get("mc", {}):
                continue
            log.info("benchmarks under %s", label)
            masked = ablate(self.model, neurons, lang) if neurons is not None else None
            with masked or contextlib.nullcontext():
                report = mc_accuracy(self.model, mc, max_tokens_per_batch=2048)
                generated = generation_check(self.model, langs=langs, n_prompts=8, batch_size=4)
            rows.setdefault("mc", {})[label] = {x: report.accuracy(x) for x in langs}
            rows.setdefault("generation", {})[label] = {
                x: generated.fraction_in_language(x) for x in langs}  # fmt: skip
            rows.setdefault("n_neurons", {})[label] = neurons.count(lang) if neurons and lang else 0
            write_json(path, rows)
        return rows

    def steering(self) -> dict[str, Any]:
        """Prompts of each of :attr:`paper_langs` steered towards each other one with CRANE's,
        LAPE's and Kojima et al.'s sets (``replace``: ``h' = (1 − s)·h + s·v``, ``v`` the
        target's mean activation, Kojima's median for Kojima's sets as in their recipe), each
        against ``steer_random_seeds`` random sets of the same sizes."""
        from crane_lens.evaluation.steering import STEERING_FILE, SteeringMatrix, steering_matrix

        out: dict[str, Any] = {}
        for label in STEER_METHODS:
            folder = self.folder / "steering" / label
            if (folder / STEERING_FILE).is_file():
                out[label] = SteeringMatrix.load(folder)
                continue
            with self._partial("steering"):
                if not self.compute:
                    raise NotFinished(f"steering {label}")
                log.info("steering with %s's sets", label)
                out[label] = steering_matrix(
                    self.model, self.neurons(label), self.stats(), targets=self.paper_langs,
                    strengths=self.config.steer_strengths,
                    statistic="median" if label == "kojima" else "mean",
                    random_seeds=self.config.steer_random_seeds,
                    n_prompts=self.config.steer_prompts, output_dir=folder,
                    progress=self.progress,
                )  # fmt: skip
        return out

    def transfer(self) -> dict[str, Any]:
        """The base model's CRANE sets masked in ``chat_model``, against the chat model's own
        sets (:attr:`paper_langs`, random sets for each)."""
        from crane_lens.model.loader import load_model
        from crane_lens.stats.engine import compute_stats

        if self.config.chat_model is None:
            return {}
        langs = self.paper_langs
        chat_folder = self.folder / "stats_chat"
        chat: Any = None
        if not (chat_folder / "stats.json").is_file() or not all(
            (self.folder / "matrices" / f"transfer_{x}" / "matrix.json").is_file()
            for x in ("base_on_base", "base_on_chat", "chat_on_chat")
        ):
            if not self.compute:
                raise NotFinished("transfer")
            chat = load_model(self.config.chat_model, device=self.config.device,
                              dtype=self.config.dtype)  # fmt: skip
        chat_stats = (NeuronStats.load(chat_folder) if chat is None else compute_stats(
            chat, self.train.select(langs=langs), ["crane"], seq_len=self.config.seq_len,
            batch_size=self.config.batch_size, max_tokens_per_lang=self.config.max_tokens_per_lang,
            output_dir=chat_folder, progress=self.progress))  # fmt: skip
        chat_sets = select_language_neurons(chat_stats, "crane", budget=self.config.budget)
        # Selected against the same languages as the chat model's sets (all the study's would
        # mix the effect of fine-tuning with that of a larger language pool).
        base_sets = select_language_neurons(self.stats(), "crane", budget=self.config.budget,
                                            langs=langs)  # fmt: skip
        held_out = self.held_out.select(langs=langs)
        out: dict[str, Any] = {}
        for label, name, model, sets in (
            ("base sets on base", "base_on_base", None, base_sets),
            ("base sets on chat", "base_on_chat", chat, base_sets),
            ("chat sets on chat", "chat_on_chat", chat, chat_sets),
        ):
            out[label] = self.matrix(f"transfer_{name}", sets, random=True, model=model,
                                     corpus=held_out)  # fmt: skip
        out["jaccard"] = base_sets.jaccard(chat_sets)
        return out
