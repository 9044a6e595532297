"""The GPU measurement run of ``bench/gpu.sh``: one table in the ``bench/RESULTS.md`` format.

Configs (``--size 2b``, 800x800 pairs, p50 / p95 per pair and peak GPU memory, answer grammar on and
off): vlm bf16 with the dynamic KV cache, the static one, and compiled (static cache, which
``generate`` compiles on CUDA; the grammar's own loop is not compiled, so that row is grammar off
only); bitsandbytes nf4; the ONNX int4 bundle on the CUDA EP with the TensorRT vision plan. "Grammar
on" runs with the engines' GPU default, tree lookahead on (two decisions per pass). Plus: fp32 greedy
tokens of the tiny model on CPU and GPU identical (grammar on and off; with the grammar on the CPU
decodes one decision per pass and the GPU with lookahead, so this also checks lookahead on CUDA).

Each config runs in its own subprocess (its own peak memory; a crash or a timeout costs one row,
not the run) under a share of ``--budget-s``. "Grammar off" decodes a fixed ``--off-tokens`` answer
(a random model never stops by itself; 20 tokens is a no-think box answer's length).
``--dry-run``: every step with its real imports and arguments on the CPU, the tiny model, 64 px,
one pair (checks the script, measures nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from gpu_memory import GpuMemorySampler  # bench/ is on sys.path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CONFIGS = ("vlm bf16 dynamic", "vlm bf16 static", "vlm bf16 compiled", "vlm nf4", "onnx int4 cuda + trt vision")


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _engine(config: str, model: Path, bundle: Path | None, device: str, dtype: str, grammar: bool, side: int) -> Any:
    policy = {"max_pixels": side * side, "min_pixels": min(side * side, 64 * 64)}
    if config.startswith("vlm"):
        from differad_edge.engines.vlm import VLMEngine

        kv = "static" if ("static" in config or "compiled" in config) else "dynamic"
        quant = "nf4" if "nf4" in config else None
        return VLMEngine(
            model,
            dtype="fp32" if quant else dtype,
            device=device,
            quant=quant,
            kv_cache=kv,
            grammar=grammar,
            size_policy=policy,
        )
    from differad_edge.engines.onnx import OnnxEngine
    from differad_edge.onnxrt.runtime import available_providers

    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    providers = [p for p in providers if p in available_providers()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a random model's int4 bundle does not pass verification
        return OnnxEngine(bundle, providers=providers, grammar=grammar)


def measure(
    config: str,
    model: Path,
    bundle: Path | None,
    device: str,
    dtype: str,
    grammar: bool,
    side: int,
    reps: int,
    warmup: int,
    off_tokens: int,
) -> dict[str, Any]:
    """p50 / p95 ms per pair and peak memory of one config (run in a subprocess by ``main``)."""
    from vlm_latency import make_pair

    from differad_edge.engines import Reference

    if config.endswith("compiled") and grammar:
        return {"skipped": "the grammar's own decode loop is not compiled (see the static row)"}
    torch_engine = config.startswith("vlm")
    if torch_engine and device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    sampler = GpuMemorySampler() if device == "cuda" and not torch_engine else None
    if sampler:
        sampler.__enter__()
    try:
        eng = _engine(config, model, bundle, device, dtype, grammar, side)
        if not grammar:
            eng.min_new_tokens = off_tokens
            try:
                eng.max_new_tokens = off_tokens
            except AttributeError:  # a vlm engine from before typed configs (read-only property)
                eng._max_new_tokens = off_tokens
        ref, _ = make_pair(side, 0)
        handle = eng.prepare(Reference(ref, product_id="gpu"))
        times, valid = [], 0
        for i in range(warmup + reps):
            tgt = make_pair(side, 1 + i)[1]
            t0 = time.perf_counter()
            det = eng.detect(handle, tgt)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000.0)
                valid += det.valid
        info = eng.describe()
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
    out = {
        "p50": statistics.median(times),
        "p95": float(np.percentile(times, 95)),
        "n": len(times),
        "valid": valid,
        "vision": info.get("vision_backend", "torch"),
        "note": info.get("vision_note", ""),
    }
    if torch_engine and device == "cuda":
        import torch

        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    elif sampler:
        out["peak_mib"] = sampler.peak_mib
    return out


def tokens_cpu_vs_gpu(model: Path, gpu: str, pairs: int) -> dict[str, Any]:
    """fp32 greedy tokens of the same pairs on CPU and on ``gpu`` (grammar on and off)."""
    from vlm_latency import make_pair

    from differad_edge.engines import Reference
    from differad_edge.engines.vlm import VLMEngine

    result = {}
    for grammar in (True, False):
        engines = [
            VLMEngine(
                model,
                device=d,
                grammar=grammar,
                max_new_tokens=24,
                size_policy={"max_pixels": 128 * 128, "min_pixels": 64 * 64},
            )
            for d in ("cpu", gpu)
        ]
        same = 0
        for i in range(pairs):
            ref, tgt = make_pair(128, 10 + i)
            toks = [e.generate(e.prepare(Reference(ref)), [e.size_policy.apply(tgt)]).tokens[0] for e in engines]
            same += toks[0] == toks[1]
        result["grammar on" if grammar else "grammar off"] = f"{same}/{pairs} identical"
    return result


def _make_models(work: Path, size: str, log: Any) -> tuple[Path, Path]:
    """The factory model of ``size`` and the tiny one (random weights, made here: no hub)."""
    from differad_edge.prompts import NOTHINK_TEMPLATE
    from differad_edge.vlm.factory import make_model

    model, tiny = work / f"model-{size}", work / "model-tiny"
    for path, s in ((model, size), (tiny, "tiny")):
        if not (path / "config.json").is_file():
            t0 = time.perf_counter()
            make_model(path, size=s, seed=0, template_id=NOTHINK_TEMPLATE.id, overwrite=True)  # type: ignore[arg-type]
            log(f"made {s} model in {time.perf_counter() - t0:.0f}s")
    return model, tiny


def export_bundle(model: Path, bundle: Path, side: int, device: str) -> dict[str, Any]:
    """The ONNX int4 bundle (fp16 vision and the TensorRT plan on a GPU machine)."""
    from differad_edge.export import make_config, run_export

    from differad_edge.onnxrt.bundle import load_bundle

    if not (bundle / "manifest.json").is_file():
        cfg = make_config(
            model=model,
            out=bundle,
            quant="int4",
            verify_count=1,
            verify_size=min(side, 256),
            max_pixels=side * side,
            fail_on_verify=False,
            vision_fp16=device == "cuda",
            overwrite=True,
        )
        run_export(cfg, log=lambda m: print(m, file=sys.stderr))
    return {"tensorrt": load_bundle(bundle).manifest.get("tensorrt", {})}


def _one(args: argparse.Namespace) -> int:
    if args.one == "export":
        r = export_bundle(Path(args.model_dir), Path(args.bundle_dir), args.side, args.device)
    else:
        r = measure(
            args.one,
            Path(args.model_dir),
            Path(args.bundle_dir),
            args.device,
            args.dtype,
            args.grammar == "on",
            args.side,
            args.reps,
            args.warmup,
            args.off_tokens,
        )
    Path(args.out_json).write_text(json.dumps(r))
    return 0


def _job(
    args: argparse.Namespace,
    job: tuple[str, str],
    k: int,
    paths: dict[str, Path],
    device: str,
    dtype: str,
    timeout: float,
) -> dict[str, Any]:
    """One step: in this process for the dry run (every step, no budget), else a subprocess with a timeout."""
    config, grammar = job
    if args.dry_run:
        if config == "export":
            return export_bundle(paths["model"], paths["bundle"], args.side, device)
        return measure(
            config,
            paths["model"],
            paths["bundle"],
            device,
            dtype,
            grammar == "on",
            args.side,
            args.reps,
            args.warmup,
            args.off_tokens,
        )
    out = paths["work"] / f"row-{k}.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--one",
        config,
        "--grammar",
        grammar,
        "--model-dir",
        str(paths["model"]),
        "--bundle-dir",
        str(paths["bundle"]),
        "--out-json",
        str(out),
        "--device",
        device,
        "--dtype",
        dtype,
        "--side",
        str(args.side),
        "--reps",
        str(args.reps),
        "--warmup",
        str(args.warmup),
        "--off-tokens",
        str(args.off_tokens),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"skipped": f"over its {timeout:.0f}s share of the budget"}
    if proc.returncode == 0 and out.is_file():
        return json.loads(out.read_text())
    tail = " ".join((proc.stderr or "").strip().splitlines()[-1:])[:160]
    return {"skipped": f"failed (exit {proc.returncode}): {tail}"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny model, 64 px, one pair: check every step")
    ap.add_argument("--size", choices=("tiny", "small", "2b"), default="2b")
    ap.add_argument("--side", type=int, default=800, help="square pair side in pixels")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--off-tokens", type=int, default=20, help="fixed answer length with the grammar off")
    ap.add_argument("--budget-s", type=float, default=480.0, help="whole run, install excluded (default 8 min)")
    ap.add_argument("--work", type=Path, help="model and bundle folder (default: a temp folder)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    for hidden in ("--model-dir", "--bundle-dir", "--out-json", "--grammar", "--device", "--dtype"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        return _one(args)
    if args.dry_run:
        args.size, args.side, args.reps, args.warmup = "tiny", 64, 1, 0
        device, dtype = "cpu", "fp32"
    elif not _cuda():
        print("bench/gpu_bench.py: no CUDA GPU visible to torch: nothing measured")
        return 0
    else:
        device, dtype = "cuda", "bf16"
    t_start = time.perf_counter()
    log = lambda m: print(f"[{time.perf_counter() - t_start:5.0f}s] {m}", file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="differad-gpu-") as tmp:
        work = args.work or Path(tmp)
        model, tiny = _make_models(work, args.size, log)
        paths = {"work": work, "model": model, "bundle": work / f"bundle-int4-{args.size}-{args.side}"}
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        # torch rows first (cheap to start); the 2B ONNX export is the longest step, then its rows
        jobs = [(c, g) for c in CONFIGS[:-1] for g in ("on", "off")] + [("export", "-")]
        jobs += [(CONFIGS[-1], g) for g in ("on", "off")]
        for k, job in enumerate(jobs):
            left = args.budget_s - (time.perf_counter() - t_start) - 30  # 30 s kept for the token check
            weight = 4.0 if job[0] == "export" else 1.0
            share = left * weight / (sum(4.0 if j[0] == "export" else 1.0 for j in jobs[k:]))
            if job[0] == CONFIGS[-1] and "skipped" in rows.get(("export", "-"), {}):
                rows[job] = {"skipped": f"no bundle ({rows[('export', '-')]['skipped']})"}
            elif share < 15 and not args.dry_run:
                rows[job] = {"skipped": "time budget spent"}
            else:
                rows[job] = _job(args, job, k, paths, device, dtype, share)
            log(f"{job[0]}, grammar {job[1]}: {rows[job]}")
        tokens = tokens_cpu_vs_gpu(tiny, "cpu" if args.dry_run else "cuda", 1 if args.dry_run else 4)
    export = rows.pop(("export", "-"))
    print(table(rows, tokens, args, device, time.perf_counter() - t_start, export))
    return 0


def table(
    rows: dict[tuple[str, str], dict[str, Any]],
    tokens: dict[str, str],
    args: argparse.Namespace,
    device: str,
    seconds: float,
    export: dict[str, Any],
) -> str:
    name = "cpu (dry run)" if args.dry_run else _gpu_name()
    lines = [
        f"## GPU run: {args.size} model, {args.side}x{args.side} pairs ({name})",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.node()}; python "
        f"{platform.python_version()}; {_versions()}; {args.reps} reps (+{args.warmup} warmup); grammar off = "
        f"fixed {args.off_tokens}-token answers; {seconds:.0f} s",
        "",
        "Command: `bash bench/gpu.sh" + (" --dry-run" if args.dry_run else "") + "`",
        "",
        "| config | grammar | p50 ms/pair | p95 ms/pair | peak GPU MiB | valid answers | vision | note |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for (config, grammar), r in rows.items():
        if "skipped" in r:
            lines.append(f"| {config} | {grammar} | - | - | - | - | - | {r['skipped']} |")
            continue
        peak = f"{r['peak_mib']:.0f}" if "peak_mib" in r else "-"
        lines.append(
            f"| {config} | {grammar} | {r['p50']:.1f} | {r['p95']:.1f} | {peak} | {r['valid']}/{r['n']} | "
            f"{r['vision']} | {r['note'][:80]} |"
        )
    trt = export.get("tensorrt", {})
    lines += [
        "",
        "TensorRT vision plan: "
        + ("built" if trt.get("built") else f"not built ({trt.get('reason') or export.get('skipped')})"),
    ]
    lines += [
        "",
        "fp32 tokens of the tiny model, CPU vs "
        + ("CPU" if args.dry_run else "GPU")
        + ": "
        + "; ".join(f"{k}: {v}" for k, v in tokens.items()),
    ]
    return "\n".join(lines)


def _gpu_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0)
    except (ImportError, RuntimeError):
        return "unknown GPU"


def _versions() -> str:
    out = []
    for mod in ("torch", "transformers", "onnxruntime", "tensorrt", "bitsandbytes"):
        try:
            out.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            out.append(f"{mod} -")
    return ", ".join(out)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
