"""Where the package's config lives, and the environment that keeps a simulated cell's DDS private."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "differad_edge"


def config_dir() -> Path:
    """``config/`` of the package: source tree / editable install first, then ``share/`` of an install."""
    candidates = [Path(__file__).resolve().parent.parent / "config", Path(sys.prefix) / "share" / PACKAGE / "config"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / "config")
    except Exception:  # not registered in an ament index: the paths above are enough
        pass
    for path in candidates:
        if (path / "fastdds_shm.xml").is_file():
            return path
    raise FileNotFoundError(
        f"config folder of {PACKAGE} not found in {', '.join(map(str, candidates))}; reinstall the package"
    )


def fastdds_profile() -> Path:
    """Fast DDS profile with a shared-memory segment large enough for full 800x800 frames."""
    return config_dir() / "fastdds_shm.xml"


def private_domain_id() -> int:
    """A DDS domain id unlikely to collide with other runs on this host (valid range 0-101 and 215-232)."""
    return 1 + os.getpid() % 100


def cell_env(domain_id: int | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the cell's processes: localhost-only discovery, a private domain, the SHM profile."""
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(private_domain_id() if domain_id is None else domain_id)
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(fastdds_profile()))
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env["PYTHONUNBUFFERED"] = "1"
    return env
