"""ament_python package ``differad_edge`` (Python module ``differad_edge_ros``).

Two ways in: ``colcon build`` on a ROS 2 Jazzy/Kilted install, or ``pip install -e`` into the
project's venv (the Makefile does it after ``scripts/build_vision_msgs.sh``). The distribution is
named ``differad-edge-ros`` so it never shadows the core distribution ``differad-edge``.
"""

import xml.etree.ElementTree as ET
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "differad_edge"
#: ament needs a literal ``<version>`` in package.xml, so that is this package's one version source
#: (kept equal to the SDK's ``differad_edge.__version__`` by tests/test_versions.py).
VERSION = ET.parse(Path(__file__).resolve().parent / "package.xml").getroot().findtext("version")

setup(
    name="differad-edge-ros",
    version=VERSION,
    description="ROS 2 inspection node and simulated cell for DifferAD Edge",
    packages=find_packages(include=["differad_edge_ros", "differad_edge_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    python_requires=">=3.10",
    install_requires=["setuptools", "differad-edge", "numpy", "opencv-python-headless"],
    zip_safe=True,
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "differad-inspector = differad_edge_ros.node:main",
            "inspector = differad_edge_ros.node:main",
            "differad-camera-sim = differad_edge_ros.camera_sim:main",
            "differad-cell-monitor = differad_edge_ros.monitor:main",
            "differad-cell-demo = differad_edge_ros.cell_demo:main",
        ],
    },
)
