"""Exported bundles against the PyTorch source (vlm engine), and the refusals (tampering, budget, agreement)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from differad_edge.export.cli import main as export_main
from differad_edge.export.exporter import source_hash
from differad_edge.export.verify_set import synthetic_pairs

import differad_edge
from differad_edge.engines import Reference, create_engine
from differad_edge.errors import BundleError, EngineError, ModelLoadError
from differad_edge.fileio import sha256_file
from differad_edge.onnxrt import load_bundle
from differad_edge.onnxrt.bundle import BUNDLE_FORMAT_VERSION, manifest_digest
from differad_edge.prompts import get_template

pytestmark = pytest.mark.slow

PAIRS = synthetic_pairs(3, 256, seed=7)  # not the export's verify pairs (seed 0)


@pytest.fixture(scope="module")
def vlm(tiny_model_dir):
    engine = create_engine("vlm", model=tiny_model_dir, size_policy={"max_pixels": 256 * 256})
    yield engine
    engine.close()


@pytest.mark.parametrize(
    ("reference_cache", "io_binding"),
    [(True, False), (False, False), (True, True)],
    ids=["cached", "uncached", "cached-iobinding"],
)  # io binding = the GPU path's KV handling
def test_fp32_bundle_gives_the_pytorch_tokens(fp32_bundle, vlm, reference_cache, io_binding):
    onnx_engine = create_engine("onnx", model=fp32_bundle, reference_cache=reference_cache, io_binding=io_binding)
    for ref, tgt in PAIRS:
        reference = Reference(ref)
        hv, ho = vlm.prepare(reference), onnx_engine.prepare(reference)
        torch_tokens = vlm.generate(hv, [vlm.size_policy.apply(tgt)]).tokens[0]
        assert len(torch_tokens) > 3
        assert onnx_engine.tokens(ho, tgt) == torch_tokens
        dv, do = vlm.detect(hv, tgt), onnx_engine.detect(ho, tgt)
        assert (do.text, do.valid, do.box) == (dv.text, dv.valid, dv.box)
        assert do.engine == "onnx"
        assert do.timings_ms["total"] > 0
        assert do.score == pytest.approx(dv.score, abs=1e-4)
    assert (ho.prefix is not None) is reference_cache


def test_manifest_describes_the_bundle(fp32_bundle, tiny_model_dir):
    m = json.loads((fp32_bundle / "manifest.json").read_text())
    assert m["format_version"] == BUNDLE_FORMAT_VERSION
    assert m["runtime"] == "onnx"
    assert m["quantization"]["mode"] == "fp32"
    assert m["model"]["architecture"] == "Qwen3VLForConditionalGeneration"
    assert m["model"]["model_type"] == "qwen3_vl"
    assert m["exporter"]["name"] == "differad-export"
    assert m["exporter"]["version"] == differad_edge.__version__
    assert m["manifest_sha256"] == manifest_digest(m)
    assert m["source"]["sha256"] == source_hash(tiny_model_dir)
    stored = json.loads((tiny_model_dir / "differad_prompt.json").read_text())
    assert m["prompt"]["template"] == get_template(stored["id"]).to_dict()
    assert m["prompt"]["text"].count("<|image_pad|>") == 2
    assert m["coordinates"]["scale"] == 1000
    assert m["size_policy"]["max_pixels"] == 256 * 256
    assert set(m["files"]) == {"vision.onnx", "decoder.onnx", "embeddings.npy", "tokenizer.json"}
    for name, entry in m["files"].items():
        assert entry["sha256"] == sha256_file(fp32_bundle / name)
    v = m["verification"]
    assert v["passed"]
    assert v["agreement"]["exact_token_match"] == 1.0
    assert v["agreement"]["pairs"] == 3
    mem = m["memory"]
    assert mem["total_bytes"] == mem["weights_bytes"] + mem["kv_cache_bytes"] + mem["activations_bytes"] > 0
    assert m["tensorrt"]["built"] is False
    assert m["tensorrt"]["reason"]


def test_int4_bundle_runs_is_smaller_and_records_agreement(int4_bundle, fp32_bundle):
    b4, b32 = load_bundle(int4_bundle), load_bundle(fp32_bundle)
    assert b4.quantization == "int4"
    assert b4.manifest["quantization"]["block_size"] == 32
    ops = {n.op_type for n in onnx.load(str(int4_bundle / "decoder.onnx")).graph.node}
    assert "MatMulNBits" in ops
    size = lambda b: sum(e["bytes"] for e in b.manifest["files"].values())  # noqa: E731
    assert b4.manifest["files"]["decoder.onnx"]["bytes"] < 0.5 * b32.manifest["files"]["decoder.onnx"]["bytes"]
    assert size(b4) < size(b32)
    agreement = b4.manifest["verification"]["agreement"]
    assert agreement["pairs"] == 3
    for key in ("token_agreement", "box_iou", "decision_agreement", "exact_token_match"):
        assert 0.0 <= agreement[key] <= 1.0
    engine = create_engine("onnx", model=int4_bundle)
    ref, tgt = PAIRS[0]
    det = engine.detect(engine.prepare(Reference(ref)), tgt)
    assert det.engine == "onnx"
    assert det.text is not None
    assert det.timings_ms["decode"] > 0


def _tampered_copy(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    return copy


def test_altered_file_is_refused(fp32_bundle, tmp_path, capsys):
    copy = _tampered_copy(fp32_bundle, tmp_path)
    data = bytearray((copy / "embeddings.npy").read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in a weight
    (copy / "embeddings.npy").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"embeddings\.npy was altered"):
        create_engine("onnx", model=copy)
    assert export_main(["--check", str(copy)]) == 2
    assert "embeddings.npy was altered" in capsys.readouterr().err


def test_missing_file_and_manifest_are_refused(fp32_bundle, tmp_path, capsys):
    copy = _tampered_copy(fp32_bundle, tmp_path)
    (copy / "decoder.onnx").unlink()
    with pytest.raises(BundleError, match=r"decoder\.onnx is missing"):
        load_bundle(copy)
    (copy / "manifest.json").unlink()
    assert export_main(["--check", str(copy)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


@pytest.mark.parametrize("edit", ["prompt_ids", "drop_key"])
def test_edited_manifest_is_refused(fp32_bundle, tmp_path, capsys, edit):
    from differad_edge.cli.main import main as differad_main

    from differad_edge.images import save_image

    copy = _tampered_copy(fp32_bundle, tmp_path)
    m = json.loads((copy / "manifest.json").read_text())
    if edit == "prompt_ids":  # a different prompt with every file intact
        m["prompt"]["segments"][2] = m["prompt"]["segments"][2][:-1]
    else:
        del m["size_policy"]
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="size_policy" if edit == "drop_key" else "manifest.json was altered"):
        load_bundle(copy)
    assert export_main(["--check", str(copy)]) == 2
    img = tmp_path / "img.png"
    save_image(img, PAIRS[0][0])
    assert (
        differad_main(
            ["inspect", "--engine", "onnx", "--model", str(copy), "-r", str(img), "-t", str(img), "--no-align"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("differad: error:") == 1


def test_bad_verify_set_fails_before_the_export_work(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from differad_edge.export import exporter

    def no_export(*_a, **_k):
        raise AssertionError("the graphs were exported before the verify set was read")

    monkeypatch.setattr(exporter, "_write_onnx", no_export)
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('garbage\n{"reference": "a.png"}\n')
    out = tmp_path / "b"
    assert export_main(["--int4", "--model", str(tiny_model_dir), "--out", str(out), "--verify", str(bad)]) == 2
    assert "has no usable pairs" in capsys.readouterr().err
    assert not out.exists()


def test_over_budget_export_is_refused_with_the_numbers(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "b"
    rc = export_main(["--int4", "--model", str(tiny_model_dir), "--out", str(out), "--budget-gb", "0.001"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "exceeds the budget of 0.001 GiB" in err
    assert "KV cache" in err
    assert "GiB" in err
    assert not out.exists()


def test_missed_agreement_threshold_fails_the_export(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "b"
    rc = export_main(
        [
            "--int4",
            "--model",
            str(tiny_model_dir),
            "--out",
            str(out),
            "--verify-count",
            "2",
            "--max-pixels",
            str(128 * 128),
            "--min-token-agreement",
            "1.0",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "verification failed" in err
    assert "token_agreement" in err
    assert "random-weights model (differad_model.json)" in err  # why it cannot agree, and what to do
    assert "--no-verify-fail" in err
    assert not out.exists()
    assert not list(tmp_path.iterdir())


def test_onnx_engine_runs_without_torch(fp32_bundle, tmp_path):
    ref, tgt = PAIRS[1]
    code = (
        "import sys, numpy as np\n"
        "sys.modules['torch'] = None; sys.modules['transformers'] = None  # importing them now fails\n"
        "from differad_edge.engines import Reference, create_engine\n"
        f"e = create_engine('onnx', model={str(fp32_bundle)!r})\n"
        "d = np.load(sys.argv[1])\n"
        "det = e.detect(e.prepare(Reference(d['ref'])), d['tgt'])\n"
        "print(det.engine, len(det.text) > 0)\n"
    )
    npz = tmp_path / "pair.npz"
    np.savez(npz, ref=ref, tgt=tgt)
    out = subprocess.run([sys.executable, "-c", code, str(npz)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["onnx", "True"]


def test_torch_runtime_bundle_loads_in_the_vlm_engine(tiny_model_dir, tmp_path):
    from differad_edge.export import make_config, run_export

    cfg = make_config(
        model=tiny_model_dir,
        out=tmp_path / "nf4",
        quant="int4",
        runtime="torch",
        verify_count=1,
        max_pixels=128 * 128,
        max_new_tokens=8,
        fail_on_verify=False,
    )
    result = run_export(cfg, log=lambda _m: None)
    bundle = load_bundle(result.bundle)
    assert bundle.runtime == "torch"
    assert bundle.manifest["quantization"]["bitsandbytes"] == "nf4"
    assert "model.safetensors" in bundle.manifest["files"]
    assert (
        json.loads((result.bundle / "config.json").read_text())["quantization_config"]["bnb_4bit_quant_type"] == "nf4"
    )
    engine = create_engine("vlm", model=result.bundle, size_policy={"max_pixels": 128 * 128}, max_new_tokens=8)
    ref, tgt = PAIRS[2]
    assert engine.detect(engine.prepare(Reference(ref)), tgt).engine == "vlm"
    with pytest.raises(EngineError, match="runtime 'torch'"):
        create_engine("onnx", model=result.bundle)
    data = bytearray((result.bundle / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF  # the vlm engine checks a torch bundle's checksums too
    (result.bundle / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.safetensors was altered"):
        create_engine("vlm", model=result.bundle)


def test_vlm_engine_points_onnx_bundles_to_the_onnx_engine(fp32_bundle):
    with pytest.raises(ModelLoadError, match="onnx engine"):
        create_engine("vlm", model=fp32_bundle)


def test_graphs_above_the_protobuf_limit_use_one_external_data_file(tiny_model_dir, tmp_path, monkeypatch):
    """The 2B decoder (>2 GiB in fp32) takes this path; a tiny threshold exercises it on the tiny model."""
    from differad_edge.export import make_config, quantize, run_export

    monkeypatch.setattr(quantize, "EXTERNAL_DATA_BYTES", 10_000)
    cfg = make_config(
        model=tiny_model_dir, out=tmp_path / "b", quant="fp32", verify_count=1, max_pixels=128 * 128, max_new_tokens=8
    )
    bundle = run_export(cfg, log=lambda _m: None).bundle  # fp32: the verification demands identical tokens
    files = set(load_bundle(bundle).manifest["files"])
    assert {"decoder.onnx.data", "vision.onnx.data"} <= files
    ref, tgt = PAIRS[0]
    engine = create_engine("onnx", model=bundle)
    assert engine.detect(engine.prepare(Reference(ref)), tgt).engine == "onnx"
    data = bytearray((bundle / "decoder.onnx.data").read_bytes())
    data[0] ^= 0xFF
    (bundle / "decoder.onnx.data").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"decoder\.onnx\.data was altered"):
        load_bundle(bundle)


def test_differad_inspect_and_eval_run_a_bundle(fp32_bundle, tmp_path, capsys):
    from differad_edge.cli.main import main as differad_main

    from differad_edge.synth import generate_dataset

    pairs = generate_dataset(tmp_path / "data", count=2, seed=0, size=64, progress=False)
    assert (
        differad_main(
            [
                "eval",
                "--data",
                str(pairs),
                "--engine",
                "onnx",
                "--model",
                str(fp32_bundle),
                "--no-progress",
                "--no-align",
                "--out",
                str(tmp_path / "report"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["metrics"]["overall"]["n"] == 2
    assert report["engine"]["engine"] == "onnx"
    pair = json.loads(pairs.read_text().splitlines()[0])
    capsys.readouterr()
    assert (
        differad_main(
            [
                "inspect",
                "--engine",
                "onnx",
                "--model",
                str(fp32_bundle),
                "-r",
                str(pairs.parent / pair["reference"]),
                "-t",
                str(pairs.parent / pair["target"]),
                "--no-align",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["engine"] == "onnx"


@pytest.mark.parametrize(("quant", "marker"), [("fp16", "float16 weights"), ("int8", "MatMulInteger")])
def test_fp16_and_int8_bundles_run_and_record_agreement(tiny_model_dir, fp32_bundle, tmp_path, quant, marker):
    from differad_edge.export import make_config, run_export

    cfg = make_config(
        model=tiny_model_dir,
        out=tmp_path / quant,
        quant=quant,
        verify_count=1,
        max_pixels=128 * 128,
        max_new_tokens=6,
        fail_on_verify=False,
    )
    bundle = load_bundle(run_export(cfg, log=lambda _m: None).bundle)
    decoder = onnx.load(str(bundle.path("decoder.onnx")))
    if quant == "fp16":
        assert {t.data_type for t in decoder.graph.initializer} == {onnx.TensorProto.FLOAT16}, marker
    else:
        assert marker in {n.op_type for n in decoder.graph.node}
    fp32_decoder = load_bundle(fp32_bundle).manifest["files"]["decoder.onnx"]["bytes"]
    assert bundle.manifest["files"]["decoder.onnx"]["bytes"] < 0.8 * fp32_decoder
    assert bundle.manifest["quantization"]["mode"] == quant
    assert bundle.manifest["verification"]["agreement"]["pairs"] == 1
    engine = create_engine("onnx", model=bundle.root)
    ref, tgt = PAIRS[0]
    assert engine.detect(engine.prepare(Reference(ref)), tgt).engine == "onnx"


def test_unreadable_graph_in_a_consistent_manifest_is_a_bundle_error(fp32_bundle, tmp_path):
    from differad_edge.onnxrt.bundle import file_entries, write_manifest

    copy = _tampered_copy(fp32_bundle, tmp_path)
    (copy / "decoder.onnx").write_bytes(b"not a protobuf")  # e.g. a foreign tool re-signed a broken export
    m = json.loads((copy / "manifest.json").read_text())
    m["files"] = file_entries(copy, list(m["files"]))
    write_manifest(copy, m)
    load_bundle(copy)  # checksums and manifest are consistent ...
    with pytest.raises(BundleError, match="ONNX Runtime cannot open the graphs"):  # ... ORT is not
        create_engine("onnx", model=copy)
