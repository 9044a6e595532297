"""Does the recipe generalize? Train the factory's ``small`` Qwen3-VL from scratch on many synthetic
pairs (CUDA machine) and score it on *held-out* pairs beside the always-zero baseline and the golden
engine. The memorized fixture (``differad dev make-model --memorized``) proves the plumbing; this is
the first evidence that a model learns the task itself. Prepared for one GPU, not run here (no GPU).

    .venv/bin/python bench/train_generalize.py --out runs/generalize              # 50k pairs, small, CUDA
    .venv/bin/python bench/train_generalize.py --out /tmp/g --pairs 16 --eval-pairs 4 --size tiny \
        --image-size 64 --steps 2 --batch 2 --device cpu                          # CPU smoke run (seconds)

Steps: synthesize train pairs in parallel shards (one process per CPU core) and a held-out set with
another seed; ``differad dev make-model --size SIZE``; ``differad-train sft`` (full fine-tune, no-think
template, so the answer is the box alone; held-out diagnostics on); ``differad eval`` with the ``vlm``
and ``golden`` engines on the held-out set. Prints a table and writes ``OUT/generalize.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

BIN = Path(sys.executable).parent


def _shard(args: tuple[str, int, int, int]) -> str:
    from differad_edge.synth import generate_dataset

    out, count, seed, size = args
    return str(generate_dataset(out, count, seed, size=size, progress=False))


def synth_parallel(out: Path, count: int, seed: int, size: int, workers: int) -> Path:
    """``count`` pairs in ``workers`` shards (seeds seed*1000 + k), merged into ``out/pairs.jsonl``."""
    per = [count // workers + (k < count % workers) for k in range(workers)]
    jobs = [(str(out / f"shard{k:02d}"), n, seed * 1000 + k, size) for k, n in enumerate(per) if n]
    with ProcessPoolExecutor(len(jobs)) as pool:
        paths = list(pool.map(_shard, jobs))
    lines = []
    for p in map(Path, paths):
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                for k in ("reference", "target", "mask"):
                    if isinstance(row.get(k), str):
                        row[k] = str(p.parent.name + "/" + row[k])
                row["id"] = f"{p.parent.name}-{row['id']}"
                lines.append(json.dumps(row))
    merged = out / "pairs.jsonl"
    merged.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return merged


def run(cmd: list[str], log: Path) -> None:
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, text=True)
    if proc.returncode not in (0, 3):  # 3: some pairs NOT INSPECTED (an unreadable answer), still scored
        sys.exit(f"{' '.join(cmd[:3])} failed (exit {proc.returncode}); see {log}")
    print(f"  {' '.join(cmd[:2])}: {time.perf_counter() - t0:.0f} s")


def overall(report: Path) -> dict:
    data = json.loads(report.read_text(encoding="utf-8"))
    o = data.get("metrics", data).get("overall", {})
    return {k: o.get(k) for k in ("acc30", "f1", "miou", "miou_ano", "miou_nor", "n")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pairs", type=int, default=50_000, help="training pairs")
    ap.add_argument("--eval-pairs", type=int, default=500, help="held-out pairs (another seed)")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--size", default="small", choices=("tiny", "small", "2b"), help="factory model size")
    ap.add_argument("--steps", type=int, default=-1, help="optimizer steps (-1: one epoch)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"synthesizing {a.pairs} + {a.eval_pairs} pairs at {a.image_size}px on {a.workers} processes")
    train = synth_parallel(a.out / "train", a.pairs, 1, a.image_size, a.workers)
    held = synth_parallel(a.out / "heldout", a.eval_pairs, 2, a.image_size, min(a.workers, a.eval_pairs))
    print(f"  synth: {time.perf_counter() - t0:.0f} s")
    base = a.out / "base"
    if not (base / "config.json").is_file():
        run(
            [str(BIN / "differad"), "dev", "make-model", str(base), "--size", a.size, "--overwrite"], a.out / "make.log"
        )
    model = a.out / "model"
    cpu = a.device == "cpu"
    run(
        [
            str(BIN / "differad-train"),
            "sft",
            f"model.path={base}",
            f"data.pairs={train}",
            f"output_dir={model}",
            "--overwrite",
            "lora.enabled=false",
            "merge_lora=false",
            "model.freeze_vision=false",
            f"model.dtype={'fp32' if cpu else 'bf16'}",
            "data.template=differad-r1-nothink-v1",
            "data.paraphrase=false",
            f"train.max_steps={a.steps}",
            f"train.per_device_train_batch_size={a.batch}",
            "train.gradient_accumulation_steps=1",
            f"train.learning_rate={a.lr}",
            "train.lr_scheduler_type=cosine",
            "train.warmup_steps=0.03",
            "train.logging_steps=10",
            "train.save_steps=100000",
            f"train.dataloader_num_workers={0 if cpu else min(8, a.workers)}",
            "train.disable_tqdm=true",
            f"diagnostics.eval_pairs={held}",
            "diagnostics.max_eval=64",
            "diagnostics.steps=200",
            "diagnostics.max_new_tokens=24",
        ],
        a.out / "train.log",
    )
    results = {}
    for engine, extra in (
        ("vlm", ["--model", str(model), "--device", a.device, "--max-new-tokens", "24"]),
        ("golden", []),
    ):
        out = a.out / f"eval_{engine}"
        run(
            [
                str(BIN / "differad"),
                "eval",
                "--engine",
                engine,
                *extra,
                "--data",
                str(held),
                "--no-align",
                "--no-progress",
                "--out",
                str(out),
            ],
            a.out / f"eval_{engine}.log",
        )
        results[engine] = overall(out / "report.json")
    summary = json.loads((model / "train_summary.json").read_text(encoding="utf-8"))
    diag = (summary.get("diagnostics") or {}).get("last") or {}
    results["always_zero"] = {
        "acc30": diag.get("diag/zero_acc30"),
        "miou": diag.get("diag/zero_miou"),
        "f1": diag.get("diag/zero_f1"),
    }
    results["best_fixed_box"] = {
        "acc30": diag.get("diag/fixed_acc30"),
        "miou": diag.get("diag/fixed_miou"),
        "f1": diag.get("diag/fixed_f1"),
    }
    results["image_use"] = {"loss_real": diag.get("diag/loss_real"), "loss_shuffled": diag.get("diag/loss_shuffled")}
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    results["settings"] = vars(a) | {"out": str(a.out)}
    (a.out / "generalize.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print("\n| answers | Acc@0.3 | F1@0.3 | mIoU |\n| --- | --- | --- | --- |")
    for name in ("vlm", "golden", "always_zero", "best_fixed_box"):
        r = results[name]
        cells = [f"{100 * r[k]:.1f} %" if isinstance(r.get(k), (int, float)) else "-" for k in ("acc30", "f1", "miou")]
        print(f"| {name} | {' | '.join(cells)} |")
    print(
        f"\nimage-use check (held-out answer loss): real {results['image_use']['loss_real']} vs shuffled "
        f"{results['image_use']['loss_shuffled']}; total {results['wall_s']} s; {a.out / 'generalize.json'}"
    )


if __name__ == "__main__":
    main()
