"""Edge bundles: size and per-pair latency of torch fp32 vs ONNX fp32 vs ONNX int4, side by side in one run.

CPU (the issue's acceptance run, ``small`` random model, reference prefix cache on for all three):
    python bench/export.py --size small --image-size 256 --reps 5 --record
GPU (p50/p95 per 800x800 pair, peak GPU memory; needs onnxruntime-gpu and a CUDA torch):
    python bench/export.py --size 2b --device cuda --image-size 800 --reps 50 --record
A real checkpoint instead of a random one: ``--model DIR``.
Answer grammar on vs off for the vlm engine and the ONNX int4 bundle (passes per answer, wall time):
    python bench/export.py --grammar-compare --size small --image-size 256 --reps 8 [--record]
    python bench/export.py --grammar-compare --memorized DIR   # real answers on the fixture's own pairs
ONNX KV cache in preallocated ping-pong buffers vs a fresh allocation per decoder call (decode steps/s):
    python bench/export.py --kv-compare --size small --image-size 256 --reps 6 --new-tokens 32

Target on a 24 GB GPU: int4 bundle p50 <= 50 ms per pair, peak memory <= 6 GB. Answers have a fixed
length (``--new-tokens``, EOS ignored) so every engine decodes the same number of tokens. On CPU the
engines take turns on each frame (load changes on a shared machine hit all of them); on GPU they run
one after another so each one's peak memory can be read.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
from differad_edge.export import make_config, run_export
from gpu_memory import GpuMemorySampler  # bench/ is on sys.path
from vlm_latency import grammar_compare, grammar_table, make_pair, memorized_pairs_of  # bench/ is on sys.path

from differad_edge.engines import Engine, Reference
from differad_edge.engines.onnx import OnnxEngine
from differad_edge.engines.vlm import VLMEngine
from differad_edge.onnxrt.bundle import bundle_bytes, load_bundle
from differad_edge.prompts import NOTHINK_TEMPLATE
from differad_edge.vlm.factory import make_model

RESULTS = Path(__file__).with_name("RESULTS.md")


def _engine(name: str, args: argparse.Namespace, model: Path, bundles: dict[str, Path]) -> Engine:
    if name.startswith("torch"):
        eng: Any = VLMEngine(
            model,
            dtype=args.torch_dtype,
            device=args.device,
            template_id=NOTHINK_TEMPLATE.id,
            max_new_tokens=args.new_tokens,
            size_policy={"max_pixels": args.image_size**2, "min_pixels": 64 * 64},
        )
    else:
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if args.device == "cuda" else None
        eng = OnnxEngine(bundles[name], providers=providers, max_new_tokens=args.new_tokens, threads=args.threads)
    eng.min_new_tokens = args.new_tokens
    return eng


def _time(engines: dict[str, Engine], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    ref, _ = make_pair(args.image_size, 0)
    targets = [make_pair(args.image_size, 1 + i)[1] for i in range(args.warmup + args.reps)]
    handles, prepare_ms = {}, {}
    for name, eng in engines.items():
        t0 = time.perf_counter()
        handles[name] = eng.prepare(Reference(ref, product_id="bench"))
        prepare_ms[name] = (time.perf_counter() - t0) * 1000.0
    totals: dict[str, list[float]] = {n: [] for n in engines}
    order = list(engines)
    from tqdm import tqdm

    for i, tgt in enumerate(tqdm(targets, desc="pairs", unit="pair", leave=False)):
        for name in order if i % 2 == 0 else reversed(order):
            t0 = time.perf_counter()
            engines[name].detect(handles[name], tgt)
            if i >= args.warmup:
                totals[name].append((time.perf_counter() - t0) * 1000.0)
    return {
        n: {"p50": statistics.median(v), "p95": float(np.percentile(v, 95)), "prepare": prepare_ms[n], "n": len(v)}
        for n, v in totals.items()
    }


def _time_gpu(names: list[str], args: argparse.Namespace, model: Path, bundles: dict[str, Path]) -> dict:
    """One engine at a time, freed before the next, so each peak memory is its own."""
    import torch

    out = {}
    for name in names:
        with GpuMemorySampler() as mem:
            eng = _engine(name, args, model, bundles)
            out.update(_time({name: eng}, args))
        out[name]["peak_gpu_mib"] = mem.peak_mib
        eng.close()
        del eng
        gc.collect()
        torch.cuda.empty_cache()
    return out


def table(rows: dict[str, dict[str, float]], sizes: dict[str, int], gpu: bool) -> str:
    base = next(iter(rows))  # the torch baseline
    base_t, base_s = rows[base]["p50"], sizes[base]
    head = f"| config | size MB | size vs {base} | p50 ms/pair | p95 ms/pair | p50 vs {base} | prepare ms (once) |"
    sep = "|---|---:|---:|---:|---:|---:|---:|"
    if gpu:
        head, sep = head + " peak GPU MiB |", sep + "---:|"
    lines = [head, sep]
    for name, r in rows.items():
        line = (
            f"| {name} | {sizes[name] / 1e6:.1f} | {sizes[name] / base_s:.2f} | {r['p50']:.1f} | {r['p95']:.1f} | "
            f"{r['p50'] / base_t:.2f} | {r['prepare']:.1f} |"
        )
        lines.append(line + (f" {r.get('peak_gpu_mib', float('nan')):.0f} |" if gpu else ""))
    return "\n".join(lines)


def plot(rows: dict[str, dict[str, float]], sizes: dict[str, int], title: str, path: Path) -> None:
    """Size and p50/p95 latency per config, side by side (the picture of the table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.bar(names, [sizes[n] / 1e6 for n in names], color=["#888", "#4a7", "#27a"])
    ax1.set_ylabel("size MB")
    p50 = [rows[n]["p50"] for n in names]
    err = [[0] * len(names), [rows[n]["p95"] - rows[n]["p50"] for n in names]]
    ax2.bar(names, p50, yerr=err, capsize=4, color=["#888", "#4a7", "#27a"])
    ax2.set_ylabel("ms per pair (p50, bar to p95)")
    for ax, vals in ((ax1, [sizes[n] / sizes[names[0]] for n in names]), (ax2, [v / p50[0] for v in p50])):
        for i, v in enumerate(vals):
            ax.annotate(f"x{v:.2f}", (i, 0), xytext=(0, 4), textcoords="offset points", ha="center", color="white")
    fig.suptitle(textwrap.fill(title, 150), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("tiny", "small", "2b"), default="small", help="factory model size")
    ap.add_argument("--model", type=Path, help="existing checkpoint folder (instead of a random factory model)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--torch-dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="torch baseline dtype")
    ap.add_argument("--image-size", type=int, default=256, help="square image side (800 for the GPU target)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=16, help="fixed answer length (EOS ignored)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and ONNX Runtime CPU threads (1: torch's OpenMP collapses on an oversubscribed CPU)",
    )
    ap.add_argument("--block-size", type=int, default=32, help="int4 block size")
    ap.add_argument("--work", type=Path, help="keep the model and bundles here (default: a temp folder)")
    ap.add_argument("--plot", type=Path, help="write a bar chart (size, latency) here (png)")
    ap.add_argument("--reuse", action="store_true", help="reuse bundles already exported into --work")
    ap.add_argument("--record", action="store_true", help=f"append the table to {RESULTS.name}")
    ap.add_argument(
        "--grammar-compare",
        action="store_true",
        help="answer grammar on vs off, vlm engine and ONNX int4 bundle, natural answer lengths",
    )
    ap.add_argument("--memorized", type=Path, help="with --grammar-compare: a memorized fixture model and its pairs")
    ap.add_argument(
        "--kv-compare",
        action="store_true",
        help="ONNX fp32 and int4: KV in preallocated buffers vs allocated per decoder call (decode steps/s)",
    )
    args = ap.parse_args(argv)
    if args.grammar_compare:
        return _grammar_main(args, argv)
    if args.kv_compare:
        return _kv_main(args, argv)

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="differad-bench-export-") as tmp:
        work = args.work or Path(tmp)
        model = args.model or work / f"model-{args.size}"
        if not args.model and not (model / "config.json").is_file():
            make_model(model, size=args.size, seed=0, template_id=NOTHINK_TEMPLATE.id)
        bundles: dict[str, Path] = {}
        for name, quant in (("onnx fp32", "fp32"), ("onnx int4", "int4")):
            if args.reuse and (work / f"bundle-{quant}" / "manifest.json").is_file():
                bundles[name] = work / f"bundle-{quant}"  # checked again when the engine loads it
                continue
            t0 = time.perf_counter()
            cfg = make_config(
                model=model,
                out=work / f"bundle-{quant}",
                quant=quant,
                verify_count=2,
                verify_size=args.image_size,
                max_pixels=args.image_size**2,
                max_new_tokens=args.new_tokens,
                block_size=args.block_size,
                fail_on_verify=False,
                vision_fp16=(args.device == "cuda" and quant == "int4"),
                overwrite=True,
            )
            bundles[name] = run_export(cfg, log=lambda m: print(m, file=sys.stderr)).bundle
            print(f"exported {name} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        base = f"torch {args.torch_dtype}"
        sizes = {base: sum(f.stat().st_size for f in model.glob("*.safetensors"))}
        for name, path in bundles.items():
            sizes[name] = bundle_bytes(load_bundle(path).manifest)
        names = [base, "onnx fp32", "onnx int4"]
        if args.device == "cuda":
            rows = _time_gpu(names, args, model, bundles)
        else:
            engines = {n: _engine(n, args, model, bundles) for n in names}
            rows = _time(engines, args)
    model_desc = str(args.model) if args.model else f"{args.size} (random weights)"
    ort_version = __import__("onnxruntime").__version__
    header = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.node()} "
        f"({platform.machine()}, {args.threads} threads); torch {torch.__version__}; onnxruntime {ort_version}; "
        f"model={model_desc}; device={args.device}; {args.image_size}x{args.image_size} pairs; "
        f"{args.new_tokens} new tokens; reference prefix cache on; {args.reps} reps (+{args.warmup} warmup)"
    )
    text = table(rows, sizes, args.device == "cuda")
    command = "python bench/export.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(header)
    print(text)
    if args.plot:
        plot(rows, sizes, header, args.plot)
    if args.record:
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(
                f"\n## Edge bundles: {base} vs ONNX fp32 vs ONNX int4 ({args.device})\n\n"
                f"{header}\n\nCommand: `{command}`\n\n{text}\n"
            )
        print(f"appended to {RESULTS}", file=sys.stderr)
    return 0


def _grammar_main(args: argparse.Namespace, argv: list[str] | None) -> int:
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="differad-bench-export-") as tmp:
        work = args.work or Path(tmp)
        model = args.memorized or args.model or work / f"model-{args.size}"
        if not (args.memorized or args.model) and not (model / "config.json").is_file():
            make_model(model, size=args.size, seed=0, template_id=NOTHINK_TEMPLATE.id)
        if args.memorized:
            pairs = memorized_pairs_of(args.memorized)
            side = max(max(r.shape[:2]) for r, _ in pairs)
        else:
            side = args.image_size
            ref, _ = make_pair(side, 0)
            pairs = [(ref, make_pair(side, 1 + i)[1]) for i in range(args.warmup + args.reps)]
        out = work / "bundle-int4-grammar"
        if not (args.reuse and (out / "manifest.json").is_file()):
            cfg = make_config(
                model=model,
                out=out,
                quant="int4",
                verify_count=2,
                verify_size=side,
                max_pixels=side * side,
                block_size=args.block_size,
                fail_on_verify=False,
                overwrite=True,
            )
            run_export(cfg, log=lambda m: print(m, file=sys.stderr))
        policy = {"max_pixels": side * side, "min_pixels": min(side * side, 64 * 64)}
        vlm = VLMEngine(model, template_id=NOTHINK_TEMPLATE.id, size_policy=policy)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a random model's int4 bundle is unverified by design here
            onnx = OnnxEngine(out, threads=args.threads)
        tables = [
            grammar_table(f"vlm fp32 {side}x{side}", grammar_compare(vlm, pairs, warmup=args.warmup)),
            grammar_table(f"onnx int4 {side}x{side}", grammar_compare(onnx, pairs, warmup=args.warmup)),
        ]
    header = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.node()} ({platform.machine()}, "
        f"{args.threads} threads, shared CPU); torch {torch.__version__}; onnxruntime "
        f"{__import__('onnxruntime').__version__}; model={args.memorized or args.model or args.size}; "
        f"grammar on vs off; reference prefix cache on; {len(pairs) - args.warmup} pairs (+{args.warmup} warmup)"
    )
    text = "\n\n".join(tables)
    print(header)
    print(text)
    if args.record:
        command = "python bench/export.py " + " ".join(argv if argv is not None else sys.argv[1:])
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(
                f"\n## Answer grammar on vs off: vlm and ONNX int4 (cpu)\n\n{header}\n\nCommand: `{command}`\n\n"
                f"{text}\n"
            )
        print(f"appended to {RESULTS}", file=sys.stderr)
    return 0


