"""The inspector node as a real process over real DDS: boxes, headers, encodings, bad frames,
product switching, version pick-up, clean shutdown and parameter validation."""

from __future__ import annotations

import signal
import subprocess
import time

import numpy as np
import pytest
from differad_edge_ros.conversions import DEFECT_CLASS_ID, ENCODINGS, array_to_compressed, array_to_image, detection_box
from differad_edge_ros.scene import make_frames
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import Image
from std_msgs.msg import String

from differad_edge.boxes import iou

from .conftest import inspector_command, stop

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def _defect_and_good(reference: np.ndarray):
    frames = make_frames(reference, 8, defect_rate=0.5, seed=11)
    defects = [f for f in frames if not f.box.is_zero]
    goods = [f for f in frames if f.box.is_zero]
    assert defects
    assert goods
    return defects, goods


@pytest.mark.parametrize("executor", ["events", "single_threaded"])
def test_detections_carry_the_frame_header_and_the_true_box(start_inspector, references, executor):
    node = start_inspector(f"insp_boxes_{executor}", executor=executor)
    defects, goods = _defect_and_good(references["part-a"])
    for i, frame in enumerate(defects + goods):
        header = node.header(frame_id=f"cam_{i}")
        out = node.inspect(array_to_image(frame.image, "rgb8", header=header))
        assert out.header.frame_id == f"cam_{i}"
        assert (out.header.stamp.sec, out.header.stamp.nanosec) == (header.stamp.sec, header.stamp.nanosec)
        if frame.box.is_zero:
            assert list(out.detections) == []  # a good part: empty array
            continue
        assert len(out.detections) == 1
        det = out.detections[0]
        assert det.header.frame_id == f"cam_{i}"
        assert det.results[0].hypothesis.class_id == DEFECT_CLASS_ID
        assert 0.0 < det.results[0].hypothesis.score <= 1.0
        assert iou(detection_box(det), frame.box) >= 0.7, (detection_box(det), frame.box)


@pytest.mark.parametrize(
    ("transport", "product", "encodings"),
    [
        ("raw", "part-a", ["rgb8", "bgr8", "rgba8", "bgra8"]),
        ("raw", "part-gray", ["mono8", "mono16"]),  # a mono camera has a mono reference
        ("compressed", "part-a", ["jpeg", "png"]),
    ],
    ids=["color", "mono", "compressed"],
)
def test_every_encoding_yields_the_true_box(start_inspector, client, references, transport, product, encodings):
    name = f"insp_{product.replace('-', '_')}_{transport}"
    annotated = client.inbox(Image, f"/{name}/annotated")
    node = start_inspector(name, input=transport, product_id=product, publish_annotated=True)
    defect = make_frames(references[product], 8, defect_rate=0.5, seed=11)
    frame = next(f for f in defect if not f.box.is_zero)
    for enc in encodings:
        header = node.header(frame_id=enc)
        msg = (
            array_to_image(frame.image, enc, header=header)
            if transport == "raw"
            else array_to_compressed(frame.image, enc, header=header)
        )
        out = node.inspect(msg)
        assert len(out.detections) == 1, enc
        assert iou(detection_box(out.detections[0]), frame.box) >= 0.7, enc
        drawn = annotated.wait_for(lambda m, h=header: m.header.stamp == h.stamp)  # the optional annotated image
        assert (drawn.width, drawn.height, drawn.encoding) == (frame.image.shape[1], frame.image.shape[0], "rgb8")
    assert sorted(ENCODINGS) == ["bgr8", "bgra8", "mono16", "mono8", "rgb8", "rgba8"]  # all covered above


def test_bad_frames_are_counted_and_do_not_kill_the_node(start_inspector, references, store):
    node = start_inspector("insp_bad")
    good = references["part-a"]
    unsupported = array_to_image(good, "rgb8", header=node.header())
    unsupported.encoding = "yuv422"
    truncated = array_to_image(good, "rgb8", header=node.header())
    truncated.data = truncated.data[:1000]
    bad_step = array_to_image(good, "rgb8", header=node.header())
    bad_step.step = bad_step.width * 3 - 1
    wrong_size = array_to_image(good[:128, :128], "rgb8", header=node.header())  # reference is 256x256
    cases = [(unsupported, "yuv422"), (truncated, "truncated"), (bad_step, "step"), (wrong_size, "128x128")]
    # one good frame first (resent if the best-effort camera QoS loses it while discovery settles), so
    # each bad frame below is sent exactly once into a flowing pipeline and counted exactly once
    node.inspect(array_to_image(good, "rgb8", header=node.header()))
    for msg, reason in cases:  # each bad frame is answered: NOT_INSPECTED with its reason, never silence
        node.publisher.publish(msg)  # one at a time: the keep-latest slot would drop a burst
        r = node.result(msg.header)
        assert r.verdict_name == "NOT_INSPECTED", r.message
        assert reason in r.message, r.message
        assert r.reason == ("size_mismatch" if reason == "128x128" else "bad_frame")
    values = node.diag(lambda v: v["bad_frames"] == "3")
    assert "128x128" in values["last_error"]  # the latest problem
    assert node.proc.poll() is None

    # a reference whose file was tampered with: NOT_INSPECTED(no_reference), not a dead node
    v2 = store.add_version("part-a", good)
    store.set_validation("part-a", v2, True, {})
    store.promote("part-a", v2)
    (store.root / "part-a" / "versions" / v2 / "reference.png").write_bytes(b"tampered")
    h = node.header()
    node.publisher.publish(array_to_image(good, "rgb8", header=h))
    r = node.result(h)
    assert (r.verdict_name, r.reason) == ("NOT_INSPECTED", "no_reference")
    assert "checksum" in r.message.lower() or "sha" in r.message.lower(), r.message
    values = node.diag(lambda v: v["not_inspected"] == "2")  # the 128x128 frame and this one
    assert values["bad_frames"] == "3"

    store.rollback("part-a")  # back to v0001: the node inspects again
    out = node.inspect(array_to_image(good, "rgb8", header=node.header()))
    assert list(out.detections) == []
    values = node.diag(lambda v: v["frames_processed"] == "3")
    assert values["reference_version"] == "v0001"
    assert float(values["latency_p50_ms"]) > 0.0
    assert node.proc.poll() is None


