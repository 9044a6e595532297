"""Reference store: versions, checksums, promote/rollback, id validation, crash safety."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from differad_edge.errors import ConfigError, ImageError, ReferenceError
from differad_edge.store import ReferenceStore

from .parts import make_product

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> ReferenceStore:
    return ReferenceStore(tmp_path / "refs")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_construction_writes_nothing(tmp_path):
    ReferenceStore(tmp_path / "refs")
    assert not (tmp_path / "refs").exists()


def test_round_trip_of_every_part(store):
    img = make_product(64, seed=1)
    care = np.zeros((64, 64), np.uint8)
    care[8:56, 8:56] = 1
    mean = img.astype(np.float32) + 0.25
    spread = np.full((64, 64, 3), 1.5, np.float32)
    extras = [make_product(64, seed=2), make_product(64, seed=3)]
    v = store.add_version(
        "pump-01", img, care_mask=care, mean=mean, spread=spread, extra_images=extras, metadata={"line": 3}
    )
    assert v == "v0001"
    assert store.products() == ["pump-01"]
    assert store.active_version("pump-01") is None
    [info] = store.versions("pump-01")
    assert (info.status, info.active, info.size) == ("candidate", False, (64, 64))
    assert set(info.files) == {
        "reference.png",
        "care_mask.png",
        "mean.npy",
        "spread.npy",
        "extra_000.png",
        "extra_001.png",
    }
    ref = store.load("pump-01", v)
    np.testing.assert_array_equal(ref.image, img)
    np.testing.assert_array_equal(ref.care_mask > 0, care > 0)
    np.testing.assert_array_equal(ref.mean, mean)
    np.testing.assert_array_equal(ref.spread, spread)
    assert ref.metadata == {"line": 3}
    assert (ref.product_id, ref.version) == ("pump-01", v)
    assert len(ref.key) == 64
    for got, want in zip(store.extra_images("pump-01", v), extras, strict=True):
        np.testing.assert_array_equal(got, want)
    # the manifest holds the sha256 of every file, and no pickles are involved
    manifest = json.loads((store.root / "pump-01/versions/v0001/manifest.json").read_text())
    assert set(manifest["files"]) == set(info.files)
    assert store.add_version("pump-01", img) == "v0002"


def test_promote_needs_validation_or_a_forced_reason(store):
    img = make_product(64)
    v1 = store.add_version("p", img)
    with pytest.raises(ReferenceError, match="not validated"):
        store.promote("p", v1)
    with pytest.raises(ConfigError, match="reason"):
        store.promote("p", v1, force=True)
    store.set_validation("p", v1, passed=False, report={"false_alarms": 2})
    assert store.info("p", v1).status == "rejected"
    with pytest.raises(ReferenceError):
        store.promote("p", v1)
    store.promote("p", v1, force=True, reason="line down, accepted by QA")
    assert store.active_version("p") == v1
    forced = [e for e in store.history("p") if e["event"] == "promote"]
    assert forced[-1]["forced"] is True
    assert forced[-1]["reason"] == "line down, accepted by QA"

    v2 = store.add_version("p", make_product(64, seed=5))
    info = store.set_validation("p", v2, passed=True, report={"false_alarms": 0})
    assert info.status == "validated"
    assert info.validation["report"] == {"false_alarms": 0}
    store.promote("p", v2)
    assert store.active_version("p") == v2
    assert [v.active for v in store.versions("p")] == [False, True]
    assert [e["event"] for e in store.history("p")] == ["add", "validation", "promote", "add", "validation", "promote"]


def test_the_active_version_cannot_be_re_judged(store):
    """A later validation run must not reject the live reference or change the thresholds it uses."""
    v1 = store.add_version("p", make_product(64))
    store.set_validation("p", v1, True, {"golden": {"k": 3.0}})
    store.promote("p", v1)
    manifest = (store.root / "p/versions" / v1 / "manifest.json").read_bytes()
    with pytest.raises(ReferenceError, match="active, validated version"):
        store.set_validation("p", v1, False, {"golden": {"k": 1.0}})
    assert (store.root / "p/versions" / v1 / "manifest.json").read_bytes() == manifest
    assert store.info("p", v1).status == "validated"
    assert store.load("p").metadata["golden"] == {"k": 3.0}
    v2 = store.add_version("p", make_product(64, seed=3))
    store.set_validation("p", v2, False, {})  # candidates are judged as before
    assert store.info("p", v2).status == "rejected"
    v3 = store.add_version("p", make_product(64, seed=4))  # forced live now, validated later (README's flow)
    store.promote("p", v3, force=True, reason="line restart; QA validates tomorrow")
    assert store.set_validation("p", v3, True, {}).status == "validated"


def test_rollback_serves_byte_identical_files(store):
    a, b = make_product(64, seed=1), make_product(64, seed=2)
    v1 = store.add_version("p", a, mean=a.astype(np.float32))
    store.set_validation("p", v1, True, {})
    store.promote("p", v1)
    before = store.load("p")
    files_before = _files(store.root / "p/versions" / v1)
    v2 = store.add_version("p", b)
    store.set_validation("p", v2, True, {})
    store.promote("p", v2)
    np.testing.assert_array_equal(store.load("p").image, b)

    assert store.rollback("p") == v1
    after = store.load("p")
    assert after.version == v1
    assert after.key == before.key
    np.testing.assert_array_equal(after.image, a)
    assert _files(store.root / "p/versions" / v1) == files_before
    with pytest.raises(ReferenceError, match="no previously active"):
        store.rollback("p")
    last = store.history("p")[-1]
    assert (last["event"], last["version"], last["from"]) == ("rollback", v1, v2)


@pytest.mark.parametrize(
    "bad", ["../etc", "a/b", ".hidden", "", "x" * 65, "..", "a\\b", "name with space", "é", "v1\n"]
)
def test_ids_that_could_escape_the_root_are_rejected(store, bad, tmp_path):
    with pytest.raises(ReferenceError, match="invalid"):
        store.add_version(bad, make_product(32))
    with pytest.raises(ReferenceError, match="invalid"):
        store.load("ok", bad)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_tampered_file_fails_loudly(store):
    v = store.add_version("p", make_product(64), spread=np.ones((64, 64), np.float32))
    store.set_validation("p", v, True, {})
    store.promote("p", v)
    path = store.root / "p/versions" / v / "spread.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ReferenceError, match="checksum mismatch"):
        store.load("p")
    (store.root / "p/versions" / v / "reference.png").unlink()
    with pytest.raises(ReferenceError, match="missing"):
        store.load("p")


def test_unknown_product_and_missing_active(store):
    with pytest.raises(ReferenceError, match="unknown product"):
        store.load("nope")
    store.add_version("p", make_product(32))
    with pytest.raises(ReferenceError, match="no active version"):
        store.load("p")
    with pytest.raises(ReferenceError, match="no version"):
        store.load("p", "v0009")


def test_bad_inputs_raise_typed_errors_and_leave_nothing_behind(store):
    img = make_product(32)
    with pytest.raises(ImageError, match="care mask"):
        store.add_version("p", img, care_mask=np.ones((16, 16), np.uint8))
    with pytest.raises(ImageError, match="spread"):
        store.add_version("p", img, spread=-np.ones((32, 32), np.float32))
    with pytest.raises(ConfigError, match="JSON"):
        store.add_version("p", img, metadata={"bad": object()})
    assert store.products() == []
    store.add_version("p", img, version="golden-A")
    with pytest.raises(ReferenceError, match="already exists"):
        store.add_version("p", img, version="golden-A")
    assert [v.version for v in store.versions("p")] == ["golden-A"]
    assert [p.name for p in (store.root / "p/versions").iterdir()] == ["golden-A"]


def _crash(root: Path, body: str) -> subprocess.CompletedProcess:
    """Run ``body`` in a fresh interpreter that dies with os._exit (no cleanup, like a power cut)."""
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        import numpy as np
        from differad_edge import store as store_mod
        from differad_edge.store import ReferenceStore
        s = ReferenceStore({str(root)!r})
        """
    ) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_crash_mid_write_leaves_the_store_loadable(store):
    img = make_product(64)
    v1 = store.add_version("p", img)
    store.set_validation("p", v1, True, {})
    store.promote("p", v1)
    snapshot = store.load("p")

    # Die after the second file of a new version is on disk.
    proc = _crash(
        store.root,
        """
        real = store_mod.atomic_write_bytes
        calls = []
        def dying(path, data):
            calls.append(path)
            if len(calls) == 2:
                os._exit(17)
            real(path, data)
        store_mod.atomic_write_bytes = dying
        s.add_version("p", np.zeros((64, 64, 3), np.uint8), mean=np.zeros((64, 64), np.float32),
                      spread=np.ones((64, 64), np.float32))
        """,
    )
    assert proc.returncode == 17, proc.stderr
    assert any(p.name.startswith(".tmp-") for p in (store.root / "p/versions").iterdir())  # the debris is there
    assert [v.version for v in store.versions("p")] == [v1]  # ... and invisible
    assert store.load("p").key == snapshot.key
    assert store.add_version("p", img) == "v0002"  # writing goes on normally

    # Die while switching the active pointer: after the temp file is written, before the rename.
    store.set_validation("p", "v0002", True, {})
    proc = _crash(
        store.root,
        """
        def dying(src, dst):
            os._exit(18)
        os.replace = dying
        s.promote("p", "v0002")
        """,
    )
    assert proc.returncode == 18, proc.stderr
    assert store.active_version("p") == v1
    assert store.load("p").key == snapshot.key
    store.promote("p", "v0002")
    assert store.active_version("p") == "v0002"


