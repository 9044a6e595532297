"""The answer grammar: what a box answer may look like, enforced token by token during greedy decoding.

Why: a badly trained (or random) model can answer something unparsable, and most tokens of a box
answer carry no information (``<answer>(``, ``,``, ``),(``, ``)</answer>``). Decoding under this
grammar masks every token that cannot continue a valid answer, appends tokens the grammar forces
without asking the model (the engines run them through the decoder together, one forward pass),
and stops as soon as the answer is complete. It is one definition for both engines: a
``GrammarSpec`` (stored in the bundle manifest) plus a token-level automaton over the tokenizer's
byte strings. No torch, no grammar library (see the issue-17 notes in ``bench/RESULTS.md``: the
box's ordering constraint ``x1 < x2, y1 < y2`` is not a compact CFG or regex, xgrammar needs torch).

Language (``template.think`` False): ``<answer>(x1,y1),(x2,y2)</answer>`` with integers 0..scale
written without leading zeros, ``x1 < x2`` and ``y1 < y2``, or the zero box ``(0,0),(0,0)``.
With thinking: ``<think>`` + free text without ``<`` (at most ``max_think_tokens`` tokens) +
``</think>`` + up to ``max_gap`` spaces/newlines + the answer above.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .errors import ConfigError
from .lookahead import MAX_BRANCHES

GRAMMAR_KIND = "differad-box-answer-v1"
GAP_CHARS = b" \n"
_DIGITS = frozenset(b"0123456789")


@dataclass(frozen=True)
class GrammarSpec:
    """The answer grammar as data (manifest field ``grammar``); see the module docstring."""

    think: bool = False
    scale: int = 1000
    answer_open: str = "<answer>"
    answer_close: str = "</answer>"
    think_open: str = "<think>"
    think_close: str = "</think>"
    max_think_tokens: int = 0
    max_gap: int = 2
    kind: str = GRAMMAR_KIND

    def __post_init__(self) -> None:
        if self.kind != GRAMMAR_KIND:
            raise ConfigError(f"unknown answer grammar kind {self.kind!r}; this SDK knows {GRAMMAR_KIND!r}")
        if not isinstance(self.scale, int) or not 1 <= self.scale <= 100_000:
            raise ConfigError(f"grammar scale {self.scale!r} must be an integer 1..100000 (the model grid, 1000)")
        for name in ("answer_open", "answer_close", "think_open", "think_close"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or not value.isascii() or any(c.isdigit() for c in value):
                raise ConfigError(f"grammar {name}={value!r} must be a non-empty ASCII tag without digits")
        if not self.think_close.startswith("<"):
            raise ConfigError(f"grammar think_close={self.think_close!r} must start with '<' (free text excludes '<')")
        if not isinstance(self.max_think_tokens, int) or self.max_think_tokens < 0 or self.max_gap < 0:
            raise ConfigError(
                f"grammar max_think_tokens={self.max_think_tokens!r} and max_gap={self.max_gap!r} must be integers >= 0"
            )

    @property
    def longest_answer(self) -> str:
        """The longest text of the answer part (its characters bound its tokens)."""
        big = str(self.scale)
        return f"{self.answer_open}({big},{big}),({big},{big}){self.answer_close}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.describe()}

    @classmethod
    def from_dict(cls, data: Any) -> GrammarSpec:
        if not isinstance(data, dict):
            raise ConfigError(f"answer grammar must be a JSON object, got {type(data).__name__}")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except TypeError as e:
            raise ConfigError(f"bad answer grammar {data!r} ({e}); re-export the bundle") from e

    def describe(self) -> str:
        """The grammar in EBNF-like text, for people reading a manifest (the automaton is the definition)."""
        n = f"int 0..{self.scale} (no leading zeros)"
        box = f'"(" x1 "," y1 "),(" x2 "," y2 ")"  ; {n}; x1<x2 and y1<y2, or all four 0'
        answer = f'"{self.answer_open}" box "{self.answer_close}"'
        if not self.think:
            return f"answer ::= {answer}; box ::= {box}"
        return (
            f'answer ::= "{self.think_open}" free "{self.think_close}" gap {answer}; free ::= text without "<", '
            f"<= {self.max_think_tokens} tokens; gap ::= up to {self.max_gap} of space/newline; box ::= {box}"
        )


def grammar_for(template: Any, max_new_tokens: int) -> GrammarSpec:
    """The grammar of a prompt template's answer, its thinking bounded so the answer fits ``max_new_tokens``.

    A thinking template reserves the worst-case answer (one token per character) after ``</think>``.
    """
    think = bool(getattr(template, "think", False))
    if not think:
        return GrammarSpec(think=False)
    spec = GrammarSpec(think=True)
    reserve = len(spec.think_close) + spec.max_gap + len(spec.longest_answer)
    return GrammarSpec(think=True, max_think_tokens=max(0, int(max_new_tokens) - reserve))


# ---- character (byte) automaton -----------------------------------------------------------------
# A state is a hashable tuple (segment index, progress, completed numbers). Segments: ("lit", text),
# ("num", k), ("free",), ("gap",), ("end",).

State = tuple[int, Any, tuple[int, ...]]


def _segments(spec: GrammarSpec) -> tuple[tuple[Any, ...], ...]:
    segs: list[tuple[Any, ...]] = []
    if spec.think:
        segs += [("lit", spec.think_open.encode()), ("free",), ("lit", spec.think_close.encode()), ("gap",)]
    segs += [
        ("lit", (spec.answer_open + "(").encode()),
        ("num", 0),
        ("lit", b","),
        ("num", 1),
        ("lit", b"),("),
        ("num", 2),
        ("lit", b","),
        ("num", 3),
        ("lit", (")" + spec.answer_close).encode()),
        ("end",),
    ]
    return tuple(segs)


class CharAutomaton:
    """Byte-level recognizer of the grammar's language; ``step`` returns None for a byte that cannot follow."""

    def __init__(self, spec: GrammarSpec) -> None:
        self.spec = spec
        self.segs = _segments(spec)
        self.free_seg = 1 if spec.think else -1
        self.close_byte = spec.think_close.encode()[0]

    def start(self) -> State:
        return (0, self._initial(0), ())

    def _initial(self, seg: int) -> Any:
        return "" if self.segs[seg][0] == "num" else 0

    def accepting(self, state: State) -> bool:
        return self.segs[state[0]][0] == "end"

    def _range(self, k: int, vals: tuple[int, ...]) -> tuple[int, int]:
        """Allowed values of number ``k`` given the ones before it (zero box, or x1 < x2 and y1 < y2)."""
        s = self.spec.scale
        if k < 2:
            return 0, s - 1
        if k == 2:
            return (0, s) if vals == (0, 0) else (vals[0] + 1, s)
        return (0, 0) if vals == (0, 0, 0) else (vals[1] + 1, s)

    def _feasible(self, digits: str, lo: int, hi: int) -> bool:
        """Whether some integer in [lo, hi] is written ``digits`` or starts with it."""
        if digits == "0":
            return lo == 0
        v, width = int(digits), len(digits)
        for n in range(width, len(str(hi)) + 1):
            a, b = v * 10 ** (n - width), (v + 1) * 10 ** (n - width) - 1
            if max(a, lo) <= min(b, hi):
                return True
        return False

    def _enter(self, seg: int, vals: tuple[int, ...]) -> State:
        return (seg, self._initial(seg), vals)

    def step(self, state: State, byte: int) -> State | None:
        seg, sub, vals = state
        kind = self.segs[seg][0]
        if kind == "lit":
            text = self.segs[seg][1]
            if text[sub] != byte:
                return None
            return (seg, sub + 1, vals) if sub + 1 < len(text) else self._enter(seg + 1, vals)
        if kind == "num":
            lo, hi = self._range(self.segs[seg][1], vals)
            if byte in _DIGITS:
                if sub == "0":
                    return None  # no leading zeros
                digits = sub + chr(byte)
                return (seg, digits, vals) if self._feasible(digits, lo, hi) else None
            if sub and lo <= int(sub) <= hi:
                return self.step(self._enter(seg + 1, (*vals, int(sub))), byte)
            return None
        if kind == "free":
            return self.step(self._enter(seg + 1, vals), byte) if byte == self.close_byte else state
        if kind == "gap":
            if byte in GAP_CHARS and sub < self.spec.max_gap:
                return (seg, sub + 1, vals)
            return self.step(self._enter(seg + 1, vals), byte)
        return None  # end: nothing may follow a complete answer

    def walk(self, state: State | None, data: bytes) -> State | None:
        for b in data:
            if state is None:
                return None
            state = self.step(state, b)
        return state

    def matches(self, text: str) -> bool:
        """Whether ``text`` is exactly one answer of the grammar (think bound not applied)."""
        state = self.walk(self.start(), text.encode("utf-8"))
        return state is not None and self.accepting(state)


