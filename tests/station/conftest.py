"""Fixtures of the station tests: the app served by uvicorn on a free loopback port (a thread of
the test process), and headless Chromium from Debian's packages driven by Selenium (the system
chromedriver: nothing is downloaded). Scenes come from the calibration tests' helpers."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "calibration"))

from calib_helpers import part_scene, write_capture_folder
from station_helpers import Served, serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(autouse=True)
def operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFFERAD_OPERATOR", raising=False)  # the station asks for it in its forms


@pytest.fixture
def capture_dir(tmp_path: Path) -> Path:
    return write_capture_folder(tmp_path / "camera", part_scene(0))


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Served]:
    from differad_edge.calibration.station import StationSettings

    settings = StationSettings(store=tmp_path / "store", workdir=tmp_path / "work", source_timeout_s=1.0, poll_ms=150)
    yield from serve(settings)


@pytest.fixture(scope="session")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are missing; 'make venv' installs them (apt-get)")
        pytest.skip("chromium/chromedriver not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--disable-gpu",
        "--no-first-run",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()
