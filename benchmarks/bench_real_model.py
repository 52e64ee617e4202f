#!/usr/bin/env python
"""A real LLM on this CPU: every stage against plain forwards, float32 and bfloat16 in one run.

For each dtype the model is loaded once and these are timed over the same token blocks
(English training text, ``--batch`` × ``--seq-len`` tokens):

* the raw Hugging Face forward with its logits (``model.original_model(input_ids)``), and its
  trunk alone, without the vocabulary projection (``model.original_model.model(input_ids)``);
* the TransformerBridge forward (``model(tokens)``, logits included);
* ``compute_stats`` for the activation statistics, ``crane``, and all methods in one call;
* one ablation matrix (``ablation_matrix``: the unmasked model, two languages' sets and
  ``--random-seeds`` random sets each, all on the same held-out blocks), as condition-tokens/s:
  conditions × blocks × block length per second, comparable with a forward's tokens/s.

float32 runs are interleaved ``--repeats`` times after a warm-up, medians; bfloat16 runs (4–70×
slower on CPUs without native bfloat16) ``--bf16-repeats`` times after a warm-up on one 32-token
block (one-off costs paid, not a whole slow run). Ratios are
printed beside the targets, never asserted. Then, in float32, what else might help on a CPU:
torch threads (1 vs all), SDPA attention for the raw trunk (the bridge computes attention itself,
so its passes cannot use it), and ``torch.compile`` of the raw trunk.

    python benchmarks/bench_real_model.py                      # gemma-3-270m, both dtypes
    python benchmarks/bench_real_model.py --write-docs         # + docs/performance.md
    python benchmarks/bench_real_model.py --dtypes float32 --repeats 3 --skip-extras  # quick

Needs an installed model (``crane-lens models install gemma-3-270m``).
"""

from __future__ import annotations

import argparse
import gc
import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import crane_lens as cl
from crane_lens.model import dtype_choice
from crane_lens.model.dtype import cpu_bf16_support
from crane_lens.utils.markdown import update_marked_block

log = logging.getLogger("bench_real_model")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
BLOCK = "bench-real-model"
ACTIVATION_METHODS = ["lape", "mean_activation", "kojima", "plnd"]
ALL_METHODS = ["crane", "attribution", "grad_act", "lape", "kojima", "plnd"]

HF, TRUNK, BRIDGE = (
    "raw HF forward (logits)",
    "raw HF trunk (no vocabulary projection)",
    "bridge forward",
)
ACTIVATION = "activation statistics (lape, mean_activation, kojima, plnd)"
CRANE, ALL = "crane", "all methods (crane, attribution, grad_act, lape, kojima, plnd)"
ABLATION = "ablation matrix"
# target: (reference run, bound, "max" for a time ratio | "min" for a throughput ratio)
TARGETS: dict[str, tuple[str, float, str]] = {
    CRANE: (TRUNK, 2.3, "max"),
    ALL: (HF, 3.5, "max"),
    ABLATION: (HF, 0.8, "min"),
}