# ---- the tokenizer's byte strings ---------------------------------------------------------------
@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode (byte-level BPE vocabularies: Qwen, GPT-2, Llama 3)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


@dataclass
class TokenVocab:
    """Each token id's bytes (None: special or unusable, never allowed by the grammar)."""

    pieces: list[bytes | None]
    _trie: Any = field(default=None, repr=False)

    @classmethod
    def from_tokenizer_json(cls, data: dict[str, Any] | str, size: int | None = None) -> TokenVocab:
        """From a Hugging Face ``tokenizer.json`` (dict or text); ``size`` = the model's logits width."""
        if isinstance(data, str):
            data = json.loads(data)
        if not isinstance(data, dict):
            raise ConfigError("tokenizer.json must hold a JSON object; turn the grammar off (grammar=False)")
        model = data.get("model") or {}
        vocab = model.get("vocab")
        if not isinstance(vocab, dict):
            raise ConfigError(
                "the answer grammar needs a BPE tokenizer.json (model.vocab as a dict); "
                "turn the grammar off (grammar=False) for this tokenizer"
            )
        byte_level = "ByteLevel" in json.dumps(data.get("decoder")) or "ByteLevel" in json.dumps(
            data.get("pre_tokenizer")
        )
        decoder = _byte_decoder()
        ids = [int(i) for i in vocab.values()]
        added = data.get("added_tokens") or []
        n = max([*ids, *(int(t["id"]) for t in added), -1]) + 1
        pieces: list[bytes | None] = [None] * max(n, size or 0)
        for tok, i in vocab.items():
            if byte_level:
                try:
                    pieces[int(i)] = bytes(decoder[c] for c in tok)
                except KeyError:
                    pieces[int(i)] = None
            elif len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">"):
                pieces[int(i)] = bytes([int(tok[3:5], 16)])  # sentencepiece byte fallback
            else:
                pieces[int(i)] = tok.replace("\u2581", " ").encode("utf-8")
        for t in added:
            pieces[int(t["id"])] = None if t.get("special") else str(t["content"]).encode("utf-8")
        if size is not None:
            pieces = pieces[:size]
        return cls([p if p else None for p in pieces])

    @classmethod
    def from_hf_tokenizer(cls, tokenizer: Any, size: int | None = None) -> TokenVocab:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ConfigError(
                f"the answer grammar needs a fast (tokenizers-backed) tokenizer, got "
                f"{type(tokenizer).__name__}; turn the grammar off (grammar=False)"
            )
        return cls.from_tokenizer_json(backend.to_str(), size)

    def __len__(self) -> int:
        return len(self.pieces)

    @property
    def trie(self) -> Any:
        """Byte trie ``[children, ids]`` of every usable token (built once)."""
        if self._trie is None:
            root: list[Any] = [{}, []]
            for i, piece in enumerate(self.pieces):
                if piece is None:
                    continue
                node = root
                for b in piece:
                    node = node[0].setdefault(b, [{}, []])
                node[1].append(i)
            self._trie = root
        return self._trie


