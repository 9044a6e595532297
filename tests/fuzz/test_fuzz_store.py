"""Hostile files, planted links/FIFOs and ``kill -9`` against the reference store and the
``differad-calibrate`` commands over it.

Per case: every store operation either works or raises one ``DifferadError`` (CLIs: one line, exit 2),
within a timeout; a failed write changes nothing; nothing appears outside the store.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _hostile import NASTY_FILES, NASTY_VALUES, dumps, json_values, mutate
from differad_edge.calibration.cli import main as calibrate
from hypothesis import given
from hypothesis import strategies as st

from differad_edge.errors import DifferadError
from differad_edge.store import ReferenceStore

STORE_FILES = ["active.json", "history.jsonl", "versions/v0001/manifest.json", "versions/v0002/manifest.json"]


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def _make_store(root: Path) -> ReferenceStore:
    s = ReferenceStore(root)
    v1 = s.add_version("p1", _image(1), mean=np.zeros((32, 32), np.float32), care_mask=np.ones((32, 32), np.uint8))
    s.set_validation("p1", v1, True, {"golden": {"min_area": 9}})
    s.promote("p1", v1)
    s.add_version("p1", _image(2))
    return s


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "refs"
    _make_store(root)
    return root


def _copy(pristine: Path, dst: Path) -> ReferenceStore:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(pristine, dst, symlinks=True)
    return ReferenceStore(dst)


def _tree(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.name == ".lock" or p.is_symlink() or not p.is_file():
            continue
        out[str(p.relative_to(root))] = p.read_bytes()
    return out


READS = [
    lambda s: s.products(),
    lambda s: s.versions("p1"),
    lambda s: s.info("p1", "v0001"),
    lambda s: s.load("p1"),
    lambda s: s.load("p1", "v0002"),
    lambda s: s.history("p1"),
    lambda s: s.active_version("p1"),
    lambda s: s.extra_images("p1", "v0001"),
]
WRITES = [
    lambda s: s.promote("p1", "v0002", force=True, reason="fuzz"),
    lambda s: s.rollback("p1"),
    lambda s: s.set_validation("p1", "v0002", False, {"n": 1}),
    lambda s: s.add_version("p1", _image(3)),
]


def _run_all(store: ReferenceStore, count) -> None:
    """Every operation: success or one DifferadError; a failed write leaves the files as they were."""
    for op in READS:
        try:
            op(store)
        except DifferadError:
            pass
        count("store")
    for op in WRITES:
        before = _tree(store.root)
        try:
            op(store)
        except DifferadError:
            after = _tree(store.root)
            assert after == before, "a failed write changed the store"
        count("store")


def _with_timeout(fn, seconds: float = 20.0) -> None:
    err: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:  # handed to the test thread
            err.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "hung"
    if err:
        raise err[0]


@pytest.mark.parametrize("name", STORE_FILES)
@pytest.mark.parametrize("content", NASTY_FILES, ids=range(len(NASTY_FILES)))
def test_hostile_bytes_in_every_store_file(pristine: Path, tmp_path: Path, count, name: str, content: bytes) -> None:
    store = _copy(pristine, tmp_path / "refs")
    (store.root / "p1" / name).write_bytes(content)
    _with_timeout(lambda: _run_all(store, count))


MANIFEST_KEYS = [
    ["format"],
    ["files"],
    ["files", "reference.png"],
    ["files", "mean.npy"],
    ["size"],
    ["metadata"],
    ["status"],
    ["validation"],
    ["validation", "report"],
    ["validation", "report", "golden"],
    ["validation", "report", "golden", "min_area"],
    ["validation", "passed"],
    ["status_history"],
    ["version"],
    ["sha256"],
    ["files", "../../outside.png"],
    ["files", "/tmp/abs.png"],
]
POINTER_KEYS = [["version"], ["previous"], ["event"], ["format"], ["sha256"], ["time"]]


@given(
    st.sampled_from(
        [("versions/v0001/manifest.json", k) for k in MANIFEST_KEYS] + [("active.json", k) for k in POINTER_KEYS]
    ),
    json_values,
    st.booleans(),
)
def test_wrong_typed_fields_resealed_or_not(pristine: Path, tmp_path: Path, count, target, value, reseal: bool) -> None:
    """A field of any type at any key; resealed (checksum recomputed: the schema must hold on its own)
    or not (the checksum must catch it)."""
    from differad_edge.store_format import seal

    name, key = target
    store = _copy(pristine, tmp_path / "refs")
    path = store.root / "p1" / name
    data = mutate(json.loads(path.read_text()), key, value)
    path.write_bytes(dumps(seal(data) if reseal else data))
    _with_timeout(lambda: _run_all(store, count))


@pytest.mark.parametrize("line", [b"\xff", b"[]", b"{}", b'{"event": 1}', b"[" * 5000, b'{"event": "x"', b"9" * 5000])
def test_hostile_history_lines_refuse_pointer_changes_atomically(
    pristine: Path, tmp_path: Path, count, line: bytes
) -> None:
    store = _copy(pristine, tmp_path / "refs")
    hist = store.root / "p1/history.jsonl"
    hist.write_bytes(hist.read_bytes() + line + b"\n")
    before = _tree(store.root)
    for op in (lambda: store.promote("p1", "v0002", force=True, reason="x"), lambda: store.rollback("p1")):
        with pytest.raises(DifferadError):
            op()
        count("store")
    assert store.active_version("p1") == "v0001"
    assert _tree(store.root) == before


PLANTS = ["symlink_file", "symlink_dir", "fifo", "socket", "dangling", "loop"]
PLANT_AT = [
    "active.json",
    "history.jsonl",
    "versions/v0001/manifest.json",
    "versions/v0001/reference.png",
    "versions/v0001/mean.npy",
    "versions/v0002",
    "versions",
    ".lock",
]


@pytest.mark.parametrize("plant", PLANTS)
@pytest.mark.parametrize("where", PLANT_AT)
def test_planted_links_and_special_files(pristine: Path, tmp_path: Path, count, plant: str, where: str) -> None:
    import socket

    store = _copy(pristine, tmp_path / "refs")
    outside = tmp_path / "outside"
    outside.mkdir()
    target = store.root / "p1" / where
    moved = outside / target.name
    if target.exists():
        target.rename(moved)
    if plant == "symlink_file":
        if not moved.exists():
            moved.write_bytes(b"{}")
        target.symlink_to(moved if moved.is_file() else outside / "x")
    elif plant == "symlink_dir":
        target.symlink_to(moved if moved.is_dir() else outside, target_is_directory=True)
    elif plant == "fifo":
        os.mkfifo(target)
    elif plant == "socket":
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(str(target))
        except OSError:
            pytest.skip("path too long for a unix socket")
    elif plant == "dangling":
        target.symlink_to(outside / "nothing")
    elif plant == "loop":
        target.symlink_to(target)
    before_outside = _tree(outside)
    _with_timeout(lambda: _run_all(store, count))
    assert _tree(outside) == before_outside, "something was written outside the store"
    assert not any(p.name.startswith(".tmp") for p in outside.rglob("*"))


@pytest.mark.parametrize(
    "value",
    [
        "/dev/zero",
        "/etc/passwd",
        "../../../etc/passwd",
        "versions/../../x",
        "reference.png/",
        "fifo",
        "",
        ".",
        "\x00",
        "extra_1.png",
    ],
)
def test_file_names_in_the_manifest_other_than_the_stores_own(
    pristine: Path, tmp_path: Path, count, value: str
) -> None:
    from differad_edge.store_format import seal

    store = _copy(pristine, tmp_path / "refs")
    os.mkfifo(store.root / "p1/versions/v0001/fifo")
    path = store.root / "p1/versions/v0001/manifest.json"
    data = json.loads(path.read_text())
    data["files"][value] = "0" * 64
    path.write_text(json.dumps(seal(data)))
    _with_timeout(lambda: _run_all(store, count))
    with pytest.raises(DifferadError):
        store.load("p1")


CLI_COMMANDS = [
    ["list"],
    ["list", "--json"],
    ["show", "--product", "p1"],
    ["show", "--product", "p1", "--version", "v0002"],
    ["promote", "--product", "p1", "--version", "v0002", "--force", "--reason", "x"],
    ["rollback", "--product", "p1"],
    ["promote", "--product", "p1", "--version", "v0002"],
    ["upgrade"],
]


@pytest.mark.parametrize("name", STORE_FILES)
@pytest.mark.parametrize("content", NASTY_FILES[:12], ids=range(12))
def test_calibrate_commands_on_a_damaged_store(
    pristine: Path, tmp_path: Path, capsys, count, name: str, content: bytes
) -> None:
    store = _copy(pristine, tmp_path / "refs")
    (store.root / "p1" / name).write_bytes(content)
    for argv in CLI_COMMANDS:
        code = calibrate([argv[0], "--store", str(store.root), *argv[1:]])
        out, err = capsys.readouterr()
        assert code in (0, 2), (argv, code, err)
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1, err
            assert lines[0].startswith("differad-calibrate: error:"), err
        count("store")


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"[]", b"\xff\n", b"[" * 100_000])
def test_calibrate_subprocess_has_no_traceback(pristine: Path, tmp_path: Path, count, content: bytes) -> None:
    store = _copy(pristine, tmp_path / "refs")
    (store.root / "p1/active.json").write_bytes(content)
    for argv in (["list"], ["promote", "--product", "p1", "--version", "v0002", "--force", "--reason", "x"]):
        proc = subprocess.run(
            [sys.executable, "-m", "differad_edge.calibration.cli", argv[0], "--store", str(store.root), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        count("store")


WRITER = r"""
import sys, numpy as np
from differad_edge.store import ReferenceStore
s = ReferenceStore(sys.argv[1])
rng = np.random.default_rng(int(sys.argv[2]))
i = 0
while True:
    i += 1
    v = s.add_version("p1", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), mean=np.zeros((32, 32), np.float32))
    s.set_validation("p1", v, True, {"i": i})
    s.promote("p1", v)
    if i % 3 == 0:
        s.rollback("p1")
    print(i, flush=True)
