"""Issue 13 in calibration: capture never overwrites a folder of other files, damaged session files are
one typed error, non-UTF-8 frame names keep the verdict, old stores are sealed by ``upgrade``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from calib_helpers import PRODUCT, on_product, run


def _capture(capsys, source: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    """Four frames of ``source`` captured into ``out``."""
    return run(
        capsys, "capture", "--product", PRODUCT, "--source", str(source), "--frames", "4", "--out", str(out), *extra
    )


def test_capture_refuses_a_folder_of_other_files_even_with_overwrite(capsys, tmp_path: Path, capture_dir: Path) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "keep.png").write_bytes(b"precious")
    for extra in ((), ("--overwrite",)):
        code, _, err = _capture(capsys, capture_dir, out, *extra)
        assert code == 2, err
        assert "not a capture session" in err, err
    assert [p.name for p in out.iterdir()] == ["keep.png"]
    assert (out / "keep.png").read_bytes() == b"precious"
    # an earlier session is replaced only with --overwrite
    session = tmp_path / "s"
    assert _capture(capsys, capture_dir, session)[0] == 0
    before = (session / "session.json").read_bytes()
    code, _, err = _capture(capsys, capture_dir, session)
    assert code == 2
    assert "--overwrite" in err
    assert (session / "session.json").read_bytes() == before


@pytest.mark.parametrize(
    "content",
    [
        "[]",
        '{"frames": "x", "product_id": "p"}',
        '{"frames": [1], "product_id": "p"}',
        "[" * 100_000,
        '{"format_version": 1, "product_id": "p", "frames": [{"name": "a", "file": "/etc/passwd", "split": "build", "sha256": "0"}]}',
        '{"format_version": 1, "product_id": "p", "frames": [{"name": "a", "file": 5, "split": "build", "sha256": "0"}]}',
    ],
)
def test_damaged_session_files_are_one_line_and_exit_2(capsys, tmp_path: Path, content: str) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s/session.json").write_text(content)
    code, _, err = run(capsys, "build", "--store", str(tmp_path / "store"), "--session", str(tmp_path / "s"))
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert err.startswith("differad-calibrate: error:"), err
    assert not (tmp_path / "store").exists()


def test_non_utf8_frame_names_keep_the_report_and_the_verdict(capsys, tmp_path: Path, session) -> None:
    store = str(tmp_path / "store")
    assert run(capsys, "build", "--store", store, "--session", str(session.root))[0] == 0
    good = tmp_path / "good"
    good.mkdir()
    frame = next((session.root / "frames").iterdir())
    name = os.fsdecode(b"\xff\xfeframe.png")
    (good / name).write_bytes(frame.read_bytes())
    code, out, err = on_product(capsys, "validate", store, "--good", str(good), "--report", str(tmp_path / "report"))
    assert code in (0, 1), err
    assert "report:" in out
    assert (tmp_path / "report/index.html").is_file()
    assert "\\udcff" in (tmp_path / "report/index.html").read_text()
    code, out, _ = run(capsys, "list", "--store", store, "--json")
    assert json.loads(out)[0]["status"] in ("validated", "rejected")


def test_upgrade_seals_an_old_store(capsys, tmp_path: Path, session) -> None:
    store = tmp_path / "store"
    assert run(capsys, "build", "--store", str(store), "--session", str(session.root))[0] == 0
    manifest = store / PRODUCT / "versions/v0001/manifest.json"
    data = json.loads(manifest.read_text())
    data.pop("sha256")
    data["format"] = 1
    manifest.write_text(json.dumps(data))
    code, out, err = run(capsys, "upgrade", "--store", str(store))
    assert code == 0, err
    assert json.loads(manifest.read_text())["format"] == 2
    code, out, _ = on_product(capsys, "show", str(store), "--json")
    assert code == 0
    assert json.loads(out)["version"] == "v0001"


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ('{"d.png": [' + "9" * 400 + ", 1, 2, 3]}", "finite numbers"),
        ("[" * 100_000, "nested too deeply|not valid JSON"),
        ('{"d.png": [1, 1, 5000, 5000]}', "outside the"),
        ('{"../d.png": [1, 1, 5, 5]}', "not a file name inside"),
        ('{"/etc/passwd": [1, 1, 5, 5]}', "not a file name inside"),
    ],
)
def test_bad_defect_labels_are_one_typed_error(tmp_path: Path, session, labels: str, match: str) -> None:
    from differad_edge.calibration.validate import load_defects

    from differad_edge.errors import CalibrationError

    folder = tmp_path / "defects"
    folder.mkdir()
    (folder / "d.png").write_bytes(next((session.root / "frames").iterdir()).read_bytes())
    (folder / "labels.json").write_text(labels)
    with pytest.raises(CalibrationError, match=match):
        load_defects(folder)
