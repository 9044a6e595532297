"""VLM per-pair latency: reference prefix cache on vs off, per stage, side by side in one run.

CPU (the issue's acceptance run, ``small`` random model):
    python bench/vlm_latency.py --size small --reps 5
GPU (fixed 16-token no-think answer, p50/p95 per 800x800 pair, peak memory):
    python bench/vlm_latency.py --size 2b --dtype bf16 --device cuda [--quant nf4] --image-sizes 800 --reps 50
    ... --kv-cache static       # fixed-shape KV cache: generate compiles the decoder on CUDA
A real checkpoint instead of a random one: ``--model DIR``.
Answer grammar on vs off (forward passes per answer, wall time per pair; natural answers, no fixed length):
    python bench/vlm_latency.py --grammar-compare --size small --image-sizes 256 --reps 8
    python bench/vlm_latency.py --grammar-compare --memorized DIR   # a model with real answers, its own pairs

Targets: cached/uncached <= 0.6 per frame at 800x800 on CPU; p50 <= 50 ms per pair on a 24 GB GPU.
Both engines see the same frames in alternating order, so load changes on a shared machine hit both.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from differad_edge.engines import Reference
from differad_edge.engines.vlm import VLMEngine
from differad_edge.fileio import atomic_write_text
from differad_edge.prompts import NOTHINK_TEMPLATE
from differad_edge.vlm.factory import make_model
from differad_edge.vlm.loader import load_model
from differad_edge.vlm.size_policy import SizePolicy

STAGES = ("preprocess", "vision", "prefill", "decode", "parse", "total")


def make_pair(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured reference and a target with a bright square defect (content does not change timings)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, (size // 8, size // 8, 3), dtype=np.uint8)
    ref = np.kron(base, np.ones((8, 8, 1), np.uint8))
    tgt = ref.copy()
    a, b = size // 3, size // 3 + size // 10
    tgt[a:b, a:b] = 255
    return ref, tgt


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run_size(engines: dict[str, VLMEngine], size: int, reps: int, warmup: int, device: str) -> dict:
    import torch
    from tqdm import tqdm

    ref, _ = make_pair(size, 0)
    targets = [make_pair(size, 1 + i)[1] for i in range(warmup + reps)]
    for eng in engines.values():
        eng.size_policy = SizePolicy(max_pixels=size * size, min_pixels=min(size * size, 64 * 64))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    handles, prepare_ms = {}, {}
    for name, eng in engines.items():
        t0 = time.perf_counter()
        handles[name] = eng.prepare(Reference(ref, product_id="bench", version=str(size)))
        prepare_ms[name] = (time.perf_counter() - t0) * 1000.0
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
    order = list(engines)
    for i, tgt in enumerate(tqdm(targets, desc=f"{size}x{size}", unit="pair", leave=False)):
        for name in order if i % 2 == 0 else reversed(order):  # alternate who goes first
            det = engines[name].detect(handles[name], tgt)
            if i >= warmup:
                samples[name].append(det.timings_ms)
    result = {"size": size, "prepare_ms": prepare_ms, "stages": {}, "total_ms": {}}
    for name, rows in samples.items():
        result["stages"][name] = {s: statistics.median(r.get(s, 0.0) for r in rows) for s in STAGES}
        totals = [r["total"] for r in rows]
        result["total_ms"][name] = {
            "p50": _percentile(totals, 50),
            "p95": _percentile(totals, 95),
            "min": min(totals),
            "n": len(totals),
        }
    # Each pair ran both paths back to back, so the per-pair ratio cancels most load swings of a shared machine.
    pair_ratios = [c["total"] / u["total"] for u, c in zip(samples["uncached"], samples["cached"], strict=True)]
    result["pair_ratio_median"] = statistics.median(pair_ratios)
    if device.startswith("cuda"):
        result["max_memory_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _answer_kind(text: str) -> str:
    from differad_edge.parsing import parse_answer

    parsed = parse_answer(text, answer_only=True)
    return "invalid" if not parsed.valid else "zero box" if parsed.box.is_zero else "anomalous"


def _vlm_answer(
    engine: VLMEngine, handle, target: np.ndarray, grammar: bool, max_new: int, fixed: int = 0, lookahead: bool = True
) -> tuple[list[int], str, int, float]:
    """(tokens, text, forward passes, ms) of one vlm answer; ``fixed``: unconstrained, exactly that many tokens."""
    engine.grammar, engine.min_new_tokens = grammar, fixed
    if hasattr(engine, "lookahead"):  # engines before lookahead decode one decision per pass
        engine.lookahead = lookahead
    _set_max_new(engine, fixed or max_new)
    resized = engine.size_policy.apply(target)
    t0 = time.perf_counter()
    gen = engine.generate(handle, [resized])
    return gen.tokens[0], gen.texts[0], gen.forward_passes[0], (time.perf_counter() - t0) * 1000.0


def _set_max_new(engine: VLMEngine, tokens: int | None) -> None:
    """The vlm engine's answer budget (a settable property with typed configs, a private field before)."""
    try:
        engine.max_new_tokens = tokens  # type: ignore[misc]
    except AttributeError:
        engine._max_new_tokens = tokens  # type: ignore[attr-defined]


