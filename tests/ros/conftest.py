"""Fixtures for the ROS 2 tests: a private DDS domain, an in-process rclpy client, and inspector
nodes started as real processes (``python -m differad_edge_ros.node``) on that domain."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (bash scripts/build_vision_msgs.sh .venv)")
pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built (bash scripts/build_vision_msgs.sh .venv)")
pytest.importorskip(
    "differad_edge_msgs.msg", reason="differad_edge_msgs not built (bash scripts/build_vision_msgs.sh .venv)"
)

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from differad_edge_msgs.msg import InspectionResult
from differad_edge_ros.rosenv import cell_env
from differad_edge_ros.scene import make_product
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from differad_edge.images import to_gray, to_rgb8
from differad_edge.store import ReferenceStore

SIZE = 256
PRODUCTS = {"part-a": 0, "part-b": 5}  # product id -> make_product seed (different parts)
READY_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def ros_env() -> dict[str, str]:
    """This process and every child on one private, localhost-only domain with the SHM profile."""
    env = cell_env(domain_id=int(os.environ.get("DIFFERAD_TEST_DOMAIN", 1 + (os.getpid() + 50) % 100)))
    os.environ.update(
        {
            k: env[k]
            for k in (
                "ROS_DOMAIN_ID",
                "ROS_AUTOMATIC_DISCOVERY_RANGE",
                "FASTDDS_DEFAULT_PROFILES_FILE",
                "RMW_IMPLEMENTATION",
            )
        }
    )
    return env


@pytest.fixture(scope="session")
def references() -> dict[str, Any]:
    """part-a and part-b differ; part-gray is part-a seen by a monochrome camera."""
    refs = {pid: make_product(SIZE, seed) for pid, seed in PRODUCTS.items()}
    refs["part-gray"] = to_rgb8(to_gray(refs["part-a"]), "gray")
    return refs


@pytest.fixture()
def store(tmp_path: Path, references: dict[str, Any]) -> ReferenceStore:
    """A fresh store with every reference promoted (version v0001)."""
    s = ReferenceStore(tmp_path / "store")
    for pid, image in references.items():
        v = s.add_version(pid, image)
        s.set_validation(pid, v, True, {"test": True})
        s.promote(pid, v)
    return s


@dataclass
class Inbox:
    """Messages received on one topic, with a condition to wait on."""

    items: list[Any] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, msg: Any) -> None:
        with self.cond:
            self.items.append(msg)
            self.cond.notify_all()

    def wait_for(self, pred: Callable[[Any], bool], timeout: float = 20.0) -> Any:
        """The first message (old or new) matching ``pred``; fails the test on timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.items:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching message within {timeout} s ({len(self.items)} received)")
                self.cond.wait(left)


class Client:
    """The test's own rclpy node, spun in a background thread."""

    def __init__(self) -> None:
        self.node = Node("differad_test_client")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def inbox(self, msg_type: Any, topic: str) -> Inbox:
        box = Inbox()
        self.node.create_subscription(msg_type, topic, box.add, QoSProfile(depth=100))
        return box

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture(scope="session")
def client(ros_env: dict[str, str]) -> Iterator[Client]:
    rclpy.init()
    c = Client()
    yield c
    c.close()
    rclpy.try_shutdown()


@dataclass
class InspectorProcess:
    name: str
    proc: subprocess.Popen
    publisher: Any
    detections: Inbox
    diagnostics: Inbox
    log: Path
    results: Inbox | None = None
    _stamps: itertools.count = field(default_factory=lambda: itertools.count(1))

    def header(self, frame_id: str = "camera") -> Header:
        """A header with a stamp no other frame of this test uses (seconds 1000, 1001, ...)."""
        h = Header(frame_id=frame_id)
        n = next(self._stamps)
        h.stamp.sec, h.stamp.nanosec = 1000 + n, 1000 * n
        return h

    def inspect(self, msg: Any, timeout: float = 20.0, attempts: int = 3) -> Detection2DArray:
        """Publish a frame and wait for the detections carrying its stamp.

        The camera QoS is best effort, so a frame lost on a loaded machine is sent again (same
        stamp) before the test fails; the answer must still carry exactly this header.
        """
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        for attempt in range(attempts):
            self.publisher.publish(msg)
            try:
                return self.detections.wait_for(
                    lambda d: (d.header.stamp.sec, d.header.stamp.nanosec) == key, timeout / attempts
                )
            except AssertionError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def result(self, header: Header, timeout: float = 20.0) -> Any:
        """The ~/result (InspectionResult) carrying ``header``'s stamp."""
        key = (header.stamp.sec, header.stamp.nanosec)
        assert self.results is not None
        return self.results.wait_for(lambda r: (r.header.stamp.sec, r.header.stamp.nanosec) == key, timeout)

    def diag(self, pred: Callable[[dict[str, str]], bool], timeout: float = 20.0) -> dict[str, str]:
        """Values of this node's first /diagnostics status that satisfy ``pred`` (``level`` added)."""

        def values(msg: DiagnosticArray) -> dict[str, str] | None:
            for s in msg.status:
                if s.hardware_id == f"/{self.name}":
                    return {
                        "level": str(ord(s.level) if isinstance(s.level, bytes) else int(s.level)),
                        "message": s.message,
                        **{kv.key: kv.value for kv in s.values},
                    }
            return None

        msg = self.diagnostics.wait_for(lambda m: (v := values(m)) is not None and pred(v), timeout)
        return values(msg)

    def output(self) -> str:
        return self.log.read_text()


def inspector_command(params: dict[str, Any], name: str) -> list[str]:
    args = [x for k, v in params.items() for x in ("-p", f"{k}:={v}")]
    return [sys.executable, "-m", "differad_edge_ros.node", "--ros-args", "-r", f"__node:={name}", *args]


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 20.0) -> int:
    """Signal a process and return its exit code; kills it and fails if it hangs."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"process did not exit within {timeout} s of signal {sig}") from None
    return proc.returncode


@pytest.fixture()
def start_inspector(client: Client, store: ReferenceStore, ros_env: dict[str, str], tmp_path: Path):
    """Factory: start an inspector process, wait until it subscribed to its camera topic (= ready)."""
    started: list[InspectorProcess] = []

    def start(name: str, **params: Any) -> InspectorProcess:
        topic = f"/{name}/camera"
        full = {
            "store": str(store.root),
            "product_id": "part-a",
            "align": "none",
            "image_topic": topic,
            "diagnostics_period": 0.3,
            **params,
        }
        log = tmp_path / f"{name}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(inspector_command(full, name), env=ros_env, stdout=out, stderr=subprocess.STDOUT)
        msg_type = CompressedImage if full.get("input") == "compressed" else Image
        if full.get("input") == "compressed":
            topic = f"{topic}/compressed"  # image_transport's name; the node is given the base topic
        ip = InspectorProcess(
            name,
            proc,
            client.node.create_publisher(msg_type, topic, 10),
            client.inbox(Detection2DArray, f"/{name}/detections"),
            client.inbox(DiagnosticArray, "/diagnostics"),
            log,
            client.inbox(InspectionResult, f"/{name}/result"),
        )
        started.append(ip)
        deadline = time.monotonic() + READY_TIMEOUT
        while ip.publisher.get_subscription_count() < 1:
            assert proc.poll() is None, f"inspector exited with {proc.returncode}:\n{ip.output()}"
            assert time.monotonic() < deadline, f"inspector did not subscribe within {READY_TIMEOUT} s"
            time.sleep(0.05)
        time.sleep(0.3)  # the node's publishers match the client's subscriptions a moment later
        return ip

    yield start
    for ip in started:
        stop(ip.proc)
