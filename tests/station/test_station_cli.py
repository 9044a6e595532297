"""``differad-station``: loopback by default; any other --host needs a token, refused otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest
from differad_edge.calibration.station.cli import check_exposure, is_loopback, main

from differad_edge.errors import ConfigError


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "station.local"])
def test_exposed_host_without_a_token_is_refused(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="--token"):
        check_exposure(host, None)
    check_exposure(host, "a-long-enough-token")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_token(host: str) -> None:
    assert is_loopback(host)
    check_exposure(host, None)


def test_short_token_refused() -> None:
    with pytest.raises(ConfigError, match="at least"):
        check_exposure("0.0.0.0", "abc")


def test_cli_refuses_to_start_exposed_without_a_token(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("DIFFERAD_STATION_TOKEN", raising=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "differad_edge.calibration.station.cli",
            "--host",
            "0.0.0.0",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("differad-station: error:")
    assert "token" in proc.stderr
    assert main(["--host", "10.1.2.3", "--workdir", str(tmp_path)]) == 2
