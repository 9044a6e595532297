"""The core stays pure: importing every core module pulls in no ROS, no CLI, no trainer and no heavy
runtime (a golden-only or ONNX deployment must not need PyTorch)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import importlib, pkgutil, sys
import differad_edge
edges = ("differad_edge.cli", "differad_edge.train", "differad_edge.export", "differad_edge.calibration")
core, todo = [], [(differad_edge.__path__, "differad_edge.")]
while todo:  # walk without importing the edge packages (pkgutil.walk_packages would import them)
    path, prefix = todo.pop()
    for m in pkgutil.iter_modules(path, prefix):
        if m.name.startswith(edges):
            continue
        core.append(m.name)
        module = importlib.import_module(m.name)
        if m.ispkg:
            todo.append((module.__path__, m.name + "."))
heavy = ("torch", "transformers", "trl", "rclpy", "onnxruntime", "peft")
loaded = sorted(k for k in sys.modules if k.split(".")[0] in heavy or k.startswith(edges))
print(len(core), loaded)
"""


def test_core_modules_import_nothing_heavy_and_no_edge():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout.split(
        " ", 1
    )
    n_modules, loaded = int(out[0]), out[1].strip()
    assert n_modules > 20  # the walk really found the core
    assert loaded == "[]", f"core imports pulled in: {loaded}"