class _LogNotes(logging.Handler):
    """What crane_lens logs at WARNING and above during the runs (a fallback, a slow dtype)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.notes: dict[str, None] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.notes[record.getMessage().split("\n")[0]] = None


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _median_times(
    runs: dict[str, Callable[[], object]], repeats: int, warm_up: bool
) -> dict[str, float]:
    if warm_up:
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _workload(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The token blocks, neuron sets and held-out text every run of one dtype uses."""
    train = cl.load_corpus("builtin", langs=["en"], split="train")
    blocks = cl.make_token_blocks(train, model.tokenizer, args.seq_len, args.batch * args.seq_len,
                                  seed=0)  # fmt: skip
    spec = cl.get_spec(model)
    generator = torch.Generator().manual_seed(0)
    per_lang = max(1, round(0.01 * spec.n_layers * spec.d_mlp))  # 1 % of the neurons each
    sets = {}
    for lang in ("en", "zh"):
        flat = torch.randperm(spec.n_layers * spec.d_mlp, generator=generator)[:per_lang]
        sets[lang] = torch.stack([flat // spec.d_mlp, flat % spec.d_mlp], dim=1)
    neurons = cl.LanguageNeurons(spec.n_layers, spec.d_mlp, sets, method="bench")
    held_out = cl.load_corpus("builtin", langs=["en"], split="eval")
    return {"blocks": blocks, "tokens": blocks["en"], "neurons": neurons, "held_out": held_out}


def time_dtype(model: Any, args: argparse.Namespace, repeats: int, warm_up: str) -> dict[str, Any]:
    """Median seconds of every run on ``model``, and the ablation matrix's condition count.

    ``warm_up``: ``"full"`` runs everything once first; ``"small"`` runs everything once on one
    32-token block (one-off costs paid, at a fraction of a slow dtype's full run)."""
    if warm_up == "small":
        small = argparse.Namespace(**{**vars(args), "batch": 1, "seq_len": 32})
        for run in _runs(model, small)[0].values():
            run()
    runs, conditions = _runs(model, args)
    times = _median_times(runs, repeats, warm_up == "full")
    return {"times": times, "conditions": conditions}


def _runs(model: Any, args: argparse.Namespace) -> tuple[dict[str, Callable[[], object]], int]:
    """Every timed run on ``model`` with ``args``' workload, and the ablation's condition count."""
    work = _workload(model, args)
    tokens, blocks = work["tokens"], work["blocks"]
    batch = len(tokens)
    conditions = 1 + len(work["neurons"].langs) * (1 + args.random_seeds)

    def hf() -> None:
        with torch.no_grad():
            model.original_model(input_ids=tokens, use_cache=False)

    def trunk() -> None:
        with torch.no_grad():
            model.original_model.model(input_ids=tokens, use_cache=False)

    def bridge() -> None:
        with torch.no_grad():
            model(tokens, return_type="logits")

    def stats(methods: list[str]) -> Callable[[], object]:
        return lambda: cl.compute_stats(model, blocks, methods, batch_size=batch, progress=False)

    def ablation() -> None:
        cl.ablation_matrix(model, work["held_out"], work["neurons"], langs=["en"],
                           random_seeds=args.random_seeds, seq_len=args.seq_len,
                           max_tokens_per_lang=batch * args.seq_len,
                           max_batch_rows=args.eval_batch_rows, progress=False)  # fmt: skip

    runs: dict[str, Callable[[], object]] = {
        HF: hf, TRUNK: trunk, BRIDGE: bridge, ACTIVATION: stats(ACTIVATION_METHODS),
        CRANE: stats(["crane"]), ALL: stats(ALL_METHODS), ABLATION: ablation,
    }  # fmt: skip
    return runs, conditions


def extras(model: Any, args: argparse.Namespace) -> list[str]:
    """float32 only: threads, SDPA and torch.compile for the raw trunk, as lines of text."""
    tokens = _workload(model, args)["tokens"]
    n_tokens = tokens.numel()
    hf = model.original_model

    def trunk() -> None:
        with torch.no_grad():
            hf.model(input_ids=tokens, use_cache=False)

    lines = []
    threads = torch.get_num_threads()
    per_threads = {}
    for n in sorted({1, threads}):
        torch.set_num_threads(n)
        per_threads[n] = _median_times({"t": trunk}, args.repeats, True)["t"]
    torch.set_num_threads(threads)
    lines.append("Threads (raw trunk): " + ", ".join(
        f"{n} → {n_tokens / t:,.0f} tokens/s" for n, t in per_threads.items()) + ".")  # fmt: skip
    before = hf.config._attn_implementation
    timings = {}
    for implementation in ("eager", "sdpa"):
        try:
            hf.set_attn_implementation(implementation)
            timings[implementation] = _median_times({"t": trunk}, args.repeats, True)["t"]
        except Exception as exc:  # an implementation this model or transformers lacks
            timings[implementation] = float("nan")
            lines.append(f"SDPA attention failed: {type(exc).__name__}: {exc}")
    hf.set_attn_implementation(before)
    lines.append(f"Attention (raw trunk, {args.seq_len}-token blocks): eager "
                 f"{n_tokens / timings['eager']:,.0f} tokens/s, SDPA "
                 f"{n_tokens / timings['sdpa']:,.0f} tokens/s "
                 f"({timings['eager'] / timings['sdpa']:.2f}× eager's speed).")  # fmt: skip
    try:
        compiled = torch.compile(hf.model)
        start = time.perf_counter()
        with torch.no_grad():
            compiled(input_ids=tokens, use_cache=False)
        compile_seconds = time.perf_counter() - start

        def compiled_trunk() -> None:
            with torch.no_grad():
                compiled(input_ids=tokens, use_cache=False)

        both = _median_times({"eager": trunk, "compiled": compiled_trunk}, args.repeats, False)
        lines.append(f"torch.compile (raw trunk): {n_tokens / both['compiled']:,.0f} tokens/s vs "
                     f"{n_tokens / both['eager']:,.0f} uncompiled "
                     f"({both['eager'] / both['compiled']:.2f}×), after {compile_seconds:.0f} s "
                     "of compilation.")  # fmt: skip
    except Exception as exc:
        lines.append(f"torch.compile (raw trunk) failed: {type(exc).__name__}: "
                     f"{str(exc).splitlines()[0][:200]}")  # fmt: skip
    return lines


def _ratio_cell(name: str, times: dict[str, float], per_token: float, hf_rate: float) -> str:
    target = TARGETS.get(name)
    if target is None:
        return ""
    reference, bound, kind = target
    if kind == "max":
        ratio = times[name] / times[reference]
        met = ratio <= bound
        return f"≤ {bound:g}× {reference.split(' (')[0]}: {ratio:.2f}× {'met' if met else '**missed**'}"
    ratio = per_token / hf_rate
    met = ratio >= bound
    return f"≥ {bound:g}× {reference.split(' (')[0]}'s tokens/s: {ratio:.2f}× {'met' if met else '**missed**'}"


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]], spec: Any,
           auto: str, extra: list[str], notes: list[str]) -> str:  # fmt: skip
    import transformers

    n_tokens = args.batch * args.seq_len
    dtypes = list(results)
    lines = [
        f"`{args.model}` ({spec.n_layers} layers × {spec.d_mlp:,} neurons, d_model "
        f"{spec.d_model}, vocabulary {spec.vocab_size:,}), {args.batch} × {args.seq_len} tokens "
        f"of English; CPU {_cpu_name()}, {torch.get_num_threads()} torch threads; torch "
        f"{torch.__version__}, transformers {transformers.__version__}. float32: median of "
        f"{args.repeats} interleaved runs after a warm-up; bfloat16: "
        f"{args.bf16_repeats} run{'s' if args.bf16_repeats > 1 else ''} after a warm-up on one "
        "32-token block. Ablation "
        f"matrix: {results[dtypes[0]]['conditions']} conditions (unmasked, 2 languages' sets of 1 % "
        f"and {args.random_seeds} random sets each) × {args.batch} held-out blocks of "
        f"{args.seq_len}, {args.eval_batch_rows} rows per pass.",
        "",
    ]
    header = ["run"]
    for d in dtypes:
        header += [f"{d} (s)", f"{d} tokens/s", f"{d} × HF forward", f"{d} × HF trunk"]
    if len(dtypes) == 2:
        header.append(f"{dtypes[1]} ÷ {dtypes[0]} time")
    header.append("target (float32)")
    lines += [
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 2) + " --- |",
    ]
    for name in results[dtypes[0]]["times"]:
        row = [name]
        for d in dtypes:
            times = results[d]["times"]
            t = times[name]
            count = n_tokens * (results[d]["conditions"] if name == ABLATION else 1)
            row += [
                f"{t:.2f}",
                f"{count / t:,.0f}",
                f"{t / times[HF]:.2f}×",
                f"{t / times[TRUNK]:.2f}×",
            ]
        if len(dtypes) == 2:
            row.append(
                f"**{results[dtypes[1]]['times'][name] / results[dtypes[0]]['times'][name]:.1f}×**"
            )
        f32 = results.get("float32")
        if f32 is not None:
            t = f32["times"]
            rate = n_tokens * f32["conditions"] / t[ABLATION]
            row.append(_ratio_cell(name, t, rate, n_tokens / t[HF]))
        else:
            row.append("")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f'`dtype="auto"` on this machine: {auto}.']
    if extra:
        lines += ["", *[f"- {line}" for line in extra]]
    if notes:
        lines += ["", "crane_lens warned: " + "; ".join(n.rstrip(".") for n in notes) + "."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batch", type=int, default=4, help="blocks per pass")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="float32 repeats")
    parser.add_argument("--bf16-repeats", type=int, default=1)
    parser.add_argument("--random-seeds", type=int, default=2)
    parser.add_argument("--eval-batch-rows", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-extras", action="store_true", help="no threads/SDPA/compile")
    parser.add_argument("--write-docs", action="store_true", help=f"update {DOCS.name}")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    notes = _LogNotes()
    logging.getLogger("crane_lens").addHandler(notes)
    results: dict[str, dict[str, Any]] = {}
    extra: list[str] = []
    spec = None
    for dtype in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
        model = cl.load_model(args.model, device="cpu", dtype=dtype)
        spec = cl.get_spec(model)
        name = str(next(model.parameters()).dtype).removeprefix("torch.")
        slow = name == "bfloat16" and not cpu_bf16_support().native
        repeats, warm = (args.bf16_repeats, "small") if slow else (args.repeats, "full")
        log.info("timing %s (%d repeats)...", name, repeats)
        results[name] = time_dtype(model, args, repeats, warm)
        if name == "float32" and not args.skip_extras:
            log.info("threads, SDPA, torch.compile...")
            extra = extras(model, args)
        del model
        gc.collect()
    auto_model = cl.load_model(args.model, device="cpu")
    auto = dtype_choice(auto_model).describe()
    del auto_model
    text = report(args, results, spec, auto, extra, list(notes.notes))
    print(text)
    if args.write_docs:
        update_marked_block(DOCS, BLOCK, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