def _kv_main(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Decode steps/s of the ONNX runtime with ``kv_buffers`` on and off, taking turns on each pair.

    Fixed-length unconstrained answers (``--new-tokens``), so both settings run the same decoder calls;
    a step = one decoder call after the prefill; tokens are checked identical.
    """
    import warnings

    with tempfile.TemporaryDirectory(prefix="differad-bench-kv-") as tmp:
        work = args.work or Path(tmp)
        model = args.model or work / f"model-{args.size}"
        if not args.model and not (model / "config.json").is_file():
            make_model(model, size=args.size, seed=0, template_id=NOTHINK_TEMPLATE.id)
        side = args.image_size
        ref, _ = make_pair(side, 0)
        targets = [make_pair(side, 1 + i)[1] for i in range(args.warmup + args.reps)]
        rows = []
        for quant in ("fp32", "int4"):
            out = work / f"bundle-{quant}"
            if not (args.reuse and (out / "manifest.json").is_file()):
                cfg = make_config(
                    model=model,
                    out=out,
                    quant=quant,
                    verify_count=2,
                    verify_size=side,
                    max_pixels=side * side,
                    max_new_tokens=args.new_tokens,
                    block_size=args.block_size,
                    fail_on_verify=False,
                    overwrite=True,
                )
                run_export(cfg, log=lambda m: print(m, file=sys.stderr))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a random model's bundle may be unverified
                eng = OnnxEngine(out, threads=args.threads, max_new_tokens=args.new_tokens)
            runner = eng.runner
            prefix = runner.prefix(eng.size_policy.apply(ref).image)
            rates: dict[bool, list[float]] = {True: [], False: []}
            same = 0
            for i, tgt in enumerate(targets):
                image = eng.size_policy.apply(tgt).image
                tokens = []
                for on in (True, False) if i % 2 == 0 else (False, True):
                    runner.kv_buffers = on
                    gen = runner.generate(image, prefix=prefix, grammar=False, min_new_tokens=args.new_tokens)
                    tokens.append(gen.tokens)
                    if i >= args.warmup:
                        rates[on].append((gen.forward_passes - 1) / (gen.timings_ms["decode"] / 1000.0))
                same += int(i >= args.warmup and tokens[0] == tokens[1])
            on, off = statistics.median(rates[True]), statistics.median(rates[False])
            best_on, best_off = max(rates[True]), max(rates[False])
            rows.append(
                f"| onnx {quant} | {args.new_tokens} | {on:.1f} / {best_on:.1f} | {off:.1f} / {best_off:.1f} | "
                f"{on / off:.2f} / {best_on / best_off:.2f} | {same}/{args.reps} |"
            )
    header = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.node()} ({platform.machine()}, "
        f"{args.threads} threads, shared CPU); onnxruntime {__import__('onnxruntime').__version__}; "
        f"model={args.model or args.size}; {side}x{side} pairs; reference prefix cache on; IO binding on; "
        f"{args.reps} pairs (+{args.warmup} warmup), the two settings taking turns on each pair"
    )
    text = "\n".join(
        [
            "| bundle | new tokens | decode steps/s, preallocated KV buffers (p50 / best) | decode steps/s, "
            "allocated per call (p50 / best) | ratio (p50 / best) | identical tokens |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    print(header)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
