"""Peak GPU memory of this process, shared by the GPU benchmarks (bench/export.py, bench/gpu_bench.py)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Any


class GpuMemorySampler:
    """Peak GPU memory used by this process (nvidia-smi), sampled every 20 ms: ORT allocations are not
    visible to torch's allocator statistics."""

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _used_mib(self) -> float:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return sum(
            float(line.split(",")[1])
            for line in out.splitlines()
            if line.strip() and int(line.split(",")[0]) == os.getpid()
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, self._used_mib())
            time.sleep(0.02)

    def __enter__(self) -> GpuMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