def _write_many(root: str, worker: int, count: int) -> None:
    store = ReferenceStore(root)
    img = np.full((32, 32, 3), worker * 40, np.uint8)
    for i in range(count):
        v = store.add_version("pump", img, metadata={"worker": worker, "i": i})
        store.set_validation("pump", v, True, {"worker": worker})
        store.promote("pump", v)


def test_concurrent_writers_in_several_processes_lose_no_event(tmp_path: Path) -> None:
    """Three processes calibrating the same product at once: every version, validation and promotion
    is in the history, and the pointer's previous list names every version once."""
    import multiprocessing

    root = str(tmp_path / "refs")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(root, w, 8)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = ReferenceStore(root)
    versions = [v.version for v in store.versions("pump")]
    assert len(versions) == 24
    events = [e["event"] for e in store.history("pump")]
    assert events.count("add") == 24
    assert events.count("validation") == 24
    assert events.count("promote") == 24
    pointer = json.loads((Path(root) / "pump" / "active.json").read_text())
    assert sorted(pointer["previous"] + [pointer["version"]]) == sorted(versions)


def test_writing_to_an_unknown_product_creates_nothing(store: ReferenceStore) -> None:
    with pytest.raises(ReferenceError):
        store.promote("ghost", "v0001")
    with pytest.raises(ReferenceError):
        store.rollback("ghost")
    assert not (store.root / "ghost").exists()