"""


def _check_consistent(store: ReferenceStore) -> None:
    active = store.active_version("p1")
    ref = store.load("p1")
    assert ref.version == active
    events = store.history("p1")
    pointer_events = [e for e in events if e["event"] in ("promote", "rollback")]
    assert pointer_events
    assert pointer_events[-1]["version"] == active
    for v in store.versions("p1"):
        store.load("p1", v.version)


@pytest.mark.parametrize("seed", range(4))
def test_kill_9_during_store_writes(pristine: Path, tmp_path: Path, monkeypatch, count, seed: int) -> None:
    """A writer looping over add/validate/promote/rollback is killed at random moments; after each kill
    the store is consistent, and the next writer removes the dead writer's temp entries."""
    from differad_edge import store_format

    monkeypatch.setattr(store_format, "DEAD_WRITER_GRACE_S", 0.0)  # no need to wait 30 s for the leftovers
    store = _copy(pristine, tmp_path / "refs")
    rng = random.Random(seed)
    kills = 4
    for k in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(store.root), str(seed * 100 + k)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # it is writing
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        _check_consistent(store)
        count("store")
    store.add_version("p1", _image(7))  # any writer cleans the dead writers' leftovers
    leftovers = [p for p in store.root.rglob(".*") if p.name != ".lock"]
    assert leftovers == [], leftovers
    _check_consistent(store)


