"""Benchmark (no model): how much GRPO signal IoU-only and DCLR rewards give when predictions miss.

GRPO learns only from reward differences inside a group (Eq. 8). Early in training most predicted
boxes do not overlap the ground truth, so IoU is 0 for the whole group and the group teaches nothing.
DCLR adds a graded center/scale term below tau, which is the measurable reason it exists.

Simulation: for each offset (distance between predicted and true centers, in units of the true
box's size) draw groups of G predicted boxes scattered around that offset with random size errors,
score them with the real reward functions (through the parser, as TRL calls them), form the GRPO
advantages (group mean/std, TRL's default ``scale_rewards="group"``), and report, side by side per
reward (our variants and the authors' ablation forms ``iou_authors`` / ``center_authors``, see
``train/rewards.py``)
reward: the share of groups with zero advantage (flat), the mean |advantage|, and the mean
difficulty weight (Eq. 9-11). The last rows time the reward functions (median of repeats).

    .venv/bin/python bench/reward_signal.py                       # 500 groups per offset, G=8
    .venv/bin/python bench/reward_signal.py --groups 200 --plot bench/reward_signal.png
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from differad_edge.train.grpo import difficulty_weight, flat_groups
from differad_edge.train.rewards import (
    center_authors_reward,
    center_reward,
    dclr_code_reward,
    dclr_reward,
    iou_authors_reward,
    iou_reward,
)

from differad_edge.boxes import Box
from differad_edge.parsing import format_box

REWARDS: dict[str, Callable[..., list[float]]] = {
    "iou": iou_reward,
    "iou_authors": iou_authors_reward,
    "dclr": dclr_reward,
    "dclr_code": dclr_code_reward,
    "center": center_reward,
    "center_authors": center_authors_reward,
}
OFFSETS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def simulate(offset: float, groups: int, G: int, rng: np.random.Generator) -> tuple[list[str], list[list[int]]]:
    """Completions (answer strings) and solutions (0-1000 boxes) for ``groups`` groups of ``G``."""
    completions, solutions = [], []
    for _ in range(groups):
        w, h = rng.uniform(40, 250, size=2)
        cx, cy = rng.uniform(150, 850, size=2)
        gt = Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2).clip(1000, 1000)
        gt_int = [int(round(v)) for v in gt.as_tuple()]
        for _ in range(G):
            angle = rng.uniform(0, 2 * np.pi)
            dist = offset * rng.uniform(0.7, 1.3) * np.hypot(w, h) / np.sqrt(2)
            px, py = cx + dist * np.cos(angle), cy + dist * np.sin(angle)
            pw, ph = w * rng.lognormal(0, 0.35), h * rng.lognormal(0, 0.35)
            pred = Box(px - pw / 2, py - ph / 2, px + pw / 2, py + ph / 2).clip(1000, 1000)
            if pred.is_degenerate:  # pushed off the image: the model would answer a sliver; keep it valid
                pred = Box(0, 0, 1, 1)
            completions.append(f"<think>compare</think><answer>{format_box(pred)}</answer>")
            solutions.append(gt_int)
    return completions, solutions


def advantages(rewards: np.ndarray, G: int) -> np.ndarray:
    """GRPO Eq. 8 as TRL computes it (group mean, group std + 1e-4)."""
    r = rewards.reshape(-1, G)
    return ((r - r.mean(1, keepdims=True)) / (r.std(1, ddof=1, keepdims=True) + 1e-4)).ravel()


def signal_table(groups: int, G: int, seed: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    rows = []
    for offset in OFFSETS:
        completions, solutions = simulate(offset, groups, G, rng)
        row: dict[str, float] = {"offset": offset}
        for name, func in REWARDS.items():
            r = np.asarray(func(completions, solutions))
            adv = advantages(r, G)
            row[f"{name}_flat"] = float(flat_groups(r, G).mean())
            row[f"{name}_absadv"] = float(np.abs(adv).mean())
            row[f"{name}_std"] = float(r.reshape(-1, G).std(1, ddof=1).mean())
            row[f"{name}_w"] = float(difficulty_weight(r.reshape(-1, G), 0.3).mean())
        rows.append(row)
    return rows


def time_rewards(n: int, repeats: int, seed: int) -> dict[str, float]:
    completions, solutions = simulate(0.5, n // 8, 8, np.random.default_rng(seed))
    out = {}
    for name, func in REWARDS.items():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            func(completions, solutions)
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times) / len(completions) * 1e6
    return out


def render(rows: list[dict[str, float]], G: int, groups: int, timing: dict[str, float]) -> str:
    names = list(REWARDS)
    pair = ("iou", "dclr")
    head = (
        "| offset (box sizes) | "
        + " | ".join(f"flat groups {n}" for n in names)
        + " | "
        + " | ".join(f"mean abs(A) {n}" for n in pair)
        + " | "
        + " | ".join(f"group reward std {n}" for n in pair)
        + " | mean w (dclr) |"
    )
    lines = [
        f"G={G}, {groups} groups per offset; flat = all G rewards equal (zero advantage, no gradient)",
        "",
        head,
        "|" + " --- |" * (2 + len(names) + 2 * len(pair)),
    ]
    for r in rows:
        flat = " | ".join(f"{100 * r[f'{n}_flat']:.1f} %" for n in names)
        adv = " | ".join(f"{r[f'{n}_absadv']:.3f}" for n in pair)
        std = " | ".join(f"{r[f'{n}_std']:.3f}" for n in pair)
        lines.append(f"| {r['offset']:.2f} | {flat} | {adv} | {std} | {r['dclr_w']:.3f} |")
    lines += ["", "| reward | median us per completion | ratio to iou |", "| --- | --- | --- |"]
    for n in names:
        lines.append(f"| {n} | {timing[n]:.1f} | {timing[n] / timing['iou']:.2f} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    x = [r["offset"] for r in rows]
    for n in REWARDS:
        a.plot(x, [100 * r[f"{n}_flat"] for r in rows], marker="o", label=n)
        b.plot(x, [r[f"{n}_absadv"] for r in rows], marker="o", label=n)
    a.set(xlabel="center offset (box sizes)", ylabel="groups with zero advantage (%)", title="no GRPO signal")
    b.set(xlabel="center offset (box sizes)", ylabel="mean |advantage|", title="signal strength")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=500, help="groups per offset")
    parser.add_argument("--G", type=int, default=8, help="completions per group")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, help="write a PNG of both curves here")
    args = parser.parse_args()
    rows = signal_table(args.groups, args.G, args.seed)
    timing = time_rewards(4000, 5, args.seed)
    print(render(rows, args.G, args.groups, timing))
    if args.plot:
        plot(rows, args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
