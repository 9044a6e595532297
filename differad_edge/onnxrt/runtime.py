"""ONNX Runtime execution of a bundle: vision graph, decoder-with-KV-cache graph, greedy decoding.

The prompt is ``seg0 <ref image pads> seg1 <target image pads> seg2`` (token ids fixed at export).
Everything up to the target's pads depends on the reference only, so ``prefix()`` runs it once and
keeps its KV cache; ``generate()`` then runs just the target's vision features and the suffix.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engines.base import StageTimer
from ..errors import BundleError, ConfigError, EngineError, missing_extra
from ..grammar import GrammarSpec, TokenGrammar, TokenVocab, constrained_decode, grammar_for, numpy_pick
from ..lookahead import MAX_BRANCHES, TreeBatch, TreeCache
from ..prompts import PromptTemplate
from ..vlm.generation import ANSWER_END  # one stop rule for both engines (no torch import)
from .bundle import Bundle
from .preprocess import ImageSpec, image_tokens, mrope_positions, next_position, patchify, vision_host_inputs

VISION_INPUTS = ("pixel_values", "interp_indices", "interp_weights", "rot_pos_ids", "cu_seqlens")
VISION_RANKS = {"pixel_values": 2, "interp_indices": 2, "interp_weights": 2, "rot_pos_ids": 2, "cu_seqlens": 1}
#: KV positions the buffers hold beyond the answer for lookahead's branches not taken (a no-think box:
#: at most 6 lookahead passes, each of at most MAX_BRANCHES branches of 2 tokens; a thinking answer may go
#: past it, and a call beyond the buffers allocates its presents)
LOOKAHEAD_SLACK = 6 * MAX_BRANCHES * 2
ANSWER_END_WINDOW = 12  # tokens decoded to look for it (it spans a few tokens in real vocabularies)


@dataclass
class EncodedImage:
    """Vision features of one image: merged embeddings, deepstack features and its grid."""

    embeds: np.ndarray  # [n, H]
    deepstack: np.ndarray  # [n_ds, n, H]
    grid: np.ndarray  # [1, 3]


@dataclass
class PrefixState:
    """Decoder state after ``seg0 <ref pads> seg1``: KV cache, length and next rope position."""

    past: list[Any]  # numpy arrays, or OrtValues resident on the device (IO binding)
    length: int
    next_pos: int
    ref_grid: np.ndarray


@dataclass
class Generation:
    """Greedy tokens of one pair, their decoded text, and per-stage timings."""

    tokens: list[int]
    text: str
    score: float  # geometric mean of the greedy tokens' probabilities (as the vlm engine)
    timings_ms: dict[str, float] = field(default_factory=dict)
    forward_passes: int = 0  # decoder calls, the prefill included
    forced: int = 0  # tokens the answer grammar appended without a model choice


@dataclass
class KVBuffers:
    """Preallocated ping-pong KV storage of one inspection (IO binding): two flat device buffers per
    past/present tensor, each sized for ``capacity`` positions. A decoder call reads the live slot
    (``past_*`` bound at the current length) and writes ``present_*`` (length + new tokens) into the
    other one; a tensor ``[1, heads, L, head_dim]`` lies contiguous from its buffer's base, so the
    present of one call is the past of the next without a copy or an allocation."""

    slots: tuple[list[Any], list[Any]]  # OrtValues, one per past/present name, in decoder input order
    capacity: int  # positions each buffer holds
    live: int = -1  # slot holding the cache; -1: none yet (the first call reads the prefix's tensors)


def ort_errors() -> tuple[type[BaseException], ...]:
    """ONNX Runtime's exception types (pybind classes that share no base but ``Exception``)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = (
        "Fail",
        "InvalidArgument",
        "NoSuchFile",
        "NoModel",
        "EngineError",
        "RuntimeException",
        "InvalidProtobuf",
        "ModelLoaded",
        "NotImplemented",
        "InvalidGraph",
        "EPFail",
    )
    return (RuntimeError, *(getattr(state, n) for n in names if isinstance(getattr(state, n, None), type)))


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def default_providers() -> list[str]:
    """CUDA when onnxruntime-gpu offers it, CPU always last."""
    avail = available_providers()
    return [p for p in ("CUDAExecutionProvider",) if p in avail] + ["CPUExecutionProvider"]


