"""Issue 13, store items 5, 6, 8, 9, 14, 15: each defect reproduced against a real store folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from differad_edge.errors import ReferenceError
from differad_edge.store import ReferenceStore

from .parts import make_product


@pytest.fixture
def store(tmp_path: Path) -> ReferenceStore:
    s = ReferenceStore(tmp_path / "refs")
    v1 = s.add_version("p1", make_product(64, seed=1))
    s.set_validation("p1", v1, True, {"golden": {"min_area": 9}})
    s.promote("p1", v1)
    s.add_version("p1", make_product(64, seed=2))  # v0002, a candidate
    return s


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"
    }


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# -- item 5: pointer and history change together or not at all ---------------------------------------------
def test_damaged_history_refuses_the_promote_before_anything_moves(store: ReferenceStore) -> None:
    (store.root / "p1/history.jsonl").write_bytes(b"\xff\n")
    before = _tree(store.root)
    with pytest.raises(ReferenceError, match="line 1 of .*history"):
        store.promote("p1", "v0002", force=True, reason="x")
    assert store.active_version("p1") == "v0001"
    assert _tree(store.root) == before


def test_a_crash_between_commit_and_log_append_loses_no_event(store: ReferenceStore) -> None:
    # The commit (pointer with its event) happened; the process died before appending to the log.
    store._write_pointer("p1", "v0002", ["v0001"], {"event": "promote", "version": "v0002", "id": "f" * 32})
    assert store.active_version("p1") == "v0002"
    assert store.history("p1")[-1]["id"] == "f" * 32  # readers see pointer and event together
    store.add_version("p1", make_product(64, seed=3))  # the next writer appends it, exactly once
    ids = [e.get("id") for e in store.history("p1")]
    assert ids.count("f" * 32) == 1
    raw = (store.root / "p1/history.jsonl").read_text()
    assert raw.count("f" * 32) == 1


# -- item 6: manifests are sealed ------------------------------------------------------------------------------------
def test_raised_thresholds_in_a_manifest_are_detected(store: ReferenceStore) -> None:
    _edit_json(
        store.root / "p1/versions/v0001/manifest.json",
        lambda d: d["validation"]["report"].update(golden={"min_area": 1e9}),
    )
    with pytest.raises(ReferenceError, match="edited"):
        store.load("p1")


def test_typed_in_validated_status_does_not_let_promote_through(store: ReferenceStore) -> None:
    _edit_json(store.root / "p1/versions/v0002/manifest.json", lambda d: d.update(status="validated"))
    with pytest.raises(ReferenceError, match="edited"):
        store.promote("p1", "v0002")
    assert store.active_version("p1") == "v0001"


def test_pointer_edits_are_detected(store: ReferenceStore) -> None:
    _edit_json(store.root / "p1/active.json", lambda d: d.update(version="v0002"))
    with pytest.raises(ReferenceError, match="edited"):
        store.load("p1")


def test_format_1_stores_still_load_and_are_sealed_by_the_first_write(store: ReferenceStore) -> None:
    # Turn the store into what earlier releases wrote: unsealed format-1 manifests, a bare pointer.
    for m in (store.root / "p1/versions").glob("*/manifest.json"):
        _edit_json(m, lambda d: (d.pop("sha256"), d.update(format=1)))
    (store.root / "p1/active.json").write_text(json.dumps({"version": "v0001", "previous": []}))
    assert store.load("p1").version == "v0001"
    store.upgrade("p1")
    assert {json.loads(m.read_text())["format"] for m in (store.root / "p1/versions").glob("*/manifest.json")} == {2}
    assert store.load("p1").version == "v0001"
    # A downgraded (unsealed) manifest in a sealed product is refused.
    _edit_json(store.root / "p1/versions/v0002/manifest.json", lambda d: (d.pop("sha256"), d.update(format=1)))
    with pytest.raises(ReferenceError, match="unsealed"):
        store.info("p1", "v0002")


# -- items 8, 15: only regular files inside the store ---------------------------------------------------------
def _with_timeout(fn, seconds: float = 10.0):
    result: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            fn()
            result["e"] = None
        except BaseException as e:  # handed to the test
            result["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "hung"
    return result["e"]


def test_an_absolute_fifo_in_files_is_refused_without_hanging(store: ReferenceStore, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    m = store.root / "p1/versions/v0002/manifest.json"
    data = json.loads(m.read_text())
    data["files"][str(fifo)] = "0" * 64
    m.write_text(json.dumps(data))
    e = _with_timeout(lambda: store.promote("p1", "v0002", force=True, reason="x"))
    assert isinstance(e, ReferenceError)
    assert "not one the store writes" in str(e)


@pytest.mark.parametrize(
    "name", ["versions/v0001/reference.png", "active.json", "history.jsonl", "versions/v0001/manifest.json"]
)
def test_a_fifo_in_place_of_a_store_file_is_refused_without_hanging(store: ReferenceStore, name: str) -> None:
    path = store.root / "p1" / name
    path.unlink()
    os.mkfifo(path)
    e = _with_timeout(lambda: (store.load("p1"), store.history("p1"), store.versions("p1")))
    assert isinstance(e, ReferenceError), e
    assert "special file" in str(e) or "not a regular file" in str(e)


@pytest.mark.parametrize("what", ["version_dir", "versions_dir", "manifest", "active", "history", "product"])
def test_planted_symlinks_are_refused_and_nothing_is_written_outside(
    store: ReferenceStore, tmp_path: Path, what: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    p = store.root / "p1"
    target = {
        "version_dir": p / "versions/v0002",
        "versions_dir": p / "versions",
        "manifest": p / "versions/v0002/manifest.json",
        "active": p / "active.json",
        "history": p / "history.jsonl",
        "product": p,
    }[what]
    moved = outside / target.name
    target.rename(moved)
    target.symlink_to(moved, target_is_directory=moved.is_dir())
    before = _tree(outside)
    for op in (
        lambda: store.set_validation("p1", "v0002", True, {}),
        lambda: store.promote("p1", "v0002", force=True, reason="x"),
        lambda: store.add_version("p1", make_product(64, seed=5)),
        lambda: (store.load("p1"), store.history("p1"), store.load("p1", "v0002")),
    ):
        with pytest.raises(ReferenceError, match="symbolic link"):
            op()
    assert _tree(outside) == before


# -- item 9: wrong-typed JSON anywhere is a typed error -----------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("active.json", "[]"),
        ("active.json", '{"version": 7}'),
        ("active.json", '{"version": "../../etc"}'),
        ("active.json", '{"version": "v0001", "previous": "v0001"}'),
        ("active.json", "[" * 100_000),
        ("history.jsonl", "[]\n"),
        ("history.jsonl", '{"event": 5}\n'),
        ("versions/v0001/manifest.json", '{"format": 2, "files": []}'),
        ("versions/v0001/manifest.json", '{"format": 2, "files": {"reference.png": 1}}'),
        (
            "versions/v0001/manifest.json",
            '{"format": 1, "files": {"reference.png": "' + "a" * 64 + '"}, "metadata": "x"}',
        ),
        ("versions/v0001/manifest.json", '{"format": 1, "files": {"../../x": "' + "a" * 64 + '"}}'),
        ("versions/v0001/manifest.json", '{"format": true, "files": {}}'),
        ("versions/v0001/manifest.json", "1e999999"),
        ("versions/v0001/manifest.json", '"' + "9" * 5000 + '"'),
    ],
)
def test_wrong_typed_json_is_one_reference_error(store: ReferenceStore, name: str, content: str) -> None:
    (store.root / "p1" / name).write_text(content)
    with pytest.raises(ReferenceError):
        store.load("p1")
        store.versions("p1")
        store.history("p1")


def test_cli_list_with_a_wrong_typed_pointer_is_one_line_and_exit_2(store: ReferenceStore) -> None:
    (store.root / "p1/active.json").write_text("[]")
    proc = subprocess.run(
        [sys.executable, "-m", "differad_edge.calibration.cli", "list", "--store", str(store.root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("differad-calibrate: error:"), proc.stderr
    assert "Traceback" not in proc.stderr


# -- item 14: temp entries of dead writers are cleaned ------------------------------------------------------------
def test_stale_temp_entries_of_dead_writers_are_cleaned(store: ReferenceStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from differad_edge import store_format

    monkeypatch.setattr(store_format, "DEAD_WRITER_GRACE_S", 0.0)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    vdir = store.root / "p1/versions"
    (vdir / f".tmp-{pid}-{'a' * 32}").mkdir()
    (vdir / f".tmp-{pid}-{'a' * 32}/reference.png").write_bytes(b"x")
    (store.root / f"p1/.active.json.{pid}.abc123_x.tmp").write_bytes(b"{}")
    (vdir / f"v0001/.manifest.json.{pid}.zz9.tmp").write_bytes(b"{}")
    live = vdir / f".tmp-{os.getpid()}-{'b' * 32}"  # a writer that is still running
    live.mkdir()
    mine = store.root / "p1/.notes.tmp"  # not a name the store creates
    mine.write_text("keep")
    store.add_version("p1", make_product(64, seed=4))
    names = {p.name for p in store.root.rglob(".*")}
    assert names == {".lock", live.name, mine.name}, names
    live.rmdir()


def test_a_fresh_temp_folder_of_an_unknown_pid_is_kept(store: ReferenceStore) -> None:
    """A writer in another pid namespace looks dead from here: its young temp folder must survive."""
    young = store.root / "p1/versions" / f".tmp-999999999-{'c' * 32}"
    young.mkdir()
    store.add_version("p1", make_product(64, seed=4))
    assert young.is_dir()


def test_a_resealed_npy_of_the_wrong_shape_is_refused(store: ReferenceStore) -> None:
    """Even with consistent checksums, a variation model that does not fit the image is refused."""
    import io

    from differad_edge.fileio import sha256_bytes
    from differad_edge.store_format import seal

    v = store.add_version("p2", make_product(64, seed=1), mean=np.zeros((64, 64), np.float32))
    buf = io.BytesIO()
    np.save(buf, np.zeros((4096, 4096), np.float32))
    vdir = store.root / "p2/versions" / v
    (vdir / "mean.npy").write_bytes(buf.getvalue())
    m = json.loads((vdir / "manifest.json").read_text())
    m["files"]["mean.npy"] = sha256_bytes(buf.getvalue())
    (vdir / "manifest.json").write_text(json.dumps(seal(m)))
    with pytest.raises(ReferenceError, match="mean.npy must be finite float32 of shape"):
        store.load("p2", v)


def test_an_unsealed_pointer_in_a_sealed_product_is_refused(store: ReferenceStore) -> None:
    """Downgrading the pointer to format 1 (no checksum) must not make a candidate active."""
    (store.root / "p1/active.json").write_text(json.dumps({"version": "v0002", "previous": []}))
    with pytest.raises(ReferenceError, match="unsealed"):
        store.load("p1")
    store.add_version("p1", make_product(64, seed=9))  # writers do not silently re-seal it...
    with pytest.raises(ReferenceError, match="unsealed"):
        store.promote("p1", "v0003", force=True, reason="x")
    with pytest.raises(ReferenceError, match="unsealed"):
        store.load("p1")  # ... it stays refused
    store.upgrade("p1")  # the operator's explicit decision
    assert store.active_version("p1") == "v0002"
