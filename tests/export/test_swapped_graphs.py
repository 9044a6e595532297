"""Issue 13 item 9: a bundle whose vision and decoder graph files are swapped (checksums re-listed, so
every checksum passes) is refused at load by ONNX Runtime's own view of the graphs and by
``differad-export --check`` (one error line, exit 2), naming the graph and its expected vs actual
inputs/outputs - not loaded "fine" to fail in the first inference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from differad_edge.errors import BundleError
from differad_edge.onnxrt import load_bundle
from differad_edge.onnxrt.bundle import file_entries, write_manifest
from differad_edge.onnxrt.runtime import BundleRunner, check_graphs, graph_signature


def _swapped(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    vision, decoder = (dst / "vision.onnx").read_bytes(), (dst / "decoder.onnx").read_bytes()
    (dst / "vision.onnx").write_bytes(decoder)
    (dst / "decoder.onnx").write_bytes(vision)
    m = json.loads((dst / "manifest.json").read_text())
    m["files"] = file_entries(dst, list(m["files"]))
    write_manifest(dst, m)
    return dst


@pytest.mark.parametrize("quant", ["fp32", "int4"])
def test_the_exported_graphs_have_the_signature_the_runtime_expects(request, quant: str) -> None:
    import onnxruntime as ort

    bundle: Path = request.getfixturevalue(f"{quant}_bundle")
    check_graphs(load_bundle(bundle))
    for name in ("vision.onnx", "decoder.onnx"):  # the protobuf reader lists what ONNX Runtime lists
        s = ort.InferenceSession(str(bundle / name), providers=["CPUExecutionProvider"])
        inputs, outputs = graph_signature(bundle / name)
        assert inputs == [(i.name, len(i.shape)) for i in s.get_inputs()]
        assert outputs == [(o.name, len(o.shape)) for o in s.get_outputs()]


def test_swapped_graphs_fail_at_load_naming_the_graph(fp32_bundle: Path, tmp_path: Path, export_check_refuses) -> None:
    from differad_edge.engines import create_engine

    root = _swapped(fp32_bundle, tmp_path / "swapped")
    bundle = load_bundle(root)  # every checksum agrees
    with pytest.raises(BundleError) as e:
        BundleRunner(bundle, providers=["CPUExecutionProvider"])
    msg = str(e.value)
    assert "bundle graph vision.onnx" in msg
    assert "expected inputs [pixel_values:2d, interp_indices:2d" in msg
    assert "outputs [image_embeds:2d, deepstack:3d]" in msg
    assert "the file has inputs [inputs_embeds:3d" in msg
    assert "re-export the bundle" in msg
    with pytest.raises(BundleError, match="bundle graph vision.onnx"):
        create_engine("onnx", model=root)
    out, line = export_check_refuses(root)
    assert line.startswith("differad-export: error: bundle graph vision.onnx"), line
    assert "OK" not in out