# ---- token level ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GState:
    """Decoding state: the automaton's state and the tokens spent thinking."""

    chars: State
    think_tokens: int = 0


class TokenGrammar:
    """The grammar over a vocabulary: allowed token ids per state (cached), forced runs, acceptance.

    Literals (``<answer>(``, ``,``, ``),(``, ``)</answer>``, the think tags) are entered and spelled
    only through their canonical tokenization (``encode``, the tokenizer's own; longest match without
    one), as the model saw them in training: so a literal is a forced run the model never has to
    choose, and a number ends by choosing the next literal's first token instead of a digit.
    """

    MAX_CACHE = 65536

    def __init__(self, spec: GrammarSpec, vocab: TokenVocab, encode: Callable[[str], list[int]] | None = None) -> None:
        self.spec, self.vocab, self.encode = spec, vocab, encode
        self.auto = CharAutomaton(spec)
        self._cache: dict[tuple[State, bool], np.ndarray] = {}
        self._canon: dict[tuple[int, int], list[int]] = {}
        self._pure: dict[str, list[int]] | None = None

    def start(self) -> GState:
        return GState(self.auto.start())

    def accepting(self, state: GState) -> bool:
        return self.auto.accepting(state.chars)

    def _closing(self, state: GState) -> bool:
        return state.chars[0] == self.auto.free_seg and state.think_tokens >= self.spec.max_think_tokens

    def canonical(self, seg: int, pos: int = 0) -> list[int]:
        """Token ids spelling literal segment ``seg`` from byte ``pos`` on."""
        key = (seg, pos)
        hit = self._canon.get(key)
        if hit is not None:
            return hit
        text = self.auto.segs[seg][1][pos:]
        ids = list(self.encode(text.decode("ascii"))) if self.encode is not None else []
        if not ids or self._spell(ids) != text:  # e.g. a normalizer changed it: fall back to longest match
            ids = self._longest_match(text)
        self._canon[key] = ids
        return ids

    def _spell(self, ids: list[int]) -> bytes | None:
        pieces = self.vocab.pieces
        if any(not 0 <= i < len(pieces) or pieces[i] is None for i in ids):
            return None
        return b"".join(pieces[i] for i in ids)  # type: ignore[misc]

    def _longest_match(self, text: bytes) -> list[int]:
        out, i = [], 0
        while i < len(text):
            node, best = self.vocab.trie, None
            for j in range(i, len(text)):
                node = node[0].get(text[j])
                if node is None:
                    break
                if node[1]:
                    best = (j + 1, node[1][0])
            if best is None:
                raise ConfigError(f"the tokenizer cannot spell the grammar literal {text!r}; turn the grammar off")
            i, tok = best
            out.append(tok)
        return out

    def allowed(self, state: GState) -> np.ndarray:
        """Sorted int64 ids of the tokens that can continue a valid answer from ``state``."""
        closing = self._closing(state)
        key = (state.chars, closing)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        seg, sub, _ = state.chars
        kind = self.auto.segs[seg][0]
        out: list[int] = []
        if kind == "lit":
            out = self.canonical(seg, sub)[:1]
        elif kind != "end":
            if not closing:
                out = self._within(state.chars)
            can_end = kind != "num" or (sub != "" and self.auto.step(state.chars, self.auto.segs[seg + 1][1][0]))
            if can_end:
                out += self.canonical(seg + 1)[:1]
        arr = np.array(sorted(set(out)), dtype=np.int64)
        if len(self._cache) >= self.MAX_CACHE:
            self._cache.clear()
        self._cache[key] = arr
        return arr

    def _within(self, chars: State) -> list[int]:
        """Tokens whose every byte keeps the automaton inside the current segment.

        Numbers and gaps can only hold digit / whitespace tokens: those few candidates are walked
        directly (a new box prefix costs microseconds); free text walks the byte trie once.
        """
        seg = chars[0]
        kind = self.auto.segs[seg][0]
        if kind in ("num", "gap"):
            if self._pure is None:
                self._pure = {
                    k: [i for i, p in enumerate(self.vocab.pieces) if p and all(b in allowed for b in p)]
                    for k, allowed in (("num", _DIGITS), ("gap", frozenset(GAP_CHARS)))
                }
            walk = self.auto.walk
            return [i for i in self._pure[kind] if (s := walk(chars, self.vocab.pieces[i])) is not None and s[0] == seg]  # type: ignore[arg-type]
        step = self.auto.step
        out: list[int] = []
        stack: list[tuple[Any, State]] = [(self.vocab.trie, chars)]
        while stack:
            node, s = stack.pop()
            for b, child in node[0].items():
                nxt = step(s, b)
                if nxt is not None and nxt[0] == seg:
                    out.extend(child[1])
                    stack.append((child, nxt))
        return out

    def advance(self, state: GState, token: int) -> GState:
        piece = self.vocab.pieces[token] if 0 <= token < len(self.vocab) else None
        chars = self.auto.walk(state.chars, piece) if piece else None
        if chars is None:
            raise ConfigError(f"token {token} ({piece!r}) does not continue the answer grammar")
        spent = state.think_tokens + (state.chars[0] == self.auto.free_seg)
        return GState(chars, spent)

    def forced_run(self, state: GState, budget: int) -> tuple[list[int], GState]:
        """Tokens the grammar leaves no choice about from ``state`` (at most ``budget``), and the state after."""
        run: list[int] = []
        while len(run) < budget and not self.accepting(state):
            allowed = self.allowed(state)
            if len(allowed) != 1:
                break
            run.append(int(allowed[0]))
            state = self.advance(state, run[-1])
        return run, state

    def prefix_valid(self, tokens: Sequence[int]) -> int:
        """How many leading ``tokens`` stay inside the grammar (tests: the unconstrained answer's valid part)."""
        state = self.start()
        for n, t in enumerate(tokens):
            if self.accepting(state) or t not in set(self.allowed(state).tolist()):
                return n
            state = self.advance(state, t)
        return len(tokens)


