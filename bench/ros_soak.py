"""Soak of the ROS 2 inspector node under mixed abuse (issue 13): does it keep inspecting good frames?

Starts the real node process (``python -m differad_edge_ros.node``, what ``differad-inspector`` runs) on a
private DDS domain, registers a store (two parts and one whose manifest is damaged), then for ``--duration``
seconds publishes at ``--fps`` a mix of good frames, defective frames and bad ones through one raw
publisher: wrong / empty encodings, wrong sizes and steps, truncated pixels, mono where colour is
expected, empty and size-bomb images, and malformed CDR (unknown encapsulation ``00 02`` / ``0a 0b``,
truncated, random bytes, huge lengths). A second node (``input:=compressed``) gets JPEG frames and
compressed garbage on ``<topic>/compressed``. Meanwhile the raw node is switched to an unknown and a
damaged product (parameter and ``~/product_id`` topic), to the other part and back, and sent
parameter sets with bad values. Recorded: the ``~/result`` of every frame per kind (good and defective
frames must keep coming back OK / NG after bad ones), bad frames counted in ``/diagnostics``, the
node alive to the end, its RSS every ``--sample-period`` s (start / end / max, slope by a linear fit).

    .venv/bin/python bench/ros_soak.py                      # 5 minutes
    .venv/bin/python bench/ros_soak.py --record             # ... and its section in bench/RESULTS.md
    .venv/bin/python bench/ros_soak.py --duration 15 --json out.json   # the smoke test's run

Exit 0 when every node stayed up, exited 0 on SIGINT without a traceback, and good / defective frames
sent right after a bad one got a result (``--min-after-bad``, default 90 %); 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ros_node import rss_mb  # noqa: E402  (bench/ is not a package: the sampler shared with ros_node.py)

SECTION = "## ROS 2 node under mixed abuse (issue 13 soak)"
SIZE = 256
PARTS = {"part-a": 0, "part-b": 5}  # product id -> differad_edge_ros.scene.make_product seed
DAMAGED = "part-damaged"
INSPECTED = ("good", "defect")  # kinds whose verdict is known: OK and NG


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=300.0, help="seconds of abuse")
    ap.add_argument("--fps", type=float, default=15.0, help="frames per second into the raw node")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample-period", type=float, default=2.0, help="seconds between RSS samples")
    ap.add_argument("--control-period", type=float, default=1.5, help="seconds between parameter / product abuses")
    ap.add_argument("--no-compressed", action="store_true", help="no second node on compressed input")
    ap.add_argument("--min-after-bad", type=float, default=0.9, help="share of good frames after a bad one answered")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ros_soak", help="node logs go here")
    ap.add_argument("--domain-id", type=int, default=None, help="DDS domain (default: derived from the pid)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")
    ap.add_argument("--record", action="store_true", help="replace (or append) this soak's section in RESULTS.md")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    a = ap.parse_args(argv)
    if a.duration <= 0 or a.fps <= 0 or a.sample_period <= 0:
        ap.error("need --duration, --fps and --sample-period > 0")
    return a


# ---- what is published --------------------------------------------------------------------------------------
def _png_bomb(side: int = 100_000) -> bytes:
    """A PNG whose header claims ``side`` x ``side`` pixels (valid CRC), with one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def raw_kinds(frames: dict[str, list[np.ndarray]]) -> dict[str, Callable[[int, str], bytes]]:
    """Kind -> ``make(i, product)``: the CDR bytes of one frame of that kind (the stamp is set later).

    Good and defective frames are serialized once and restamped; bad ones are built from a good one.
    """
    from differad_edge_ros.conversions import array_to_image
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    def image(**fields: Any) -> bytes:
        msg = Image()
        for k, v in fields.items():
            setattr(msg, k, v)
        return serialize_message(msg)

    cdr = {
        (kind, pid, j): serialize_message(array_to_image(img, "rgb8"))
        for (kind, pid), imgs in frames.items()
        for j, img in enumerate(imgs)
    }
    per = len(next(iter(frames.values())))

    def good(kind: str) -> Callable[[int, str], bytes]:
        return lambda i, pid: cdr[(kind, pid, i % per)]

    ref = frames[("good", "part-a")][0]
    rgb = ref.tobytes()
    w3 = SIZE * 3
    rng = np.random.default_rng(1)
    garbage = rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
    kinds: dict[str, Callable[[int, str], bytes]] = {"good": good("good"), "defect": good("defect")}
    fixed = {
        "encoding 'rgb9'": image(height=SIZE, width=SIZE, encoding="rgb9", step=w3, data=rgb),
        "encoding ''": image(height=SIZE, width=SIZE, encoding="", step=w3, data=rgb),
        "wrong size 128x128": serialize_message(array_to_image(ref[:128, :128].copy(), "rgb8")),
        "step < width*3": image(height=SIZE, width=SIZE, encoding="rgb8", step=w3 - 1, data=rgb),
        "step 2^31": image(height=SIZE, width=SIZE, encoding="rgb8", step=2**31, data=rgb),
        "truncated pixels": image(height=SIZE, width=SIZE, encoding="rgb8", step=w3, data=rgb[: len(rgb) // 3]),
        "mono8 for colour": serialize_message(array_to_image(ref, "mono8")),
        "empty 0x0": image(height=0, width=0, encoding="rgb8", step=0, data=b""),
        "size bomb 100000^2": image(height=100_000, width=100_000, encoding="rgb8", step=300_000, data=rgb),
    }
    kinds.update({k: (lambda i, pid, b=b: b) for k, b in fixed.items()})
    good_cdr = cdr[("good", "part-a", 0)]
    # malformed CDR: the bytes are published as they are (a raw publisher), no stamp can be set in most
    kinds["CDR encapsulation 00 02"] = lambda i, pid: b"\x00\x02" + good_cdr[2:]
    kinds["CDR encapsulation 0a 0b"] = lambda i, pid: b"\x0a\x0b" + good_cdr[2:]
    kinds["CDR truncated (40 B)"] = lambda i, pid: good_cdr[:40]
    kinds["CDR random bytes"] = lambda i, pid: garbage
    kinds["CDR lengths 0xffffffff"] = lambda i, pid: good_cdr[:12] + b"\xff" * 16 + good_cdr[28:60]
    return kinds


def compressed_kinds(frames: dict[str, list[np.ndarray]]) -> dict[str, Callable[[int, str], bytes]]:
    """As :func:`raw_kinds` for a ``sensor_msgs/CompressedImage`` input."""
    from differad_edge_ros.conversions import array_to_compressed
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CompressedImage

    def comp(fmt: str, data: bytes) -> bytes:
        return serialize_message(CompressedImage(format=fmt, data=data))

    jpeg = {
        (kind, pid, j): serialize_message(array_to_compressed(img, "jpeg"))
        for (kind, pid), imgs in frames.items()
        for j, img in enumerate(imgs)
    }
    per = len(next(iter(frames.values())))
    one = bytes(array_to_compressed(frames[("good", "part-a")][0], "jpeg").data)
    rng = np.random.default_rng(2)
    fixed = {
        "jpeg random bytes": comp("jpeg", rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()),
        "jpeg truncated": comp("jpeg", one[: len(one) // 2]),
        "png size bomb 100000^2": comp("png", _png_bomb()),
        "radiance .hdr": comp("hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 8200 +X 8200\n" + b"\x02" * 64),
        "empty data": comp("jpeg", b""),
    }
    kinds: dict[str, Callable[[int, str], bytes]] = {
        kind: (lambda i, pid, kind=kind: jpeg[(kind, pid, i % per)]) for kind in INSPECTED
    }
    kinds.update({k: (lambda i, pid, b=b: b) for k, b in fixed.items()})
    return kinds


def schedule(kinds: list[str], n: int, seed: int) -> list[str]:
    """``n`` kinds: 40 % good, 15 % defective, 45 % bad (every bad kind equally often, shuffled)."""
    rng = np.random.default_rng(seed)
    bad = [k for k in kinds if k not in INSPECTED]
    out = []
    for _ in range(n):
        u = rng.random()
        out.append("good" if u < 0.40 else "defect" if u < 0.55 else bad[int(rng.integers(len(bad)))])
    return out


# ---- one node under test ----------------------------------------------------------------------------------
@dataclass
class Target:
    """One inspector process, what was sent to it and what came back."""

    name: str
    proc: subprocess.Popen
    log: Path
    publisher: Any
    kinds: dict[str, Callable[[int, str], bytes]]
    sent: dict[tuple[int, int], tuple[str, str, int]] = field(default_factory=dict)  # stamp -> kind, part, seq
    order: list[tuple[int, int]] = field(default_factory=list)
    results: dict[tuple[int, int], tuple[str, str, str, float]] = field(default_factory=dict)
    unmatched: Counter = field(default_factory=Counter)  # results for stamps not sent (unreadable CDR)
    diagnostics: dict[str, str] = field(default_factory=dict)
    rss: list[tuple[float, float]] = field(default_factory=list)
    died_at: float | None = None
    exit_code: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_result(self, msg: Any) -> None:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self.lock:
            if key in self.sent and key not in self.results:
                self.results[key] = (msg.verdict_name, msg.reason, msg.product_id, time.monotonic())
            else:
                self.unmatched[f"{msg.verdict_name}/{msg.reason or '-'}"] += 1

    def on_diagnostics(self, msg: Any) -> None:
        for s in msg.status:
            if s.hardware_id == f"/{self.name}":
                self.diagnostics = {"message": s.message, **{kv.key: kv.value for kv in s.values}}

    def publish(self, seq: int, kind: str, part: str) -> None:
        from differad_edge_ros.conversions import restamp_cdr

        data = self.kinds[kind](seq, part)
        now = time.time_ns()
        stamp = divmod(now, 10**9)
        try:
            data = restamp_cdr(data, *stamp)
        except ValueError:  # malformed CDR carries no stamp this side can set
            pass
        with self.lock:
            self.sent[stamp] = (kind, part, seq)
            self.order.append(stamp)
        self.publisher.publish(data)


def start_node(
    name: str, store: Path, env: dict[str, str], log_dir: Path, **params: Any
) -> tuple[subprocess.Popen, Path]:
    full = {
        "store": str(store),
        "product_id": "part-a",
        "align": "none",
        "image_topic": f"/{name}/camera",
        "diagnostics_period": 1.0,
        **params,
    }
    cmd = [sys.executable, "-m", "differad_edge_ros.node", "--ros-args", "-r", f"__node:={name}"]
    cmd += [x for k, v in full.items() for x in ("-p", f"{k}:={v}")]
    log = log_dir / f"{name}.log"
    with open(log, "w") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT), log


# ---- parameter and product abuse ----------------------------------------------------------------------------
#: (what, parameter values, accepted?) - tried in turn on the raw node while frames stream in
CONTROLS: list[tuple[str, dict[str, Any], bool]] = [
    ("product_id -> unknown product", {"product_id": "no-such-part"}, False),
    ("product_id -> damaged manifest", {"product_id": DAMAGED}, False),
    ("product_id -> '../etc'", {"product_id": "../etc"}, False),
    ("product_id -> 83 (an integer)", {"product_id": 83}, False),
    ("golden.k -> 500.0 (out of range)", {"golden.k": 500.0}, False),
    ("golden.channels -> 'infrared'", {"golden.channels": "infrared"}, False),
    ("stream -> 'false' (a string)", {"stream": "false"}, False),
    ("trigger_timeout -> 'soon'", {"trigger_timeout": "soon"}, False),
    ("product_id -> part-b", {"product_id": "part-b"}, True),
    ("product_id -> part-a (back)", {"product_id": "part-a"}, True),
]
TOPIC_SWITCHES = ["no-such-part", DAMAGED, "", "x" * 300]  # on ~/product_id: refused, logged


class Controller(threading.Thread):
    """Sends :data:`CONTROLS` and :data:`TOPIC_SWITCHES` in turn every ``period`` s; ``part`` is the
    product the camera shows (switched with the node's product, so a good frame stays good)."""

    def __init__(self, client: Any, node: str, period: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        from std_msgs.msg import String

        self.client, self.node, self.period, self.stop = client, node, period, stop
        self.part = "part-a"
        self.outcomes: dict[str, Counter] = defaultdict(Counter)
        self.topic = client.create_publisher(String, f"/{node}/product_id", 10)
        self.errors: list[str] = []

    def set(self, values: dict[str, Any]) -> tuple[bool, str] | None:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        cli = self.client.create_client(SetParameters, f"/{self.node}/set_parameters")
        try:
            if not cli.wait_for_service(timeout_sec=10.0):
                return None
            req = SetParameters.Request(
                parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
            )
            future = cli.call_async(req)
            deadline = time.monotonic() + 10.0
            while not future.done():
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.01)
            r = future.result().results[0]
            return bool(r.successful), r.reason
        finally:
            self.client.destroy_client(cli)

    def run(self) -> None:
        from std_msgs.msg import String

        i = 0
        while not self.stop.wait(self.period):
            what, values, accepted = CONTROLS[i % len(CONTROLS)]
            switch = "product_id" in values and accepted
            answer = self.set(values)
            if answer is None:
                self.outcomes[what]["no answer"] += 1
            else:
                self.outcomes[what]["as expected" if answer[0] == accepted else "WRONG"] += 1
                if answer[0] != accepted:
                    self.errors.append(f"{what}: successful={answer[0]} ({answer[1]})")
            if switch and answer and answer[0]:
                self.part = str(values["product_id"])
            self.topic.publish(String(data=TOPIC_SWITCHES[i % len(TOPIC_SWITCHES)]))
            self.outcomes["~/product_id topic -> bad product"]["sent"] += 1
            i += 1


# ---- the run --------------------------------------------------------------------------------------------------
def make_store(root: Path) -> None:
    """part-a, part-b promoted; ``part-damaged`` promoted, then its manifest damaged (``"metadata": "x"``)."""
    from differad_edge_ros.scene import make_product

    from differad_edge.store import ReferenceStore

    store = ReferenceStore(root)
    for pid, seed in {**PARTS, DAMAGED: 9}.items():
        v = store.add_version(pid, make_product(SIZE, seed))
        store.set_validation(pid, v, True, {"by": "bench/ros_soak.py"})
        store.promote(pid, v)
    manifest = root / DAMAGED / "versions" / "v0001" / "manifest.json"
    damaged = json.loads(manifest.read_text())
    damaged["metadata"] = "x"
    manifest.write_text(json.dumps(damaged))


def make_frames(seed: int) -> dict[tuple[str, str], list[np.ndarray]]:
    """8 good and 8 defective frames of each part (sensor noise on the good ones)."""
    from differad_edge_ros.scene import make_frames as scene_frames
    from differad_edge_ros.scene import make_product

    out: dict[tuple[str, str], list[np.ndarray]] = {}
    for pid, pseed in PARTS.items():
        ref = make_product(SIZE, pseed)
        frames = scene_frames(ref, 64, defect_rate=0.5, seed=seed + pseed + 11)
        out[("good", pid)] = [f.image for f in frames if f.box.is_zero][:8]
        out[("defect", pid)] = [f.image for f in frames if not f.box.is_zero][:8]
    return out


def wait_ready(t: Target, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while t.publisher.get_subscription_count() < 1:
        if t.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the inspector {t.name} did not start:\n{t.log.read_text()[-3000:]}")
        time.sleep(0.05)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from differad_edge_ros.rosenv import cell_env, private_domain_id

    env = cell_env(private_domain_id() if args.domain_id is None else args.domain_id)
    os.environ.update(env)
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from differad_edge_msgs.msg import InspectionResult
    from differad_edge_ros.spin import make_executor, spin_until_shutdown
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CompressedImage, Image

    args.out.mkdir(parents=True, exist_ok=True)
    frames = make_frames(args.seed)
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="differad-soak-store-") as tmp:
        store = Path(tmp) / "store"
        make_store(store)
        rclpy.init()
        client = Node("differad_soak")
        spinner = make_executor("single_threaded", client)
        stop = threading.Event()
        spin = threading.Thread(target=spin_until_shutdown, args=(spinner,), kwargs={"stop": stop}, daemon=True)
        spin.start()
        targets: list[Target] = []
        try:
            specs = [("soak_raw", Image, "camera", raw_kinds(frames), {})]
            if not args.no_compressed:
                specs.append(
                    (
                        "soak_jpeg",
                        CompressedImage,
                        "camera/compressed",
                        compressed_kinds(frames),
                        {"input": "compressed"},
                    )
                )
            for name, msg_type, topic, kinds, extra in specs:
                proc, log = start_node(name, store, env, args.out, **extra)
                t = Target(name, proc, log, client.create_publisher(msg_type, f"/{name}/{topic}", 10), kinds)
                client.create_subscription(InspectionResult, f"/{name}/result", t.on_result, QoSProfile(depth=200))
                targets.append(t)
            client.create_subscription(
                DiagnosticArray, "/diagnostics", lambda m: [t.on_diagnostics(m) for t in targets], 50
            )
            for t in targets:
                wait_ready(t)
            time.sleep(1.0)  # the nodes' publishers match this client's subscriptions a moment later
            controller = Controller(client, targets[0].name, args.control_period, stop)
            t0 = time.monotonic()

            def sample() -> None:
                while not stop.wait(args.sample_period):
                    loads.append(os.getloadavg()[0])
                    for t in targets:
                        if t.proc.poll() is not None and t.died_at is None:
                            t.died_at = time.monotonic() - t0
                        value = rss_mb(t.proc.pid)
                        if value is not None:
                            t.rss.append((time.monotonic() - t0, value))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            controller.start()
            n = int(args.duration * args.fps)
            plans = [schedule(list(t.kinds), n, args.seed + k) for k, t in enumerate(targets)]
            for i in range(n):
                for k, t in enumerate(targets):
                    if k == 0 or i % 2 == 0:  # the compressed node at half the rate
                        t.publish(i, plans[k][i], controller.part)
                delay = t0 + (i + 1) / args.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            seconds = time.monotonic() - t0
            time.sleep(3.0)  # the last results and a final /diagnostics
            alive = {t.name: t.proc.poll() is None for t in targets}
        finally:
            stop.set()
            for t in targets:
                if t.proc.poll() is None:
                    t.proc.send_signal(signal.SIGINT)
                try:
                    t.exit_code = t.proc.wait(30)
                except subprocess.TimeoutExpired:
                    t.proc.kill()
                    t.exit_code = t.proc.wait()
            spinner.shutdown()
            client.destroy_node()
            rclpy.try_shutdown()
    return summarize(args, targets, controller, alive, seconds, loads)


def _rss_figures(rss: list[tuple[float, float]], duration: float) -> dict[str, float]:
    """Start / end / max over the samples after the warm-up (a fifth of the run, at most 30 s), and the
    slope of a least-squares line through them in MB/min."""
    a = np.array(rss) if rss else np.zeros((0, 2))
    steady = a[a[:, 0] >= min(30.0, duration / 5)] if len(a) else a
    if len(steady) < 3:
        steady = a
    if not len(steady):
        return {"start": float("nan"), "end": float("nan"), "max": float("nan"), "slope": float("nan"), "n": 0}
    slope = float(np.polyfit(steady[:, 0], steady[:, 1], 1)[0] * 60) if len(steady) > 2 else float("nan")
    return {
        "start": float(steady[0, 1]),
        "end": float(steady[-1, 1]),
        "max": float(steady[:, 1].max()),
        "slope": slope,
        "n": len(steady),
        "first": float(a[0, 1]),
    }


def summarize(args, targets: list[Target], controller: Controller, alive: dict, seconds: float, loads) -> dict:
    nodes = {}
    for t in targets:
        per_kind: dict[str, dict[str, Any]] = {}
        for kind in t.kinds:
            keys = [k for k in t.order if t.sent[k][0] == kind]
            got = [t.results[k] for k in keys if k in t.results]
            verdicts = Counter(f"{v}/{r}" if r else v for v, r, _p, _t in got)
            expected = {"good": "OK", "defect": "NG"}.get(kind)
            own = [g for k, g in zip([k for k in keys if k in t.results], got, strict=True) if g[2] == t.sent[k][1]]
            per_kind[kind] = {
                "sent": len(keys),
                "results": len(got),
                "verdicts": dict(verdicts),
                "correct": sum(g[0] == expected for g in own) if expected else None,
                "judged": len(own) if expected else None,  # inspected against the product they show
            }
        # good / defective frames right after a bad one: still answered?
        after_bad = [
            k
            for prev, k in zip(t.order, t.order[1:], strict=False)
            if t.sent[k][0] in INSPECTED and t.sent[prev][0] not in INSPECTED
        ]
        answered_after_bad = sum(k in t.results for k in after_bad)
        times = sorted(r[3] for k, r in t.results.items() if t.sent[k][0] in INSPECTED and r[0] in ("OK", "NG"))
        gap = float(np.diff(times).max()) if len(times) > 1 else float("nan")
        last_quarter = [k for k in t.order[int(len(t.order) * 0.75) :] if t.sent[k][0] in INSPECTED]
        traceback = t.log.read_text(errors="replace").count("Traceback")
        d = t.diagnostics
        nodes[t.name] = {
            "kinds": per_kind,
            "after_bad_sent": len(after_bad),
            "after_bad_answered": answered_after_bad,
            "last_quarter_sent": len(last_quarter),
            "last_quarter_answered": sum(k in t.results for k in last_quarter),
            "longest_gap_s": gap,
            "unmatched_results": dict(t.unmatched),
            "diagnostics": {
                k: d.get(k, "?")
                for k in (
                    "frames_in",
                    "frames_processed",
                    "frames_dropped",
                    "bad_frames",
                    "not_inspected",
                    "engine_errors",
                    "anomalies",
                    "message",
                )
            },
            "rss": _rss_figures(t.rss, seconds),
            "alive_at_end": alive[t.name],
            "died_at_s": t.died_at,
            "exit_code": t.exit_code,
            "tracebacks": traceback,
        }
    ok = all(
        n["alive_at_end"]
        and n["exit_code"] == 0
        and n["tracebacks"] == 0
        and n["after_bad_sent"] > 0
        and n["after_bad_answered"] >= args.min_after_bad * n["after_bad_sent"]
        for n in nodes.values()
    )
    return {
        "duration_s": seconds,
        "fps": args.fps,
        "load_avg": {"start": loads[0], "mean": float(np.mean(loads)), "max": float(max(loads))},
        "cpus": os.cpu_count(),
        "nodes": nodes,
        "controls": {k: dict(v) for k, v in controller.outcomes.items()},
        "control_errors": controller.errors,
        "passed": ok,
    }


# ---- report -------------------------------------------------------------------------------------------------
def _f(v: float, fmt: str = ".1f") -> str:
    return "n/a" if v != v else format(v, fmt)


def render(s: dict) -> str:
    lines = []
    for name, n in s["nodes"].items():
        lines += [f"**{name}**", "", "| kind | sent | results | verdicts (reason) |", "| --- | ---: | ---: | --- |"]
        for kind, k in n["kinds"].items():
            verdicts = ", ".join(f"{v} {c}" for v, c in sorted(k["verdicts"].items()))
            if k["correct"] is not None:
                verdicts += f"; correct {k['correct']}/{k['judged']}"
            lines.append(f"| {kind} | {k['sent']} | {k['results']} | {verdicts} |")
        d, r = n["diagnostics"], n["rss"]
        unmatched = ", ".join(f"{k} {v}" for k, v in sorted(n["unmatched_results"].items())) or "none"
        lines += [
            "",
            "| metric | value |",
            "| --- | --- |",
            f"| good/defective frames sent right after a bad one, answered | "
            f"{n['after_bad_answered']} / {n['after_bad_sent']} |",
            f"| good/defective frames of the last quarter, answered | "
            f"{n['last_quarter_answered']} / {n['last_quarter_sent']} |",
            f"| longest gap between OK/NG results s | {_f(n['longest_gap_s'], '.2f')} |",
            f"| results without a sent stamp (unreadable CDR) | {unmatched} |",
            f"| /diagnostics frames in / processed / dropped (keep-latest) | "
            f"{d['frames_in']} / {d['frames_processed']} / {d['frames_dropped']} |",
            f"| /diagnostics bad frames / not inspected / engine errors | "
            f"{d['bad_frames']} / {d['not_inspected']} / {d['engine_errors']} |",
            f"| RSS first sample / after warm-up / end / max MB | {_f(r.get('first', float('nan')), '.0f')} / "
            f"{_f(r['start'], '.0f')} / {_f(r['end'], '.0f')} / {_f(r['max'], '.0f')} |",
            f"| RSS slope MB/min (least squares, {r['n']} samples after warm-up) | {_f(r['slope'], '.2f')} |",
            f"| alive at the end / exit code on SIGINT / tracebacks in its log | "
            f"{'yes' if n['alive_at_end'] else 'NO, died at ' + _f(n['died_at_s']) + ' s'} / {n['exit_code']} / "
            f"{n['tracebacks']} |",
            "",
        ]
    lines += ["**parameter and product abuse (raw node)**", "", "| what | outcome |", "| --- | --- |"]
    for what, c in s["controls"].items():
        lines.append(f"| {what} | " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) + " |")
    return "\n".join(lines)


def record(args: argparse.Namespace, table: str, s: dict) -> None:
    """Replace this soak's section of RESULTS.md (from its heading to the next ``## ``), or append it."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = f".venv/bin/python bench/ros_soak.py --duration {args.duration:g} --fps {args.fps:g} --record"
    la = s["load_avg"]
    text = (
        f"{SECTION}\n\n{when}: `{cmd}` on {platform.node()} ({s['cpus']} CPU shared with other jobs, load average "
        f"{la['start']:.1f} at start, mean {la['mean']:.1f}, max {la['max']:.1f}), {s['duration_s']:.0f} s. Real node "
        f"processes on a private DDS domain (Fast DDS SHM profile), golden engine, {SIZE}x{SIZE} frames; raw node at "
        f"{args.fps:g} fps, compressed node at half that; 40 % good, 15 % defective, 45 % bad frames; a parameter or "
        f"product abuse every {args.control_period:g} s. A frame dropped by the keep-latest slot has no result "
        f"(counted in `frames_dropped`). Verdict: **{'passed' if s['passed'] else 'FAILED'}**.\n\n{table}\n"
    )
    old = args.results.read_text(encoding="utf-8") if args.results.exists() else "# Benchmark results\n"
    if SECTION in old:
        head, rest = old.split(SECTION, 1)
        nxt = rest.find("\n## ")
        new = head + text + (rest[nxt:] if nxt >= 0 else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    from differad_edge.fileio import atomic_write_text

    atomic_write_text(args.results, new)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    try:
        s = run(args)
    except RuntimeError as e:
        print(f"ros_soak: error: {e}", file=sys.stderr)
        return 1
    table = render(s)
    print(table)
    print(f"\nverdict: {'passed' if s['passed'] else 'FAILED'}")
    for e in s["control_errors"][:10]:
        print(f"  control not as expected: {e}")
    if args.json:
        args.json.write_text(json.dumps(s, indent=1, default=str))
    if args.record:
        record(args, table, s)
    return 0 if s["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