class BundleRunner:
    """ONNX Runtime sessions + tokenizer + embedding table of an ``onnx`` bundle."""

    def __init__(
        self,
        bundle: Bundle,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        tensorrt_cache_dir: str | None = None,
        io_binding: bool | None = None,
        grammar: bool = True,
        vision_plan: bool | None = None,
        lookahead: bool | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as e:
            raise missing_extra(e.name or "onnxruntime", "onnx") from e
        if bundle.runtime != "onnx":
            raise EngineError(
                f"bundle {bundle.root} has runtime {bundle.runtime!r}; the onnx engine runs only 'onnx' bundles "
                "(use the vlm engine for a torch bundle)"
            )
        m = bundle.manifest
        self.bundle = bundle
        self.spec = ImageSpec.from_dict(m["preprocessing"])
        mc = m["model"]
        self.hidden, self.n_layers, self.n_ds = int(mc["hidden_size"]), int(mc["num_layers"]), int(mc["num_deepstack"])
        self.kv_heads, self.head_dim = int(mc["num_kv_heads"]), int(mc["head_dim"])
        self.image_token_id, self.eos = int(mc["image_token_id"]), {int(t) for t in mc["eos_token_ids"]}
        self.segments = [np.asarray(s, np.int64) for s in m["prompt"]["segments"]]
        self.max_new_tokens = int(m["generation"]["max_new_tokens"])
        graphs = m["graphs"]
        self.providers = list(providers) if providers else default_providers()
        unknown = [p for p in self.providers if p not in available_providers()]
        if unknown:
            raise EngineError(
                f"onnxruntime providers {unknown} are not available here; available: {available_providers()}"
            )
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.vision_providers = self._vision_providers(tensorrt_cache_dir)
        try:
            self.decoder = ort.InferenceSession(str(bundle.path(graphs["decoder"])), opts, providers=self.providers)
            self.vision = ort.InferenceSession(
                str(bundle.path(graphs["vision"])), opts, providers=self.vision_providers
            )
        except ort_errors() as e:
            raise BundleError(
                f"ONNX Runtime cannot open the graphs of {bundle.root} ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:300]}); re-export the bundle with this SDK"
            ) from e
        for role, session in (("vision", self.vision), ("decoder", self.decoder)):
            check_signature(bundle, role, _session_signature(session))
        self.embeddings = np.load(bundle.path(graphs["embeddings"]), mmap_mode="r")
        self.tokenizer = Tokenizer.from_file(str(bundle.path(graphs["tokenizer"])))
        past0 = next(i for i in self.decoder.get_inputs() if i.name == "past_key_0")
        self.kv_dtype = np.float16 if past0.type == "tensor(float16)" else np.float32
        #: Keep the KV cache on the device between decoder calls as ONNX Runtime's own buffers (IO
        #: binding; default on, on CPU too: no copy out to numpy and back in per step).
        self.device = "cuda" if self.providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "cpu"
        self.io_binding = True if io_binding is None else bool(io_binding)
        #: With IO binding: present/past tensors in buffers allocated once per inspection (``KVBuffers``)
        #: instead of a fresh ONNX Runtime allocation per decoder call (False: the older per-call path).
        self.kv_buffers = True
        self._present_names = [o.name for o in self.decoder.get_outputs()[1:]]
        #: The answer grammar (manifest ``grammar``; derived from the prompt for bundles exported before it).
        self.grammar_spec, self.grammar_source = self._grammar_spec(m)
        self.grammar_on = bool(grammar)
        #: under the grammar, two decisions per decoder pass (``differad_edge.lookahead``); by default on
        #: a GPU only, where a pass costs about the same for 1 or 30 tokens (a CPU pass is compute-bound)
        self.lookahead = self.device == "cuda" if lookahead is None else bool(lookahead)
        self._grammar: TokenGrammar | None = None
        self._budget_grammar: TokenGrammar | None = None
        #: Vision backend: the bundle's TensorRT plan when present and usable, else ONNX Runtime.
        self.vision_plan: Any = None
        self.vision_backend, self.vision_note = "onnxruntime", "no TensorRT plan in the bundle"
        self._load_vision_plan(vision_plan)

    def _grammar_spec(self, m: dict[str, Any]) -> tuple[GrammarSpec, str]:
        if "grammar" in m:
            try:
                return GrammarSpec.from_dict(m["grammar"]), "manifest"
            except ConfigError as e:
                raise BundleError(
                    f"{self.bundle.root}: the manifest's answer grammar is unusable ({e}); re-export the bundle"
                ) from e
        template = PromptTemplate.from_dict(m["prompt"]["template"])
        return grammar_for(template, self.max_new_tokens), "derived from the prompt (bundle predates the grammar)"

    @property
    def grammar(self) -> TokenGrammar:
        """The manifest's grammar over the bundle's vocabulary (built on first use)."""
        if self._grammar is None:
            vocab = TokenVocab.from_tokenizer_json(self.tokenizer.to_str(), size=int(self.embeddings.shape[0]))
            tok = self.tokenizer
            self._grammar = TokenGrammar(
                self.grammar_spec, vocab, lambda text: tok.encode(text, add_special_tokens=False).ids
            )
        return self._grammar

    def grammar_for_budget(self, max_new: int) -> TokenGrammar:
        """The grammar for another answer budget: a thinking answer's bound moves with it (same rule as
        ``grammar_for``) so that the answer still fits; a no-think grammar does not depend on it."""
        base = self.grammar
        if not base.spec.think or max_new == self.max_new_tokens:
            return base
        spec = dataclasses.replace(base.spec, max_think_tokens=grammar_for(base.spec, max_new).max_think_tokens)
        if self._budget_grammar is None or self._budget_grammar.spec != spec:
            self._budget_grammar = TokenGrammar(spec, base.vocab, base.encode)
        return self._budget_grammar

    def _load_vision_plan(self, wanted: bool | None) -> None:
        """Use ``vision_fp16.plan`` (built by the exporter on the target GPU) when it can run here.

        Fallback, with the reason kept in ``vision_note``: the vision graph through ONNX Runtime
        (TensorRT EP when onnxruntime-gpu has it, else CUDA, else CPU). ``wanted=True`` makes a
        missing or unusable plan an error; ``False`` skips it.
        """
        info = self.bundle.manifest.get("tensorrt") or {}
        name = info.get("file")
        if wanted is False:
            self.vision_note = "TensorRT plan not requested (vision_plan=False)"
            return
        reason = None
        if not info.get("built") or not name or name not in self.bundle.manifest["files"]:
            reason = f"no TensorRT plan in the bundle ({info.get('reason', 'not built')})"
        elif self.device != "cuda":
            reason = "the TensorRT plan needs the CUDA execution provider (decoder runs on CPU here)"
        else:
            try:
                from .tensorrt_plan import TensorRTVision

                self.vision_plan = TensorRTVision(self.bundle.path(name))
                self.vision_backend, self.vision_note = "tensorrt-plan", f"TensorRT plan {name}"
                return
            except ImportError as e:
                reason = f"tensorrt is not importable ({e}); pip install tensorrt"
            except Exception as e:  # a plan built for another GPU / TensorRT version: fall back, say why
                reason = f"the TensorRT plan {name} does not load here ({type(e).__name__}: {str(e)[:200]})"
        if wanted:
            raise EngineError(f"vision_plan=True but {reason}")
        self.vision_note = f"{reason}; vision runs on {self.vision_providers[0] if isinstance(self.vision_providers[0], str) else self.vision_providers[0][0]}"

    def _vision_providers(self, cache_dir: str | None) -> list[Any]:
        """TensorRT EP (fp16) for the vision graph when onnxruntime offers it and CUDA is used."""
        if "TensorrtExecutionProvider" in available_providers() and "CUDAExecutionProvider" in self.providers:
            opts: dict[str, Any] = {"trt_fp16_enable": True}
            if cache_dir:
                opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=cache_dir)
            return [("TensorrtExecutionProvider", opts), *self.providers]
        return list(self.providers)

    # ---- pieces -------------------------------------------------------------------------------
    def encode_image(self, image: np.ndarray) -> EncodedImage:
        pixels, grid = patchify(image, self.spec)
        feed = {"pixel_values": pixels, **vision_host_inputs(grid, self.spec)}
        if self.vision_plan is not None:
            embeds, deepstack = self.vision_plan.run(feed)
            return EncodedImage(np.asarray(embeds, np.float32), np.asarray(deepstack, np.float32), grid)
        with _ort_failures("vision"):
            embeds, deepstack = self.vision.run(None, feed)
        return EncodedImage(np.asarray(embeds, np.float32), np.asarray(deepstack, np.float32), grid)

    def _embed(self, ids: np.ndarray, images: Sequence[EncodedImage]) -> tuple[np.ndarray, np.ndarray]:
        """Token embeddings with image features at the pad positions, and the dense deepstack input."""
        emb = np.asarray(self.embeddings[ids], np.float32)
        ds = np.zeros((self.n_ds, len(ids), self.hidden), np.float32)
        pads = np.flatnonzero(ids == self.image_token_id)
        feats = np.concatenate([im.embeds for im in images]) if images else np.zeros((0, self.hidden), np.float32)
        if len(pads) != len(feats):
            raise EngineError(f"prompt has {len(pads)} image tokens but the images gave {len(feats)} features")
        if len(pads):
            emb[pads] = feats
            ds[:, pads] = np.concatenate([im.deepstack for im in images], axis=1)
        return emb[None], ds[:, None]

    def kv_buffers_for(self, capacity: int) -> KVBuffers:
        """Two flat buffers per KV tensor on the decoder's device, ``capacity`` positions each."""
        from onnxruntime import OrtValue

        size = self.kv_heads * int(capacity) * self.head_dim
        slots = tuple(
            [OrtValue.ortvalue_from_shape_and_type((size,), self.kv_dtype, self.device, 0) for _ in self._present_names]
            for _ in range(2)
        )
        return KVBuffers((slots[0], slots[1]), int(capacity))

    def _run_decoder(
        self,
        emb: np.ndarray,
        ds: np.ndarray,
        pos: np.ndarray,
        past: list[Any] | KVBuffers,
        past_len: int,
        kv: KVBuffers | None = None,
        tree: TreeBatch | None = None,
    ) -> tuple[np.ndarray, list[Any] | KVBuffers]:
        """One decoder call. With IO binding the KV cache stays on the device (OrtValues) between calls;
        without it, it round-trips through numpy (fine on CPU, a PCIe copy per token on a GPU). With
        ``kv`` the presents go into its free slot and ``kv`` itself is returned as the next past.
        ``tree``: the call's mask and logits rows (a decode step, tree or causal); None: causal, the last
        position's logits (prompt calls)."""
        n = emb.shape[1]
        if tree is None:
            visible = np.tri(n, past_len + n, past_len, dtype=bool)
            rows = np.asarray([n - 1], np.int64)
        else:
            visible, rows = tree.visible, np.asarray(tree.rows, np.int64)
        feed: dict[str, np.ndarray] = {
            "inputs_embeds": emb,
            "attention_mask": np.ascontiguousarray(visible[None, None]),
            "position_ids": np.ascontiguousarray(pos[:, None, :]),
            "deepstack": ds,
            "logits_rows": rows,
        }
        names = [f"past_{k}_{i}" for i in range(self.n_layers) for k in ("key", "value")]
        if not self.io_binding:
            if isinstance(past, KVBuffers):
                raise EngineError("KV buffers need IO binding (io_binding=True)")
            with _ort_failures("decoder"):
                out = self.decoder.run(None, {**feed, **dict(zip(names, past, strict=True))})
            return out[0], out[1:]
        binding = self.decoder.io_binding()
        for name, value in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        shape = lambda n: (1, self.kv_heads, n, self.head_dim)  # noqa: E731
        if isinstance(past, KVBuffers):
            for name, buf in zip(names, past.slots[past.live], strict=True):
                binding.bind_input(name, self.device, 0, self.kv_dtype, shape(past_len), buf.data_ptr())
        else:
            for name, value in zip(names, past, strict=True):
                if isinstance(value, np.ndarray):
                    binding.bind_cpu_input(name, value)
                else:
                    binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", "cpu")
        new_len = past_len + emb.shape[1]
        target = None
        if kv is not None and new_len <= kv.capacity:
            target = 1 - kv.live if kv.live >= 0 else 0
            for name, buf in zip(self._present_names, kv.slots[target], strict=True):
                binding.bind_output(name, self.device, 0, self.kv_dtype, shape(new_len), buf.data_ptr())
        else:  # no buffers (the prefix's own cache), or (never by construction) more than they hold
            for name in self._present_names:
                binding.bind_output(name, self.device)
        with _ort_failures("decoder"):
            self.decoder.run_with_iobinding(binding)
        outs = binding.get_outputs()
        if target is not None and kv is not None:
            kv.live = target
            return outs[0].numpy(), kv
        return outs[0].numpy(), list(outs[1:])

    def _empty_past(self) -> list[np.ndarray]:
        return [np.zeros((1, self.kv_heads, 0, self.head_dim), self.kv_dtype) for _ in range(2 * self.n_layers)]

    def _image_pads(self, im: EncodedImage) -> np.ndarray:
        return np.full(image_tokens(im.grid, self.spec.merge_size), self.image_token_id, np.int64)

    # ---- public -------------------------------------------------------------------------------
    def prefix(self, reference: np.ndarray, timer: StageTimer | None = None) -> PrefixState:
        """Run ``seg0 <ref> seg1`` once; the returned KV cache is reused (read-only) for every target."""
        timer = timer or StageTimer()
        with timer("vision"):
            ref = self.encode_image(reference)
        s0, s1 = self.segments[0], self.segments[1]
        ids = np.concatenate([s0, self._image_pads(ref), s1])
        pos = mrope_positions(
            [("text", len(s0)), ("image", tuple(ref.grid[0])), ("text", len(s1))], self.spec.merge_size
        )
        with timer("prefill"):
            emb, ds = self._embed(ids, [ref])
            _, past = self._run_decoder(emb, ds, pos, self._empty_past(), 0)
        assert isinstance(past, list)  # no KV buffers here: the prefix keeps tensors of its own
        return PrefixState(past, len(ids), next_position(pos), ref.grid)

    def generate(
        self,
        target: np.ndarray,
        prefix: PrefixState | None = None,
        reference: np.ndarray | None = None,
        max_new_tokens: int | None = None,
        min_new_tokens: int = 0,
        grammar: bool | None = None,
    ) -> Generation:
        """Greedy answer for one pair, from a cached ``prefix`` or (uncached) from the ``reference`` image.

        With the answer grammar (default: the runner's ``grammar_on``) tokens outside it are masked,
        forced tokens go through the decoder together with the model's choice, decoding stops when
        the answer is complete. ``min_new_tokens`` (fixed-length benchmark runs) decodes
        unconstrained and ignores EOS and ``</answer>`` until reached.
        """
        timer = StageTimer()
        s0, s1, s2 = self.segments
        max_new = max_new_tokens or self.max_new_tokens
        constrained = (self.grammar_on if grammar is None else grammar) and not min_new_tokens
        with timer("vision"):
            tgt = self.encode_image(target)
            ref = None if prefix is not None else self.encode_image(_required(reference))
        if prefix is not None:
            ids = np.concatenate([self._image_pads(tgt), s2])
            runs: list[tuple[str, Any]] = [("image", tuple(tgt.grid[0])), ("text", len(s2))]
            start, images, past0, past_len = prefix.next_pos, [tgt], prefix.past, prefix.length
        else:
            assert ref is not None
            ids = np.concatenate([s0, self._image_pads(ref), s1, self._image_pads(tgt), s2])
            runs = [
                ("text", len(s0)),
                ("image", tuple(ref.grid[0])),
                ("text", len(s1)),
                ("image", tuple(tgt.grid[0])),
                ("text", len(s2)),
            ]
            start, images, past0, past_len = 0, [ref, tgt], self._empty_past(), 0
        state: dict[str, Any] = {}
        #: every position this inspection can reach: the cache, the prompt, all new tokens (forced
        #: included) and, with lookahead, the branches not taken (a bound for answers; beyond it a call
        #: allocates its presents, as without buffers)
        slack = LOOKAHEAD_SLACK if constrained and self.lookahead else 0
        kv = self.kv_buffers_for(past_len + len(ids) + max_new + slack) if self.io_binding and self.kv_buffers else None
        tree: list[TreeCache] = []  # made at the first step

        def prefill(forced: list[int]) -> np.ndarray:
            with timer("prefill"):
                all_ids = np.concatenate([ids, np.asarray(forced, np.int64)])
                pos = mrope_positions(
                    [*runs[:-1], ("text", runs[-1][1] + len(forced))], self.spec.merge_size, start=start
                )
                emb, ds = self._embed(all_ids, images)
                logits, past = self._run_decoder(emb, ds, pos, past0, past_len, kv)
            state.update(past=past, length=past_len + len(all_ids), pos=next_position(pos))
            return logits[0, -1]

        def step(chain: list[int], branches: Sequence[list[int]] = (), keep: int | None = None) -> list[np.ndarray]:
            if not tree:
                tree.append(TreeCache(state["length"], state["pos"]))
            b = tree[0].batch(chain, branches, keep)
            n = len(b.tokens)
            emb = np.asarray(self.embeddings[b.tokens], np.float32)[None]
            ds = np.zeros((self.n_ds, 1, n, self.hidden), np.float32)
            pos = np.broadcast_to(b.positions, (3, n))
            logits, state["past"] = self._run_decoder(emb, ds, pos, state["past"], b.past, kv, b)
            return list(logits[0])

        if constrained:
            t0 = time.perf_counter()
            dec = constrained_decode(
                self.grammar_for_budget(max_new), prefill, step, numpy_pick, max_new, self.lookahead
            )
            timer.ms["decode"] = (time.perf_counter() - t0) * 1000.0 - timer.ms.get("prefill", 0.0)
            tokens, score, passes, forced = dec.tokens, dec.score, dec.forward_passes, len(dec.tokens) - sum(dec.chosen)
        else:
            logits = prefill([])
            with timer("decode"):
                tokens, score, passes = self._greedy(logits, step, max_new, min_new_tokens)
            forced = 0
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return Generation(tokens, text, score, timer.ms, forward_passes=passes, forced=forced)

    def _greedy(self, logits: np.ndarray, step: Any, max_new: int, min_new: int = 0) -> tuple[list[int], float, int]:
        """Unconstrained greedy tokens until EOS, ``</answer>`` (as the vlm engine) or ``max_new``; their
        score and the decoder calls made (the prefill included)."""
        tokens: list[int] = []
        logprob = 0.0
        passes = 1
        for _ in range(max_new):
            row = logits.astype(np.float64)
            nxt = int(np.argmax(row))
            logprob += float(row[nxt] - row.max() - np.log(np.exp(row - row.max()).sum()))
            tokens.append(nxt)
            if len(tokens) == max_new:
                break
            if len(tokens) >= min_new and (nxt in self.eos or self._answer_closed(tokens)):
                break
            logits = step([nxt])[0]
            passes += 1
        return tokens, float(np.exp(logprob / len(tokens))) if tokens else 0.0, passes

    def _answer_closed(self, tokens: list[int]) -> bool:
        return ANSWER_END in self.tokenizer.decode(tokens[-ANSWER_END_WINDOW:], skip_special_tokens=False)


