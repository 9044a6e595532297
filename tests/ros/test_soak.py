"""``bench/ros_soak.py`` for a few seconds (issue 13): the node under mixed abuse stays up, answers the
good and defective frames sent right after bad ones, counts the bad ones, and exits 0 on SIGINT."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_soak_keeps_inspecting_good_frames_between_bad_ones(tmp_path, ros_env):
    out = tmp_path / "soak.json"
    domain = (int(ros_env["ROS_DOMAIN_ID"]) + 37) % 100 + 1  # its own domain, away from the test client
    cmd = [sys.executable, str(ROOT / "bench" / "ros_soak.py"), "--duration", "12", "--control-period", "1.0"]
    cmd += ["--json", str(out), "--out", str(tmp_path / "logs"), "--domain-id", str(domain)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    s = json.loads(out.read_text())
    assert s["passed"]
    assert not s["control_errors"]
    for name, node in s["nodes"].items():
        assert node["alive_at_end"], name
        assert node["exit_code"] == 0, name
        assert node["tracebacks"] == 0, name
        assert node["after_bad_sent"] >= 10, name
        assert node["after_bad_answered"] >= 0.9 * node["after_bad_sent"], name
        assert node["last_quarter_answered"] >= 0.9 * node["last_quarter_sent"], name
        good, defect = node["kinds"]["good"], node["kinds"]["defect"]
        assert good["correct"] >= 0.9 * good["judged"], name  # OK for good parts ...
        assert defect["correct"] >= 0.9 * defect["judged"], name  # ... NG for defective ones
        bad_sent = sum(k["sent"] for kind, k in node["kinds"].items() if kind not in ("good", "defect"))
        counted = int(node["diagnostics"]["bad_frames"]) + int(node["diagnostics"]["not_inspected"])
        assert counted >= 0.9 * bad_sent, name  # bad frames counted as bad / not inspected, not lost
    raw = s["nodes"]["soak_raw"]
    assert raw["unmatched_results"].get("NOT_INSPECTED/bad_frame", 0) > 0  # unreadable CDR still answered
    assert any(k.startswith("CDR encapsulation") and v["sent"] for k, v in raw["kinds"].items())