def _prefix_of(handle):
    """The ONNX handle's cached reference prefix (a field of the typed handle, ``state`` before)."""
    return handle.prefix if hasattr(handle, "prefix") else handle.state["prefix"]


def _onnx_answer(
    engine, handle, target: np.ndarray, grammar: bool, max_new: int, fixed: int = 0, lookahead: bool = True
) -> tuple[list[int], str, int, float]:
    resized = engine.size_policy.apply(target)
    engine.runner.lookahead = lookahead
    t0 = time.perf_counter()
    gen = engine.runner.generate(
        resized.image,
        prefix=_prefix_of(handle),
        max_new_tokens=fixed or max_new,
        min_new_tokens=fixed,
        grammar=grammar and not fixed,
    )
    return gen.tokens, gen.text, gen.forward_passes, (time.perf_counter() - t0) * 1000.0


def grammar_compare(engine, pairs: list[tuple[np.ndarray, np.ndarray]], warmup: int = 1, max_new: int = 64) -> dict:
    """Per pair, back to back: grammar on with lookahead; grammar on, lookahead off (one
    decision per pass); unconstrained greedy forced to the same length (what greedy decoding costs to
    emit that answer: one forward pass per token); unconstrained greedy stopping by itself (EOS /
    ``</answer>`` / ``max_new``). Forward passes include the prefill."""
    answer = _vlm_answer if isinstance(engine, VLMEngine) else _onnx_answer
    vlm = isinstance(engine, VLMEngine)
    before = (
        (engine.config.lookahead if hasattr(engine.config, "lookahead") else None) if vlm else engine.runner.lookahead
    )
    rows = []
    handles: dict[int, object] = {}
    from tqdm import tqdm

    for i, (ref, tgt) in enumerate(tqdm(pairs, desc="grammar on/off", unit="pair", leave=False)):
        key = id(ref)
        if key not in handles:
            handles[key] = engine.prepare(Reference(ref, product_id="bench", version=str(i)))
        h = handles[key]
        on = answer(engine, h, tgt, True, max_new)
        plain = answer(engine, h, tgt, True, max_new, lookahead=False)
        same = answer(engine, h, tgt, False, max_new, fixed=len(on[0]))
        free = answer(engine, h, tgt, False, max_new)
        if i >= warmup:
            rows.append(
                {
                    "kind": _answer_kind(on[1]),
                    "tokens": len(on[0]),
                    "passes_on": on[2],
                    "ms_on": on[3],
                    "plain_identical": plain[0] == on[0],
                    "passes_plain": plain[2],
                    "ms_plain": plain[3],
                    "passes_same": same[2],
                    "ms_same": same[3],
                    "free_kind": _answer_kind(free[1]),
                    "free_identical": free[0] == on[0],
                    "passes_free": free[2],
                    "ms_free": free[3],
                }
            )
    if isinstance(engine, VLMEngine):
        engine.grammar, engine.min_new_tokens = True, 0
        _set_max_new(engine, None)
        if hasattr(engine, "lookahead"):
            engine.lookahead = before
    else:
        engine.runner.lookahead = before
    return {"rows": rows}


