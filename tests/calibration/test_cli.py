"""``differad-calibrate`` end to end, in process: the field workflow, and one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from calib_helpers import PRODUCT, on_product, run


def test_field_workflow(capsys, tmp_path: Path, capture_dir: Path, defects_dir: Path) -> None:
    store = str(tmp_path / "store")
    session = str(tmp_path / "session")
    code, out, _ = run(
        capsys, "capture", "--product", PRODUCT, "--source", str(capture_dir), "--frames", "30", "--out", session
    )
    assert code == 0
    assert "rejected f100_blurred.png [focus]" in out
    assert "rejected f102_shifted.png [stability]" in out

    code, out, _ = run(capsys, "build", "--store", store, "--session", session, "--auto-mask")
    assert code == 0
    version = out.strip().splitlines()[-1]
    assert version == "v0001"

    code, out, _ = on_product(
        capsys,
        "validate",
        store,
        "--session",
        session,
        "--defects",
        str(defects_dir),
        "--report",
        str(tmp_path / "report"),
    )
    assert code == 0, out
    assert f"{PRODUCT}/v0001 PASSED" in out
    assert (tmp_path / "report" / "index.html").is_file()

    assert on_product(capsys, "promote", store, "--version", version)[0] == 0
    code, out, _ = run(capsys, "list", "--store", store, "--json")
    rows = json.loads(out)
    assert rows[0]["active"]
    assert rows[0]["status"] == "validated"
    code, out, _ = on_product(capsys, "show", store, "--json")
    shown = json.loads(out)
    assert shown["metadata"]["calibration"]["build_config"]["auto_mask"]["enabled"] is True


def test_failed_validation_exits_1_and_promotion_is_refused(capsys, tmp_path: Path, session) -> None:
    store = str(tmp_path / "store")
    assert run(capsys, "build", "--store", store, "--session", str(session.root))[0] == 0
    code, out, _ = on_product(
        capsys,
        "validate",
        store,
        "--session",
        str(session.root),
        "--defects",
        str(tmp_path / "camera"),
        "--labels",
        str(_labels(tmp_path)),
    )
    assert code == 1
    assert "FAILED" in out
    code, _, err = on_product(capsys, "promote", store, "--version", "v0001")
    assert code == 2
    assert "rejected, not validated" in err
    code, _, err = on_product(capsys, "promote", store, "--version", "v0001", "--force")
    assert code == 2
    assert "--force needs --reason" in err
    code, out, _ = on_product(
        capsys, "promote", store, "--version", "v0001", "--force", "--reason", "supervisor approved"
    )
    assert code == 0
    assert "(forced)" in out


def _labels(tmp_path: Path) -> Path:
    """Claims a defect on a good frame at a spot where none is: the candidate must fail detection."""
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"f000.png": [100, 60, 120, 80]}))
    return path


@pytest.mark.parametrize(
    "argv, message",
    [
        (["list", "--product", "ghost"], "unknown product 'ghost'"),
        (["show", "--product", "ghost"], "unknown product 'ghost'"),
        (["rollback", "--product", "ghost"], "unknown product 'ghost'"),
        (["validate", "--product", "ghost"], "unknown product 'ghost'"),
        (["promote", "--product", "ghost", "--version", "v0001"], "unknown product 'ghost'"),
        (["capture", "--product", "p", "--source", "{empty}", "--frames", "3", "--out", "{tmp}/s"], "holds no images"),
        (
            ["capture", "--product", "p", "--source", "{broken}", "--frames", "3", "--out", "{tmp}/s"],
            "unreadable frame",
        ),
        (
            ["capture", "--product", "a/b", "--source", "{empty}", "--frames", "3", "--out", "{tmp}/s"],
            "invalid product id",
        ),
        (
            ["capture", "--product", "p", "--source", "{tmp}/nothing", "--frames", "3", "--out", "{tmp}/s"],
            "does not exist",
        ),
        (["build", "--session", "{empty}"], "is not a capture session"),
        (
            ["capture", "--product", "p", "--source", "{empty}", "--frames", "x", "--out", "{tmp}/s"],
            "invalid int value",
        ),
    ],
)
def test_errors_are_one_line_with_exit_2(capsys, tmp_path: Path, argv: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"garbage")
    argv = [a.format(tmp=tmp_path, empty=tmp_path / "empty", broken=tmp_path / "broken") for a in argv]
    store = ["--store", str(tmp_path / "store")] if argv[0] != "capture" else []
    try:
        code, out, err = run(capsys, *argv, *store)
    except SystemExit as e:  # argparse usage errors
        code, err = e.code, capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_console_script_runs_as_a_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "differad_edge.calibration.cli", "list", "--store", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("differad-calibrate: error: the reference store")
    assert "Traceback" not in proc.stderr


def test_validate_and_build_refuse_empty_and_unreadable_frames(capsys, tmp_path: Path, store, session) -> None:
    from differad_edge.calibration.build import build_candidate

    version = build_candidate(store, session)
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"garbage")
    (tmp_path / "mask.png").write_bytes(b"")
    base = ["--store", str(store.root), "--product", PRODUCT, "--version", version]
    cases = [
        (["validate", *base, "--good", str(tmp_path / "empty")], "holds no images"),
        (["validate", *base, "--good", str(tmp_path / "broken")], "unreadable good frame"),
        (["validate", *base, "--session", str(session.root), "--defects", str(tmp_path / "broken")], "labels.json"),
        (
            [
                "build",
                "--store",
                str(store.root),
                "--session",
                str(session.root),
                "--care-mask",
                str(tmp_path / "mask.png"),
            ],
            "cannot read care mask",
        ),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2, (argv, err)
        assert message in err, (argv, err)
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert [(v.version, v.status) for v in store.versions(PRODUCT)] == [(version, "candidate")]  # nothing changed