@dataclass
class Decoded:
    """Result of one grammar-constrained greedy decode."""

    tokens: list[int]
    chosen: list[bool]  # per token: picked by the model (True) or forced by the grammar (False)
    logprob: float  # sum of the model-chosen tokens' log-probabilities (full softmax)
    forward_passes: int  # decoder calls, the prefill included
    accepted: bool

    @property
    def score(self) -> float:
        """Geometric mean probability of the tokens the model chose (forced tokens carry no information)."""
        n = sum(self.chosen)
        return float(np.exp(self.logprob / n)) if n else 1.0 if self.accepted else 0.0


def constrained_decode(
    grammar: TokenGrammar,
    prefill: Callable[[list[int]], Any],
    step: Callable[[list[int], list[list[int]], int | None], Sequence[Any]],
    pick: Callable[[Any, np.ndarray], tuple[int, float]],
    max_new_tokens: int,
    lookahead: bool = False,
) -> Decoded:
    """Greedy decoding under ``grammar`` with jump-forward; the engines supply the model calls.

    ``prefill(forced)`` runs the prompt plus the tokens forced at the start and returns the last
    logits; ``step(chain, branches, keep)`` runs the model's choice and the forced tokens after it
    (``chain``) in one call and returns the logits after the chain, then after each branch;
    ``pick(logits, allowed)`` is the argmax over ``allowed`` and its log-probability. Stops when the
    grammar accepts (no model call for the closing tokens) or at ``max_new_tokens``.

    With ``lookahead`` each step also runs one branch per candidate of the next decision (at most
    ``lookahead.MAX_BRANCHES``; see :mod:`differad_edge.lookahead`): two decisions per pass, the same
    tokens. ``keep`` names the branch of the previous call that the second decision took (None: none).
    """

    def branches_at(state: GState, budget: int) -> tuple[list[list[int]], list[GState]]:
        allowed = grammar.allowed(state)
        if not lookahead or budget < 1 or len(allowed) > MAX_BRANCHES:
            return [], []
        runs, ends = [], []
        for t in allowed.tolist():
            run, end = grammar.forced_run(grammar.advance(state, int(t)), budget - 1)
            runs.append([int(t), *run])
            ends.append(end)
        return runs, ends

    def done() -> bool:
        return grammar.accepting(state) or len(tokens) >= max_new_tokens

    state = grammar.start()
    tokens, state = grammar.forced_run(state, max_new_tokens)
    chosen = [False] * len(tokens)
    logits = prefill(list(tokens))
    ahead: Sequence[Any] = ()  # per branch of the last step: the logits of the decision after it
    passes, logprob = 1, 0.0
    branches: list[list[int]] = []
    ends: list[GState] = []
    while not done():
        allowed = grammar.allowed(state)
        if len(allowed) == 0:  # unreachable for a well-formed spec; kept so a bad spec cannot loop
            break
        tok, lp = pick(logits, allowed)
        logprob += lp
        keep = None
        if branches:  # the pick's branch (with its forced run) is in the cache already
            keep = [b[0] for b in branches].index(tok)
            tokens += branches[keep]
            chosen += [True] + [False] * (len(branches[keep]) - 1)
            state = ends[keep]
            if done():
                break
            tok, lp = pick(ahead[keep], grammar.allowed(state))
            logprob += lp
        state = grammar.advance(state, tok)
        run, state = grammar.forced_run(state, max_new_tokens - len(tokens) - 1)
        pending = [tok, *run]
        tokens += pending
        chosen += [True] + [False] * len(run)
        if done():
            break
        branches, ends = branches_at(state, max_new_tokens - len(tokens))
        out = step(pending, branches, keep)
        logits, ahead = out[0], out[1:]
        passes += 1
    return Decoded(tokens, chosen, logprob, passes, grammar.accepting(state))


def numpy_pick(logits: np.ndarray, allowed: np.ndarray) -> tuple[int, float]:
    """``pick`` for a 1-D numpy logits row (the ONNX runtime)."""
    row = np.asarray(logits, np.float64)
    tok = int(allowed[int(np.argmax(row[allowed]))])
    m = row.max()
    return tok, float(row[tok] - m - np.log(np.exp(row - m).sum()))
