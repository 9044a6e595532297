"""``differad-cell-demo`` end to end: camera simulator, inspector and monitor as three processes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.mark.parametrize(("scene", "align", "size"), [("shapes", "none", 256), ("synth", "euclidean", 320)])
def test_cell_demo_scores_every_frame_and_exits_zero(tmp_path, ros_env, scene, align, size):
    out = tmp_path / "cell"
    domain = (int(ros_env["ROS_DOMAIN_ID"]) % 100) + 1  # its own domain, away from the test client
    cmd = [
        sys.executable,
        "-m",
        "differad_edge_ros.cell_demo",
        "--out",
        str(out),
        "--frames",
        "8",
        "--rate",
        "5",
        "--size",
        str(size),
        "--scene",
        scene,
        "--align",
        align,
        "--domain-id",
        str(domain),
        "--timeout",
        "90",
    ]
    done = subprocess.run(cmd, env=ros_env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_published"] == 8
    assert summary["frames_inspected"] == 8
    assert summary["frames_lost"] == 0
    assert summary["defective"] >= 2
    assert summary["acc30"] >= 0.75
    assert summary["tp"] >= summary["defective"] - 1
    assert summary["node_diagnostics"]["bad_frames"] == "0"
    assert len(list(out.glob("frame_*.png"))) == 8
    assert (out / "contact_sheet.png").is_file()
    assert "Acc@0.3" in done.stdout
    assert "frames published 8" in done.stdout
