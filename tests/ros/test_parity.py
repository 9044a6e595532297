"""One frame, one verdict, wherever it is judged: the ROS node (real DDS, another process), the Python
API and ``differad inspect --store`` give the same verdict, defects and score on a calibrated
reference (variation model, care mask, thresholds a passed validation tuned) of a real photograph."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from differad_edge_ros.conversions import array_to_image
from skimage import data

from differad_edge.engines import create_engine
from differad_edge.images import save_image
from differad_edge.inspector import Inspector
from differad_edge.variation import build_variation_model

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def _good(ref: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(ref + rng.normal(0, 2, ref.shape), 0, 255).astype(np.uint8)


def _box(det: Any) -> list[int]:  # a vision_msgs/Detection2D: center + size, pixels
    c, w, h = det.bbox.center.position, det.bbox.size_x, det.bbox.size_y
    return [round(c.x - w / 2), round(c.y - h / 2), round(c.x + w / 2), round(c.y + h / 2)]


def test_node_api_and_cli_decide_alike(start_inspector, store, tmp_path: Path) -> None:
    ref = np.ascontiguousarray(data.astronaut()[::2, ::2])
    goods = [ref] + [_good(ref, 10 + i) for i in range(4)]
    mean, spread = build_variation_model(goods, "median_mad")
    care = np.full(ref.shape[:2], 255, np.uint8)
    care[:, :24] = 0
    v = store.add_version("parity", ref, care_mask=care, mean=mean, spread=spread)
    store.set_validation("parity", v, True, {"golden": {"k": 3.0, "abs_threshold": 18.0}})
    store.promote("parity", v)

    defect = _good(ref, 1)
    cv2.line(defect, (40, 120), (90, 150), (250, 250, 250), 3)
    cv2.circle(defect, (150, 200), 7, (0, 0, 0), -1)
    frames = {"good": _good(ref, 0), "defect": defect, "blurred": cv2.GaussianBlur(_good(ref, 2), (0, 0), 3)}

    api = Inspector(create_engine("golden"), store=store)
    expected = {k: api.inspect(f, "parity") for k, f in frames.items()}
    assert [e.verdict.value for e in expected.values()] == ["OK", "NG", "NOT_INSPECTED"]

    paths = {}
    for k, f in frames.items():
        paths[k] = tmp_path / f"{k}.png"
        save_image(paths[k], f)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "differad_edge.cli.main",
            "inspect",
            "--store",
            str(store.root),
            "--product",
            "parity",
            "-t",
            *map(str, paths.values()),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 3, proc.stderr  # the blurred frame is NOT INSPECTED
    cli = dict(zip(frames, (json.loads(line) for line in proc.stdout.splitlines()), strict=True))

    node = start_inspector("ci_parity", product_id="parity", align="homography")
    for k, frame in frames.items():
        want = expected[k]
        header = node.header(k)
        node.inspect(array_to_image(frame, "rgb8", header=header))
        got = node.result(header)
        want_boxes = [d.box.as_int_list() for d in want.detection.defects]
        assert got.verdict_name == want.verdict.value == cli[k]["verdict"], k
        assert got.reason == (want.reason.value if want.reason else "") == (cli[k]["reason"] or ""), k
        assert got.reference_version == want.reference_version == cli[k]["reference_version"]
        assert [d["box"] for d in cli[k]["defects"]] == want_boxes, k
        if want.verdict.value == "NG":
            assert [_box(d) for d in got.detections.detections] == want_boxes, k
        assert got.score == pytest.approx(want.detection.score, abs=1e-5)
        assert cli[k]["score"] == pytest.approx(want.detection.score, abs=1e-5)