def grammar_table(label: str, result: dict) -> str:
    """One line per answer kind: passes and wall time, grammar on vs unconstrained."""
    lines = [
        f"| {label}: answer kind | n | tokens | passes on | passes, lookahead off | passes unconstrained "
        "(same answer) | passes ratio | ms on (p50) | ms lookahead off (p50) | ms unconstrained same (p50) | "
        "time ratio (p50 of per-pair) | time ratio, lookahead off | unconstrained free: valid, identical, passes, "
        "ms p50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows = result["rows"]
    for kind in ("anomalous", "zero box", "all"):
        sel = [r for r in rows if kind == "all" or r["kind"] == kind]
        if not sel:
            continue

        def mean(k: str, sel: list[dict] = sel) -> float:
            return statistics.mean(r[k] for r in sel)

        def med(k: str, sel: list[dict] = sel) -> float:
            return statistics.median(r[k] for r in sel)

        ratio_t = statistics.median(r["ms_on"] / r["ms_same"] for r in sel)
        ratio_plain = statistics.median(r["ms_plain"] / r["ms_same"] for r in sel)
        valid = sum(r["free_kind"] != "invalid" for r in sel)
        ident = sum(r["free_identical"] for r in sel)
        plain_same = "" if all(r["plain_identical"] for r in sel) else " (tokens differ from lookahead off!)"
        lines.append(
            f"| {kind} | {len(sel)} | {mean('tokens'):.1f} | {mean('passes_on'):.1f}{plain_same} | "
            f"{mean('passes_plain'):.1f} | {mean('passes_same'):.1f} | "
            f"{mean('passes_on') / mean('passes_same'):.2f} | {med('ms_on'):.1f} | {med('ms_plain'):.1f} | "
            f"{med('ms_same'):.1f} | "
            f"{ratio_t:.2f} | {ratio_plain:.2f} | {valid}/{len(sel)} valid, {ident} identical, {mean('passes_free'):.1f}, "
            f"{med('ms_free'):.1f} |"
        )
    return "\n".join(lines)


def memorized_pairs_of(model: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    from differad_edge.train.fixture import memorized_pairs

    from differad_edge.dataset import read_pairs
    from differad_edge.images import load_image

    return [(load_image(p.reference), load_image(p.target)) for p in read_pairs(memorized_pairs(model)).pairs]


def print_table(results: list[dict], gpu: bool) -> str:
    lines = [
        "| image | stage | uncached ms (median) | cached ms (median) | cached/uncached |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        st = r["stages"]
        for s in STAGES:
            u, c = st["uncached"][s], st["cached"][s]
            ratio = f"{c / u:.2f}" if u > 0 else "-"
            label = "**per frame**" if s == "total" else s
            lines.append(f"| {r['size']}x{r['size']} | {label} | {u:.1f} | {c:.1f} | {ratio} |")
        lines.append(
            f"| {r['size']}x{r['size']} | per frame, best of {r['total_ms']['cached']['n']} | "
            f"{r['total_ms']['uncached']['min']:.1f} | {r['total_ms']['cached']['min']:.1f} | "
            f"{r['total_ms']['cached']['min'] / r['total_ms']['uncached']['min']:.2f} |"
        )
        lines.append(
            f"| {r['size']}x{r['size']} | per frame, median of per-pair ratios | | | {r['pair_ratio_median']:.2f} |"
        )
        lines.append(
            f"| {r['size']}x{r['size']} | prepare (once per reference) | {r['prepare_ms']['uncached']:.1f} | "
            f"{r['prepare_ms']['cached']:.1f} | - |"
        )
    if gpu or any("max_memory_allocated_mb" in r for r in results):
        lines += [
            "",
            "| image | mode | p50 ms/pair | p95 ms/pair | n | peak GPU MiB |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in results:
            for name in ("uncached", "cached"):
                t = r["total_ms"][name]
                mem = r.get("max_memory_allocated_mb", float("nan"))
                lines.append(
                    f"| {r['size']}x{r['size']} | {name} | {t['p50']:.1f} | {t['p95']:.1f} | {t['n']} | {mem:.0f} |"
                )
    text = "\n".join(lines)
    print(text)
    return text


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = STAGES[:-1]
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        bottom = np.zeros(2)
        for s in stages:
            vals = np.array([r["stages"]["uncached"][s], r["stages"]["cached"][s]])
            ax.bar(["uncached", "cached"], vals, bottom=bottom, label=s)
            bottom += vals
        ratio = r["stages"]["cached"]["total"] / r["stages"]["uncached"]["total"]
        ax.set_title(f"{r['size']}x{r['size']}: cached/uncached = {ratio:.2f}")
        ax.set_ylabel("ms per pair (median)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(stages))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("tiny", "small", "2b"), default="small", help="factory model size")
    ap.add_argument("--model", type=Path, help="existing checkpoint folder (instead of a random factory model)")
    ap.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quant", choices=("nf4", "int8"), default=None)
    ap.add_argument("--image-sizes", type=int, nargs="+", default=[256, 800])
    ap.add_argument("--reps", type=int, default=5, help="timed pairs per image size and mode")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument(
        "--kv-cache",
        choices=("dynamic", "static"),
        default="dynamic",
        help="KV cache of both engines; static: fixed shapes, which generate compiles on CUDA",
    )
    ap.add_argument("--new-tokens", type=int, default=16, help="fixed answer length (EOS ignored)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 gives stable numbers on a shared machine; 2 threads stall when preempted)",
    )
    ap.add_argument(
        "--grammar-compare",
        action="store_true",
        help="answer grammar on vs off (forward passes, wall time) instead of the prefix-cache comparison",
    )
    ap.add_argument("--memorized", type=Path, help="with --grammar-compare: a memorized fixture model and its pairs")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--plot", type=Path, help="write a stacked bar chart of the stages here (png)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {args.device}: CUDA is not available on this machine; use --device cpu", file=sys.stderr)
        return 2
    if args.grammar_compare:
        return _grammar_main(args)
    with tempfile.TemporaryDirectory(prefix="differad-bench-") as tmp:
        t0 = time.perf_counter()
        path = args.model or make_model(Path(tmp) / args.size, size=args.size, seed=0, template_id=NOTHINK_TEMPLATE.id)
        loaded = load_model(path, dtype=args.dtype, device=args.device, quant=args.quant)
        print(
            f"model {path} ({loaded.info['params'] / 1e6:.1f}M params, {args.dtype}, {args.device}, "
            f"quant={args.quant}) ready in {time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
        )
        engines = {
            name: VLMEngine(
                loaded,
                template_id=NOTHINK_TEMPLATE.id,
                max_new_tokens=args.new_tokens,
                reference_cache=(name == "cached"),
                kv_cache=args.kv_cache,
            )
            for name in ("uncached", "cached")
        }
        for eng in engines.values():
            eng.min_new_tokens = args.new_tokens
        results = [run_size(engines, s, args.reps, args.warmup, args.device) for s in args.image_sizes]
    header = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.node()}; torch {torch.__version__}; "
        f"threads={args.threads}; model={args.model or args.size} {args.dtype} {args.device} quant={args.quant}; "
        f"kv_cache={args.kv_cache}; "
        f"{args.new_tokens} new tokens; {args.reps} reps (+{args.warmup} warmup)"
    )
    print(header)
    table = print_table(results, args.device.startswith("cuda"))
    if args.json:
        atomic_write_text(
            args.json,
            json.dumps(
                {
                    "header": header,
                    "args": vars(args) | {"model": str(args.model), "json": str(args.json), "plot": str(args.plot)},
                    "results": results,
                    "table": table,
                },
                indent=2,
            ),
        )
    if args.plot:
        plot(results, args.plot)
    return 0


def _grammar_main(args: argparse.Namespace) -> int:
    import torch

    with tempfile.TemporaryDirectory(prefix="differad-bench-") as tmp:
        path = (
            args.memorized
            or args.model
            or make_model(Path(tmp) / args.size, size=args.size, seed=0, template_id=NOTHINK_TEMPLATE.id)
        )
        loaded = load_model(path, dtype=args.dtype, device=args.device, quant=args.quant)
        out = []
        if args.memorized:
            engine = VLMEngine(loaded, kv_cache=args.kv_cache)
            pairs = memorized_pairs_of(args.memorized)
            label = f"vlm, memorized fixture, its {len(pairs)} pairs"
            out.append(grammar_table(label, grammar_compare(engine, pairs, warmup=args.warmup)))
        for size in [] if args.memorized else args.image_sizes:
            engine = VLMEngine(
                loaded,
                kv_cache=args.kv_cache,
                size_policy=SizePolicy(max_pixels=size * size, min_pixels=min(size * size, 64 * 64)),
            )
            ref, _ = make_pair(size, 0)
            pairs = [(ref, make_pair(size, 1 + i)[1]) for i in range(args.warmup + args.reps)]
            label = f"vlm {args.size if not args.model else args.model} {size}x{size}"
            out.append(grammar_table(label, grammar_compare(engine, pairs, warmup=args.warmup)))
    header = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.node()}; torch {torch.__version__}; "
        f"threads={args.threads}; model={args.memorized or args.model or args.size} {args.dtype} {args.device}; "
        f"kv_cache={args.kv_cache}; grammar on vs off; reference prefix cache on"
    )
    print(header)
    print("\n\n".join(out))
    if args.json:
        atomic_write_text(args.json, json.dumps({"header": header, "tables": out}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
