"""Distribution ``differad-edge``: the core library plus its edges (cli, train, export, calibration).

The core is the folder ``differad_edge/``; each edge is a top-level folder (``cli/``, ``train/``,
``export/``, ``calibration/``) that installs as a sub-package of ``differad_edge`` (``differad_edge.cli``,
...), so the tree shows the architecture while nothing with a generic name lands at the top of
site-packages.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

#: The one version source: ``differad_edge.__version__``.
VERSION = re.search(r'^__version__ = "([^"]+)"', Path("differad_edge/__init__.py").read_text(encoding="utf-8"), re.M)[1]

core = find_packages(include=["differad_edge", "differad_edge.*"])
edges = {
    "differad_edge.cli": "cli",
    "differad_edge.train": "train",
    "differad_edge.export": "export",
    "differad_edge.calibration": "calibration",
}
edge_packages = []
for pkg, folder in edges.items():
    edge_packages.append(pkg)
    edge_packages += [f"{pkg}.{sub}" for sub in find_packages(where=folder)]

setup(
    name="differad-edge",
    version=VERSION,
    description="Difference-guided anomaly localization (DifferAD-R1) for robot inspection cells",
    long_description=Path("README.md").read_text(encoding="utf-8") if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=core + edge_packages,
    package_dir={"": ".", **edges},
    include_package_data=True,
    package_data={
        "differad_edge": ["vlm/*.jinja"],
        "differad_edge.train": ["configs/*.yaml", "configs/accelerate/*.yaml", "configs/accelerate/*.json"],
        "differad_edge.calibration.station": ["templates/*.html", "static/*.js", "static/*.css"],
    },
    install_requires=[
        "numpy>=1.26",
        "opencv-python-headless>=4.9",
        "pydantic>=2.6",
        "pyyaml>=6",
        "tqdm>=4.66",
        "rich>=13",
        "safetensors>=0.4",
        "matplotlib>=3.8",
        # ROC / PR curves of the evaluation (image AUROC, F1-max, pixel AUROC)
        "scikit-learn>=1.4",
    ],
    extras_require={
        # torch itself is installed first, pinned (see Makefile / requirements/constraints.txt).
        "vlm": ["torch==2.13.0", "transformers==5.23.0", "accelerate>=1.0", "tokenizers>=0.21", "bitsandbytes>=0.45"],
        "train": [
            "torch==2.13.0",
            "transformers==5.23.0",
            "trl==1.16.0",
            "peft>=0.15",
            "accelerate>=1.0",
            "datasets>=3",
            "tokenizers>=0.21",
            "bitsandbytes>=0.45",
        ],
        # torch-free deployment of an exported bundle (the `onnx` engine)
        "onnx": ["onnxruntime>=1.20", "tokenizers>=0.21"],
        "export": [
            "onnx>=1.17",
            "onnxruntime>=1.20",
            "onnxscript>=0.2",
            "tokenizers>=0.21",
            "torch==2.13.0",
            "transformers==5.23.0",
        ],
        "ros": [
            "ros-rclpy[fastrtps]==9.1.2",
            "ros-sensor-msgs",
            "ros-std-msgs",
            "ros-geometry-msgs",
            "ros-diagnostic-msgs",
            "rosbags>=0.10",
        ],
        "calibration": ["rosbags>=0.10"],
        # the field station web app (differad-station): FastAPI/Starlette + Jinja2 pages (+ vendored htmx);
        # selenium drives the system Chromium in its browser tests
        "station": ["fastapi>=0.110", "uvicorn>=0.29", "jinja2>=3.1", "python-multipart>=0.0.9", "selenium>=4.20"],
        # training loggers (train.report_to); not installed by `make`
        "tensorboard": ["tensorboard>=2.14"],
        "wandb": ["wandb>=0.16"],
        # several GPUs (ZeRO-3); not installed by `make` (no GPU in CI)
        "train-multigpu": ["deepspeed>=0.15"],
        # scikit-image: real photographs (skimage.data) for tests and the real-photo benchmark
        "dev": [
            "pytest>=8",
            "hypothesis>=6",
            "ruff>=0.6",
            "pytest-timeout>=2",
            "scikit-image>=0.22",
            "mypy>=1.10",
            "types-PyYAML",
        ],
    },
    entry_points={
        "console_scripts": [
            "differad=differad_edge.cli.main:main",
            "differad-train=differad_edge.train.cli:main",
            "differad-export=differad_edge.export.cli:main",
            "differad-calibrate=differad_edge.calibration.cli:main",
            "differad-station=differad_edge.calibration.station.cli:main",
        ]
    },
)
