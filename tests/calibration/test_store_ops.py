"""Promote / rollback through the calibration commands, crash safety of a build, and a running
Inspector picking up a newly promoted version."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from calib_helpers import PRODUCT, good_frame, part_scene
from differad_edge.calibration import commands
from differad_edge.calibration.build import build_candidate
from differad_edge.calibration.commands import run_validation
from differad_edge.calibration.session import capture

from differad_edge.engines.golden import GoldenEngine
from differad_edge.errors import CalibrationError, ReferenceError
from differad_edge.images import save_image
from differad_edge.inspector import Inspector
from differad_edge.store import ReferenceStore


def _version_bytes(store: ReferenceStore, version: str) -> dict[str, bytes]:
    vdir = store.root / PRODUCT / "versions" / version
    return {p.name: p.read_bytes() for p in sorted(vdir.iterdir())}


def _validated(store: ReferenceStore, session) -> str:
    version = build_candidate(store, session)
    assert run_validation(store, PRODUCT, version, session=session).passed
    return version


@pytest.fixture
def brighter_session(tmp_path: Path, base_scene: np.ndarray):
    """The same station after a lamp change: a second, equally good calibration."""
    folder = tmp_path / "cam2"
    folder.mkdir()
    for i in range(12):
        save_image(
            folder / f"{i:03d}.png", np.clip(good_frame(base_scene, 100 + i).astype(int) + 12, 0, 255).astype(np.uint8)
        )
    return capture(PRODUCT, str(folder), 12, tmp_path / "session2")


def test_rollback_restores_the_previous_version_byte_identically(store, session, brighter_session) -> None:
    v1 = _validated(store, session)
    commands.promote(store, PRODUCT, v1)
    files_v1 = _version_bytes(store, v1)
    image_v1 = store.load(PRODUCT).image.copy()

    v2 = _validated(store, brighter_session)
    commands.promote(store, PRODUCT, v2)
    assert store.active_version(PRODUCT) == v2
    assert not np.array_equal(store.load(PRODUCT).image, image_v1)

    assert commands.rollback(store, PRODUCT) == v1
    assert store.active_version(PRODUCT) == v1
    assert _version_bytes(store, v1) == files_v1  # every file, manifest included
    ref = store.load(PRODUCT)
    assert np.array_equal(ref.image, image_v1)
    assert set(files_v1) >= {"reference.png", "mean.npy", "spread.npy", "care_mask.png", "manifest.json"}
    events = [e["event"] for e in store.history(PRODUCT)]
    assert events.count("promote") == 2
    assert events[-1] == "rollback"
    with pytest.raises(ReferenceError, match="no previously active version"):
        commands.rollback(store, PRODUCT)


def test_forced_promotion_needs_a_logged_reason(store, session) -> None:
    version = build_candidate(store, session)
    with pytest.raises(ReferenceError, match="candidate, not validated"):
        commands.promote(store, PRODUCT, version)
    with pytest.raises(CalibrationError, match="--force needs --reason"):
        commands.promote(store, PRODUCT, version, force=True, reason="  ")
    assert store.active_version(PRODUCT) is None
    commands.promote(store, PRODUCT, version, force=True, reason="line restart, validation tomorrow")
    last = store.history(PRODUCT)[-1]
    assert last["forced"] is True
    assert last["reason"] == "line restart, validation tomorrow"


class _CrashAfter:
    """``os.replace`` that works ``n`` times, then fails like a power cut between two writes."""

    def __init__(self, n: int) -> None:
        self.n, self.calls, self.real = n, 0, os.replace

    def __call__(self, src, dst) -> None:
        self.calls += 1
        if self.calls > self.n:
            raise OSError(28, "simulated crash", str(dst))
        self.real(src, dst)


def _count_replaces(monkeypatch: pytest.MonkeyPatch, fn) -> int:
    counter = _CrashAfter(10**9)
    monkeypatch.setattr(os, "replace", counter)
    fn()
    monkeypatch.setattr(os, "replace", counter.real)
    return counter.calls


@pytest.mark.parametrize("where", ["first file", "middle", "manifest", "history log"])
def test_crash_during_build_leaves_the_store_consistent(store, session, monkeypatch, where: str) -> None:
    v1 = _validated(store, session)
    commands.promote(store, PRODUCT, v1)
    before = store.load(PRODUCT)
    total = _count_replaces(monkeypatch, lambda: build_candidate(store, session))  # a full build, for the count
    crash_at = {"first file": 0, "middle": total // 2, "manifest": total - 2, "history log": total - 1}[where]
    versions_before = [v.version for v in store.versions(PRODUCT)]

    monkeypatch.setattr(os, "replace", _CrashAfter(crash_at))
    with pytest.raises(OSError, match="simulated crash"):
        build_candidate(store, session)
    monkeypatch.undo()

    fresh = ReferenceStore(store.root)  # what a restarted node sees
    after = fresh.load(PRODUCT)
    assert fresh.active_version(PRODUCT) == v1
    assert after.sha256 == before.sha256
    assert np.array_equal(after.image, before.image)
    listed = [v.version for v in fresh.versions(PRODUCT)]
    assert listed[: len(versions_before)] == versions_before
    for v in listed:  # every listed version is complete and passes its checksums
        fresh.load(PRODUCT, v)
    retry = build_candidate(fresh, session)  # and calibration simply goes on
    assert fresh.info(PRODUCT, retry).status == "candidate"


def test_crash_while_promoting_keeps_the_old_pointer(store, session, brighter_session, monkeypatch) -> None:
    v1 = _validated(store, session)
    commands.promote(store, PRODUCT, v1)
    v2 = _validated(store, brighter_session)
    monkeypatch.setattr(os, "replace", _CrashAfter(0))
    with pytest.raises(OSError):
        commands.promote(store, PRODUCT, v2)
    monkeypatch.undo()
    assert ReferenceStore(store.root).active_version(PRODUCT) == v1
    commands.promote(store, PRODUCT, v2)
    assert store.active_version(PRODUCT) == v2


def test_running_inspector_picks_up_the_promoted_version(store, session, brighter_session) -> None:
    v1 = _validated(store, session)
    commands.promote(store, PRODUCT, v1)
    inspector = Inspector(GoldenEngine(), store=store)
    frame = good_frame(part_scene(0), 777)
    assert inspector.inspect(frame, PRODUCT).reference_version == v1
    v2 = _validated(store, brighter_session)
    commands.promote(store, PRODUCT, v2)
    assert inspector.inspect(frame, PRODUCT).reference_version == v2
    commands.rollback(store, PRODUCT)
    assert inspector.inspect(frame, PRODUCT).reference_version == v1


def test_list_and_show(store, session) -> None:
    with pytest.raises(ReferenceError, match="holds no products"):
        commands.list_products(store)
    v1 = _validated(store, session)
    commands.promote(store, PRODUCT, v1)
    v2 = build_candidate(store, session)
    rows = commands.list_products(store)
    assert [(r["version"], r["status"], r["active"]) for r in rows] == [
        (v1, "validated", True),
        (v2, "candidate", False),
    ]
    assert rows[0]["false_alarm_rate"] == 0.0
    shown = commands.show(store, PRODUCT)
    assert shown["version"] == v1
    assert shown["validation"]["passed"] is True
    assert [e["event"] for e in shown["history"]] == ["add", "validation", "promote"]
    assert commands.latest_candidate(store, PRODUCT) == v2
    with pytest.raises(ReferenceError, match="unknown product 'ghost'"):
        commands.show(store, "ghost")
