"""The venv install registers ``differad_edge`` in the ament index, as colcon would, so ``ros2 run`` /
``ros2 launch`` find it where a ROS 2 CLI is present."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[2]


def test_register_script_installs_marker_share_files_and_executables(tmp_path):
    prefix = tmp_path / "venv"
    (prefix / "bin").mkdir(parents=True)
    python = prefix / "bin" / "python"  # this venv's interpreter, as the prefix's own
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    for _ in range(2):  # idempotent
        done = subprocess.run(
            ["bash", str(ROOT / "scripts/register_ros_package.sh"), str(prefix)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    env = {**os.environ, "AMENT_PREFIX_PATH": str(prefix)}
    code = (
        "from ament_index_python.packages import get_package_share_directory as d, get_package_prefix as p;"
        "print(d('differad_edge')); print(p('differad_edge'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    share, found_prefix = out.stdout.split()
    assert Path(found_prefix) == prefix
    for rel in ("package.xml", "launch/inspect.launch.py", "config/inspect.yaml", "config/fastdds_shm.xml"):
        assert (Path(share) / rel).is_file(), rel
    exe = prefix / "lib" / "differad_edge" / "inspector"  # where `ros2 run differad_edge inspector` looks
    helped = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert "golden.min_area" in helped.stdout, helped.stderr