@contextmanager
def _ort_failures(graph: str) -> Iterator[None]:
    """An ONNX Runtime failure while running becomes one ``EngineError`` line (as the vlm engine's)."""
    try:
        yield
    except ort_errors() as e:
        raise EngineError(
            f"ONNX Runtime failed in the {graph} graph ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:300]}); check device memory and the input image"
        ) from e


def _required(reference: np.ndarray | None) -> np.ndarray:
    if reference is None:
        raise EngineError("generate() needs either a cached prefix or the reference image")
    return reference


# ---- graph signatures: a swapped or foreign graph file is refused at load, not mid-inference ----------------
Signature = tuple[list[tuple[str, int | None]], list[tuple[str, int | None]]]  # (inputs, outputs): name, rank


def expected_signature(bundle: Bundle, role: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The inputs and outputs (names, ranks) this runtime feeds and reads for the ``role`` graph."""
    if role == "vision":
        return [(n, VISION_RANKS[n]) for n in VISION_INPUTS], [("image_embeds", 2), ("deepstack", 3)]
    n_layers = min(int(bundle.manifest["model"]["num_layers"]), 4096)  # the schema allows 2**20: no list that long
    kv = [(kind, i) for i in range(n_layers) for kind in ("key", "value")]
    inputs = [("inputs_embeds", 3), ("attention_mask", 4), ("position_ids", 3), ("deepstack", 4), ("logits_rows", 1)]
    return inputs + [(f"past_{k}_{i}", 4) for k, i in kv], [("logits", 3)] + [(f"present_{k}_{i}", 4) for k, i in kv]


def check_signature(bundle: Bundle, role: str, actual: Signature) -> None:
    """``BundleError`` naming the graph and its expected vs actual inputs / outputs when they differ.

    Inputs are fed by name (their order is free); outputs are read by position, so their order counts.
    A rank of ``None`` (no shape in the graph) is not held against it.
    """
    want_in, want_out = expected_signature(bundle, role)
    got_in, got_out = actual

    def same(want: Sequence[tuple[str, int | None]], got: Sequence[tuple[str, int | None]]) -> bool:
        return len(want) == len(got) and all(
            wn == gn and (wr is None or gr is None or wr == gr) for (wn, wr), (gn, gr) in zip(want, got, strict=True)
        )

    if same(sorted(want_in), sorted(got_in)) and same(want_out, got_out):
        return

    def show(sig: Sequence[tuple[str, int | None]]) -> str:
        items = [f"{n}:{'?' if r is None else r}d" for n, r in sig]
        return "[" + ", ".join(items[:8]) + (f", ... {len(items) - 8} more" if len(items) > 8 else "") + "]"

    name = bundle.manifest["graphs"][role]
    raise BundleError(
        f"bundle graph {name} of {bundle.root} is not the {role} graph this runtime runs: expected inputs "
        f"{show(want_in)} and outputs {show(want_out)}, the file has inputs {show(got_in)} and outputs "
        f"{show(got_out)} (graph files swapped or from another export); re-export the bundle"
    )


def _session_signature(session: Any) -> Signature:
    def rank(shape: Any) -> int | None:
        return len(shape) if isinstance(shape, (list, tuple)) else None

    inputs: list[tuple[str, int | None]] = [(i.name, rank(i.shape)) for i in session.get_inputs()]
    return inputs, [(o.name, rank(o.shape)) for o in session.get_outputs()]


def check_graphs(bundle: Bundle) -> None:
    """Every ONNX graph of an ``onnx`` bundle has the inputs and outputs this runtime expects.

    Reads only the graphs' declared inputs and outputs from the protobuf (initializers and nodes are
    skipped, not parsed): cheap enough for ``differad-export --check`` and needs no ONNX package.
    """
    if bundle.runtime != "onnx":
        return
    for role in ("vision", "decoder"):
        check_signature(bundle, role, graph_signature(bundle.path(bundle.manifest["graphs"][role])))


def graph_signature(path: Any) -> Signature:
    """(inputs, outputs) of the ONNX model at ``path`` as ONNX Runtime lists them (initializers excluded).

    Walks ``ModelProto.graph`` (field 7) for ``input`` (11), ``output`` (12) and the names of
    ``initializer`` (5) in the protobuf wire format over a memory map; ``BundleError`` if unreadable.
    """
    import mmap

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            graph = [v for fld, v in _fields(buf, 0, len(buf)) if fld == 7]
            if not graph or not isinstance(graph[-1], tuple):
                raise ValueError("no graph in the model")
            start, end = graph[-1]
            inputs: list[tuple[str, int | None]] = []
            outputs: list[tuple[str, int | None]] = []
            initializers: set[str] = set()
            for fld, v in _fields(buf, start, end):
                if fld in (11, 12) and isinstance(v, tuple):
                    (inputs if fld == 11 else outputs).append(_value_info(buf, *v))
                elif fld == 5 and isinstance(v, tuple):
                    initializers.update(bytes(buf[a:b]).decode("utf-8") for f8, (a, b) in _spans(buf, *v) if f8 == 8)
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as e:
        raise BundleError(f"bundle graph {path} is not a readable ONNX model ({e}); re-export the bundle") from e
    return [i for i in inputs if i[0] not in initializers], outputs


def _varint(buf: Any, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError(f"varint too long at offset {pos}")


def _fields(buf: Any, pos: int, end: int) -> Iterator[tuple[int, int | tuple[int, int]]]:
    """(field number, varint value or (start, end) of a length-delimited field) of one message."""
    while pos < end:
        tag, pos = _varint(buf, pos)
        wire = tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield tag >> 3, value
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise ValueError(f"field {tag >> 3} at offset {pos} runs past its message")
            yield tag >> 3, (pos, pos + n)
            pos += n
        else:
            raise ValueError(f"protobuf wire type {wire} at offset {pos}")
    if pos != end:
        raise ValueError(f"message ends at offset {pos}, not {end}")


def _spans(buf: Any, start: int, end: int) -> Iterator[tuple[int, tuple[int, int]]]:
    for fld, v in _fields(buf, start, end):
        if isinstance(v, tuple):
            yield fld, v


def _value_info(buf: Any, start: int, end: int) -> tuple[str, int | None]:
    """Name and tensor rank of a ``ValueInfoProto`` (name 1, type 2 -> tensor_type 1 -> shape 2 -> dim 1)."""
    name, rank = "", None
    for fld, (a, b) in _spans(buf, start, end):
        if fld == 1:
            name = bytes(buf[a:b]).decode("utf-8")
        elif fld == 2:
            for tf, (ta, tb) in _spans(buf, a, b):
                if tf == 1:  # TypeProto.tensor_type
                    for sf, (sa, sb) in _spans(buf, ta, tb):
                        if sf == 2:  # TypeProto.Tensor.shape
                            rank = sum(1 for df, _ in _spans(buf, sa, sb) if df == 1)
    return name, rank
