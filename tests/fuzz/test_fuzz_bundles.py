"""Hostile manifests, configs, tokenizer and prompt files into ``load_bundle``, ``differad-export
--check`` and the model-folder loader. Allowed: a loaded bundle/folder or one ``BundleError`` /
``ModelLoadError`` (CLI: one line, exit 2) - never a traceback, and ``--check`` never says OK for a
bundle ``load_bundle`` refuses."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from _hostile import NASTY_FILES, dumps, json_values, mutate
from hypothesis import given
from hypothesis import strategies as st

from differad_edge.errors import BundleError, DifferadError, ModelLoadError
from differad_edge.onnxrt.bundle import BUNDLE_FORMAT_VERSION, MANIFEST_NAME, file_entries, load_bundle, write_manifest
from differad_edge.onnxrt.runtime import check_graphs
from differad_edge.prompts import NOTHINK_TEMPLATE, PROMPT_FILE


def _tokenizer_json() -> bytes:
    from tokenizers import Tokenizer, models

    return Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).to_str().encode()


def _graph(inputs: list[tuple[str, int]], outputs: list[tuple[str, int]]) -> bytes:
    """An ONNX model with no nodes: only the declared inputs and outputs the runtime checks."""
    from onnx import TensorProto, helper

    def infos(sig: list[tuple[str, int]]) -> list:
        return [helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"d{i}" for i in range(r)]) for n, r in sig]

    return helper.make_model(helper.make_graph([], "g", infos(inputs), infos(outputs))).SerializeToString()


_KV = [f"{k}_{i}" for i in range(2) for k in ("key", "value")]  # the manifest's num_layers: 2
_VISION_IN = [("pixel_values", 2), ("interp_indices", 2), ("interp_weights", 2), ("rot_pos_ids", 2), ("cu_seqlens", 1)]
_VISION_OUT = [("image_embeds", 2), ("deepstack", 3)]
_DECODER_IN = [("inputs_embeds", 3), ("attention_mask", 4), ("position_ids", 3), ("deepstack", 4), ("logits_rows", 1)]
FILES = {
    "decoder.onnx": _graph(
        _DECODER_IN + [(f"past_{kv}", 4) for kv in _KV],
        [("logits", 3)] + [(f"present_{kv}", 4) for kv in _KV],
    ),
    "vision.onnx": _graph(_VISION_IN, _VISION_OUT),
    "embeddings.npy": b"\x93NUMPY" + b"\x00" * 64,
    "tokenizer.json": _tokenizer_json(),
    PROMPT_FILE: json.dumps(NOTHINK_TEMPLATE.to_dict()).encode(),
}


def _manifest(root: Path) -> dict:
    return {
        "format_version": BUNDLE_FORMAT_VERSION,
        "exporter": {"name": "differad-export", "version": "0"},
        "source": {"path": "/m", "sha256": "0" * 64},
        "runtime": "onnx",
        "quantization": {"mode": "fp32"},
        "model": {
            "hidden_size": 64,
            "num_layers": 2,
            "num_deepstack": 1,
            "num_kv_heads": 2,
            "head_dim": 16,
            "image_token_id": 5,
            "eos_token_ids": [1, 2],
        },
        "prompt": {
            "template_id": NOTHINK_TEMPLATE.id,
            "template": NOTHINK_TEMPLATE.to_dict(),
            "text": "x",
            "segments": [[1, 2], [3]],
        },
        "generation": {"max_new_tokens": 32, "decoding": "greedy"},
        "coordinates": {"scale": 1000},
        "size_policy": {"max_pixels": 640_000, "min_pixels": 4096, "factor": 32},
        "preprocessing": {
            "patch_size": 16,
            "temporal_patch_size": 2,
            "merge_size": 2,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "rescale_factor": 1 / 255,
            "num_grid_per_side": 48,
            "interpolation_align_corners": True,
        },
        "graphs": {
            "decoder": "decoder.onnx",
            "vision": "vision.onnx",
            "embeddings": "embeddings.npy",
            "tokenizer": "tokenizer.json",
        },
        "verification": {"passed": True, "agreement": {}},
        "memory": {"total_gb": 0.1},
        "files": file_entries(root, sorted(FILES)),
    }


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bundle") / "b"
    root.mkdir()
    for name, data in FILES.items():
        (root / name).write_bytes(data)
    write_manifest(root, _manifest(root))
    check_graphs(load_bundle(root))  # the pristine bundle is valid
    return root


def _copy(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _check_cli_agrees(root: Path, capsys) -> None:
    from differad_edge.export.cli import main as export_main

    try:
        bundle = load_bundle(root)
        check_graphs(bundle)
        verified = bool((bundle.manifest.get("verification") or {}).get("passed"))
        loaded = True
    except BundleError:
        loaded = verified = False
    code = export_main(["--check", str(root)])
    out, err = capsys.readouterr()
    if loaded and verified:
        assert code == 0, err
        assert ": OK (" in out, err
    elif loaded:  # a bundle that loads but never passed verification is refused, never reported OK
        assert code == 2, err
        assert ": UNVERIFIED (" in out
        assert "did not pass export verification" in err
    else:
        assert code == 2, out
        assert "OK" not in out, out
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("differad-export: error:"), err


KEYS = [
    ["format_version"],
    ["runtime"],
    ["quantization"],
    ["quantization", "mode"],
    ["files"],
    ["files", "decoder.onnx"],
    ["files", "decoder.onnx", "sha256"],
    ["files", "decoder.onnx", "bytes"],
    ["files", "../x"],
    ["files", "/etc/passwd"],
    ["prompt"],
    ["prompt", "segments"],
    ["prompt", "template_id"],
    ["model"],
    ["model", "hidden_size"],
    ["model", "eos_token_ids"],
    ["graphs"],
    ["graphs", "decoder"],
    ["size_policy"],
    ["size_policy", "factor"],
    ["size_policy", "max_pixels"],
    ["preprocessing"],
    ["preprocessing", "patch_size"],
    ["preprocessing", "image_std"],
    ["preprocessing", "interpolation_align_corners"],
    ["generation", "max_new_tokens"],
    ["verification"],
    ["memory"],
    ["coordinates"],
    ["manifest_sha256"],
]


@given(st.sampled_from(KEYS), json_values, st.booleans())
def test_wrong_typed_manifest_fields(pristine: Path, tmp_path: Path, capsys, count, key, value, reseal: bool) -> None:
    from differad_edge.onnxrt.bundle import manifest_digest

    root = _copy(pristine, tmp_path / "b")
    data = mutate(json.loads((root / MANIFEST_NAME).read_text()), key, value)
    if reseal:
        data["manifest_sha256"] = manifest_digest(data) if key != ["manifest_sha256"] else value
    (root / MANIFEST_NAME).write_bytes(dumps(data))
    _check_cli_agrees(root, capsys)
    count("bundles")


@pytest.mark.parametrize("name", [MANIFEST_NAME, "tokenizer.json", PROMPT_FILE])
@pytest.mark.parametrize(
    "content",
    NASTY_FILES + [b"[1]", b'{"id": 1}', b'{"id": "x", "think": false, "instructions": 7}'],
    ids=range(len(NASTY_FILES) + 3),
)
def test_hostile_bytes_in_bundle_files(
    pristine: Path, tmp_path: Path, capsys, count, name: str, content: bytes
) -> None:
    """The JSON files of a bundle, damaged and then re-listed with their new checksum (the schema
    checks must hold even when the checksums agree)."""
    root = _copy(pristine, tmp_path / "b")
    (root / name).write_bytes(content)
    if name != MANIFEST_NAME:
        write_manifest(root, _manifest(root))
    _check_cli_agrees(root, capsys)
    if name != MANIFEST_NAME and content not in (b"{}", b'{"version": "v0001"'):
        with pytest.raises(BundleError):
            load_bundle(root)
    count("bundles")


@pytest.mark.parametrize("plant", ["symlink_outside", "fifo", "missing", "folder"])
@pytest.mark.parametrize("name", ["decoder.onnx", "tokenizer.json", MANIFEST_NAME])
def test_planted_links_and_special_files_in_a_bundle(
    pristine: Path, tmp_path: Path, capsys, count, plant: str, name: str
) -> None:
    root = _copy(pristine, tmp_path / "b")
    target = root / name
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(target, outside / name)
    target.unlink()
    if plant == "symlink_outside":
        target.symlink_to(outside / name)
    elif plant == "fifo":
        os.mkfifo(target)
    elif plant == "folder":
        target.mkdir()
    with pytest.raises(BundleError):
        load_bundle(root)
    _check_cli_agrees(root, capsys)
    count("bundles")


# -- model folders (vlm loader) ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_pristine(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", PROMPT_FILE])
@pytest.mark.parametrize(
    "content",
    NASTY_FILES
    + [
        b"[1]",
        b'{"model_type": "qwen3_vl", "vision_config": "x"}',
        b'{"model_type": "qwen3_vl", "image_token_id": "x"}',
    ],
    ids=range(len(NASTY_FILES) + 3),
)
def test_hostile_files_in_a_model_folder(
    model_pristine: Path, tmp_path: Path, count, name: str, content: bytes
) -> None:
    from differad_edge.vlm.loader import check_model_dir, load_processor, read_template

    root = _copy(model_pristine, tmp_path / "m")
    (root / name).write_bytes(content)
    try:
        check_model_dir(root)
        read_template(root)
        load_processor(root)
    except DifferadError as e:
        assert isinstance(e, (ModelLoadError, BundleError)) or "prompt" in str(e), e
    count("models")


def _files_entry_not_an_object(m: dict) -> None:
    m["files"]["decoder.onnx"] = "x"


def _nested(m: dict) -> None:
    m["model"] = json.loads("[" * 900 + "]" * 900)


REGRESSIONS = {  # issue 13 item 9, one by one: each loaded "fine" and crashed later, or --check said OK
    "files entry not an object": _files_entry_not_an_object,
    "bad size_policy": lambda m: m["size_policy"].update(factor="32"),
    "size_policy below its minimum": lambda m: m["size_policy"].update(min_pixels=1),
    "bad preprocessing type": lambda m: m["preprocessing"].update(patch_size="16"),
    "preprocessing unknown key": lambda m: m["preprocessing"].update(warp=1),
    "prompt segments not ints": lambda m: m["prompt"].update(segments=[["a"]]),
    "graph not listed": lambda m: m["graphs"].update(decoder="elsewhere.onnx"),
    "model field not an int": lambda m: m["model"].update(hidden_size="64"),
    "verification not an object": lambda m: m.update(verification=[1]),
    "deeply nested model": _nested,
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_issue13_bundle_regressions(pristine: Path, tmp_path: Path, capsys, count, name: str) -> None:
    root = _copy(pristine, tmp_path / "b")
    m = json.loads((root / MANIFEST_NAME).read_text())
    REGRESSIONS[name](m)
    write_manifest(root, m)  # resealed: only the schema can catch it
    with pytest.raises(BundleError):
        load_bundle(root)
    _check_cli_agrees(root, capsys)
    count("bundles")


@pytest.mark.parametrize(
    ("name", "content"),
    [(PROMPT_FILE, b"[1]"), ("tokenizer.json", b'{"garbage": true}'), (MANIFEST_NAME, b"[" * 100_000)],
)
def test_issue13_bundle_file_regressions(
    pristine: Path, tmp_path: Path, capsys, count, name: str, content: bytes
) -> None:
    root = _copy(pristine, tmp_path / "b")
    (root / name).write_bytes(content)
    if name != MANIFEST_NAME:
        write_manifest(root, _manifest(root))
    with pytest.raises(BundleError):
        load_bundle(root)
    _check_cli_agrees(root, capsys)
    count("bundles")


@pytest.mark.parametrize(
    ("name", "content", "step"),
    [
        (PROMPT_FILE, b"[1]", "template"),
        (PROMPT_FILE, b'{"id": "x", "think": false, "instructions": 7}', "template"),
        ("config.json", b"[" * 5000 + b"]" * 5000, "check"),
        ("config.json", b'{"model_type": "qwen3_vl", "vision_config": "x"}', "check"),
        ("tokenizer.json", b"\x00garbage", "check"),
        ("tokenizer.json", b'{"model": 5}', "processor"),
    ],
)
def test_issue13_model_folder_regressions(
    model_pristine: Path, tmp_path: Path, count, name: str, content: bytes, step: str
) -> None:
    from differad_edge.vlm.loader import check_model_dir, load_processor, read_template

    root = _copy(model_pristine, tmp_path / "m")
    (root / name).write_bytes(content)
    call = {"template": read_template, "check": check_model_dir, "processor": load_processor}[step]
    with pytest.raises(ModelLoadError):
        call(root)
    count("models")


def _swap(root: Path) -> None:
    vision, decoder = (root / "vision.onnx").read_bytes(), (root / "decoder.onnx").read_bytes()
    (root / "vision.onnx").write_bytes(decoder)
    (root / "decoder.onnx").write_bytes(vision)


GRAPH_DAMAGE = {  # issue 13 item 9 "swapped graphs": each re-listed with its new checksum, so only the graph check sees it
    "vision and decoder swapped": _swap,
    "decoder of bundle format 1 (2-D mask, no logits_rows)": lambda root: (root / "decoder.onnx").write_bytes(
        _graph(
            [("inputs_embeds", 3), ("attention_mask", 2), ("position_ids", 3), ("deepstack", 4)]
            + [(f"past_{kv}", 4) for kv in _KV],
            [("logits", 3)] + [(f"present_{kv}", 4) for kv in _KV],
        )
    ),
    "decoder of a one-layer export": lambda root: (root / "decoder.onnx").write_bytes(
        _graph(_DECODER_IN, [("logits", 3)])
    ),
    "vision outputs in the other order": lambda root: (root / "vision.onnx").write_bytes(
        _graph(_VISION_IN, [("deepstack", 3), ("image_embeds", 2)])
    ),
    "a vision input missing": lambda root: (root / "vision.onnx").write_bytes(_graph(_VISION_IN[:4], _VISION_OUT)),
    "a rank changed": lambda root: (root / "vision.onnx").write_bytes(
        _graph([("pixel_values", 3), *_VISION_IN[1:]], _VISION_OUT)
    ),
    "truncated graph": lambda root: (root / "decoder.onnx").write_bytes(FILES["decoder.onnx"][:57]),
    "not protobuf": lambda root: (root / "vision.onnx").write_bytes(b"\x08\x07" * 32),
    "empty graph file": lambda root: (root / "vision.onnx").write_bytes(b""),
}


@pytest.mark.parametrize("name", sorted(GRAPH_DAMAGE))
def test_issue13_swapped_or_foreign_graphs_are_refused(
    pristine: Path, tmp_path: Path, capsys, count, name: str
) -> None:
    root = _copy(pristine, tmp_path / "b")
    GRAPH_DAMAGE[name](root)
    write_manifest(root, _manifest(root))
    load_bundle(root)  # every checksum agrees ...
    with pytest.raises(BundleError, match=r"bundle graph .*(vision|decoder)\.onnx"):
        check_graphs(load_bundle(root))  # ... the graphs' inputs and outputs do not
    _check_cli_agrees(root, capsys)
    count("bundles")


def test_swapped_graphs_name_the_graph_and_expected_vs_actual(
    pristine: Path, tmp_path: Path, export_check_refuses
) -> None:
    root = _copy(pristine, tmp_path / "b")
    _swap(root)
    write_manifest(root, _manifest(root))
    with pytest.raises(BundleError) as e:
        check_graphs(load_bundle(root))
    msg = str(e.value)
    assert "vision.onnx" in msg
    assert "expected inputs [pixel_values:2d" in msg
    assert "the file has inputs [inputs_embeds:3d, attention_mask:4d" in msg
    assert "outputs [logits:3d, present_key_0:4d" in msg
    assert "re-export the bundle" in msg
    out, line = export_check_refuses(root)
    assert line.startswith("differad-export: error: bundle graph vision.onnx"), line
    assert "OK" not in out


@given(st.sampled_from(["vision.onnx", "decoder.onnx"]), st.binary(max_size=200), st.integers(0, 400))
def test_hostile_bytes_in_graph_files(
    pristine: Path, tmp_path: Path, capsys, count, name, junk: bytes, at: int
) -> None:
    """A graph file cut, spliced with random bytes or replaced by them: read or refused, never a crash."""
    root = _copy(pristine, tmp_path / "b")
    good = FILES[name]
    (root / name).write_bytes(good[: at % (len(good) + 1)] + junk)
    write_manifest(root, _manifest(root))
    try:
        check_graphs(load_bundle(root))
    except BundleError as e:
        assert name in str(e)
    _check_cli_agrees(root, capsys)
    count("bundles")