def _set_product(client, node_name: str, product_id: str):
    cli = client.node.create_client(SetParameters, f"/{node_name}/set_parameters")
    assert cli.wait_for_service(timeout_sec=20.0)
    value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=product_id)
    future = cli.call_async(SetParameters.Request(parameters=[ParameterMsg(name="product_id", value=value)]))
    deadline = time.monotonic() + 20.0
    while not future.done():  # the client's executor thread completes the future
        assert time.monotonic() < deadline, "set_parameters timed out"
        time.sleep(0.02)
    client.node.destroy_client(cli)
    return future.result().results[0]


def test_switching_product_and_promoting_a_version_change_the_reference(start_inspector, references, store, client):
    node = start_inspector("insp_switch")
    part_b = references["part-b"]

    def found(image) -> bool:  # NG: every defect is a detection (a different part has several)
        out = node.inspect(array_to_image(image, "rgb8", header=node.header()))
        return len(out.detections) >= 1 and out.detections[0].results[0].hypothesis.class_id == DEFECT_CLASS_ID

    assert found(part_b)  # part b against part a's reference: a defect

    topic = client.node.create_publisher(String, "/insp_switch/product_id", 10)
    topic.publish(String(data="part-b"))  # the cell controller's topic
    node.diag(lambda v: v["product_id"] == "part-b")
    assert not found(part_b)

    assert _set_product(client, "insp_switch", "part-a").successful  # the parameter, at run time
    assert found(part_b)
    refused = _set_product(client, "insp_switch", "part-zz")
    assert not refused.successful
    assert "part-zz" in refused.reason
    assert found(part_b)  # still part a

    v2 = store.add_version("part-a", part_b)  # a newly promoted version is picked up without restart
    store.set_validation("part-a", v2, True, {})
    store.promote("part-a", v2)
    assert not found(part_b)
    assert node.diag(lambda v: v["reference_version"] == v2)["product_id"] == "part-a"


@pytest.mark.parametrize("executor", ["events", "single_threaded"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_shut_the_node_down_cleanly(start_inspector, references, sig, executor):
    node = start_inspector(f"insp_{sig.name.lower()}_{executor}", executor=executor)
    node.inspect(array_to_image(references["part-a"], "rgb8", header=node.header()))
    assert stop(node.proc, sig) == 0
    assert "Traceback" not in node.output()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"engine": "nope"}, "engine='nope'"),
        ({"engine": "vlm"}, "needs a model"),
        ({"product_id": "part-zz"}, "part-zz"),
        ({"store": "/nonexistent/store"}, "/nonexistent/store"),
        ({"align": "sideways"}, "align='sideways'"),
        ({"latency_window": "abc"}, "latency_window"),
        ({"executor": "multi"}, "executor='multi'"),
        ({"cv_threads": -1}, "cv_threads=-1"),
    ],
)
def test_invalid_parameters_exit_non_zero_with_a_clear_message(store, ros_env, override, message):
    params = {"store": str(store.root), "product_id": "part-a", **override}
    done = subprocess.run(
        inspector_command(params, "insp_invalid"), env=ros_env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("engine", ["vlm", "onnx"])
def test_model_engines_run_behind_the_node(start_inspector, references, request, engine):
    """The node is engine-agnostic: a (random-weight) Qwen3-VL, in PyTorch or as an ONNX bundle, answers
    every frame; whatever it says, a Detection2DArray with the frame's header comes back and
    /diagnostics names the engine."""
    model = request.getfixturevalue("tiny_model_dir" if engine == "vlm" else "onnx_bundle")
    node = start_inspector(
        f"insp_{engine}", engine=engine, model=str(model), engine_options="'{\"max_new_tokens\": 8}'"
    )  # YAML-quoted JSON
    header = node.header(frame_id=f"{engine}_cam")
    out = node.inspect(array_to_image(references["part-a"], "rgb8", header=header), timeout=120)
    assert out.header.frame_id == f"{engine}_cam"
    assert len(out.detections) <= 1
    values = node.diag(lambda v: v["frames_processed"] == "1")
    assert values["engine"] == engine
    assert values["engine_errors"] == "0"