def test_nasty_values_are_also_refused_as_ids(pristine: Path, tmp_path: Path, count) -> None:
    store = _copy(pristine, tmp_path / "refs")
    for value in NASTY_VALUES:
        for op in (
            lambda v: store.load(v),
            lambda v: store.versions(v),
            lambda v: store.promote("p1", v, force=True, reason="x"),
        ):
            try:
                op(value)  # type: ignore[arg-type]
            except DifferadError:
                pass
            count("store")
    assert _tree(store.root) == _tree(pristine)


@pytest.mark.parametrize("name", STORE_FILES[:3])
@pytest.mark.parametrize("content", NASTY_FILES[:10], ids=range(10))
def test_differad_inspect_on_a_damaged_store(
    pristine: Path, tmp_path: Path, capsys, count, name: str, content: bytes
) -> None:
    import cv2
    from differad_edge.cli.main import main as differad

    store = _copy(pristine, tmp_path / "refs")
    (store.root / "p1" / name).write_bytes(content)
    target = tmp_path / "t.png"
    cv2.imwrite(str(target), _image(1))
    before = _tree(store.root)
    code = differad(["inspect", "--store", str(store.root), "--product", "p1", "-t", str(target), "--json"])
    _, err = capsys.readouterr()
    assert code in (0, 1, 2), (code, err)
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert lines, err
        assert all(ln.startswith("differad: error:") for ln in lines), err
    assert _tree(store.root) == before  # inspecting never writes to the store
    count("store")
