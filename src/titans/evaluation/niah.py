"""Single-needle needle-in-a-haystack (S-NIAH) as RULER defines it, for any tokenizer.

Three variants (the paper's Table 2 columns):

* ``passkey``: a 7-digit number needle in the repeated-noise haystack
  ("The grass is green. The sky is blue. ...");
* ``number``: a 7-digit number needle in an essay haystack (Gutenberg test split);
* ``uuid``: a UUID needle in an essay haystack.

A sample is ``prefix + haystack-with-needle + question``; the needle sentence is
"One of the special magic {type} for {key} is: {value}." and sits at a sentence boundary
whose token depth in the haystack is as close as possible to the requested ``depth`` in
[0, 1]. The prompt ends with an answer prefix, so a model's continuation is scored by string
match (the value occurs in it). The answer prefix restates the needle's lead-in ("... for {key}
is:"), so the value is what a key-matching copy would produce next. Every sample is a pure
function of (seed, variant, length, depth, index); lengths are counted with the tokenizer's
``encode`` and never exceeded.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

Encode = Callable[[str], Sequence[int]]
Decode = Callable[[Sequence[int]], str]

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NOISE_SENTENCES = tuple(s for s in re.split(r"(?<=\.)\s+", NOISE))
VARIANTS: dict[str, dict[str, str]] = {
    "passkey": {"haystack": "noise", "value": "number", "type": "numbers", "type1": "number"},
    "number": {"haystack": "essay", "value": "number", "type": "numbers", "type1": "number"},
    "uuid": {"haystack": "essay", "value": "uuid", "type": "uuids", "type1": "uuid"},
}
PREFIX = ("Some special magic {type} are hidden within the following text. Make sure to memorize "
          "them. I will quiz you about one of them afterwards.\n")
NEEDLE = "One of the special magic {type} for {key} is: {value}."
QUESTION = ("\nWhat is the special magic {type1} for {key} mentioned in the provided text?\n"
            "Answer: The special magic {type1} for {key} is:")

# Keys are "adjective-noun" pairs (RULER draws random words); 40 x 40 = 1600 distinct keys.
_ADJECTIVES = ("quiet", "amber", "brisk", "hollow", "silver", "crooked", "gentle", "rusty", "bright",
               "frozen", "humble", "lively", "narrow", "placid", "rapid", "scarlet", "tidy", "vivid",
               "wooden", "young", "ancient", "bitter", "calm", "dusty", "eager", "fancy", "golden",
               "hungry", "icy", "jolly", "kind", "lonely", "misty", "noble", "odd", "proud", "rough",
               "shy", "tall", "wild")
_NOUNS = ("harbor", "lantern", "meadow", "rooster", "violin", "cabinet", "falcon", "garden", "island",
          "kettle", "ladder", "marble", "needle", "orchard", "pillow", "quarry", "ribbon", "saddle",
          "teapot", "umbrella", "valley", "wagon", "anchor", "basket", "candle", "dragon", "engine",
          "feather", "glacier", "hammer", "igloo", "jacket", "kitten", "lemon", "mirror", "nectar",
          "otter", "pepper", "rocket", "tulip")


def default_data_root() -> Path:
    """``$TITANS_DATA`` or ``../shared/data`` relative to the repository root."""
    env = os.environ.get("TITANS_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def default_gutenberg_test() -> Path:
    return default_data_root() / "gutenberg" / "test.jsonl.gz"


def derive_seed(*parts: object) -> int:
    """A stable 64-bit seed from any printable parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


_SENT_SPLIT = re.compile("(?<=[.!?\u201d])\\s+(?=[A-Z\"'(\u201c\u2018])")


@lru_cache(maxsize=4)
def _load_books(path: str) -> tuple[str, ...]:
    p = Path(path)
    if not p.exists():
        raise ValueError(f"haystack_path {path!r} does not exist (expected the Gutenberg test split, "
                         "gutenberg/test.jsonl.gz under $TITANS_DATA or ../shared/data)")
    opener = gzip.open if p.name.endswith(".gz") else open
    books = []
    with opener(p, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                text = json.loads(line)["text"]
                books.append(" ".join(text.split()))  # collapse newlines / runs of spaces
    if not books:
        raise ValueError(f"haystack_path {path!r} holds no books")
    return tuple(books)


@lru_cache(maxsize=64)
def _book_sentences(path: str, index: int) -> tuple[str, ...]:
    text = _load_books(path)[index]
    text = text[min(2000, len(text) // 20):]  # skip the "Produced by ..." / title-page matter
    return tuple(s for s in _SENT_SPLIT.split(text) if s.strip())


class Haystack:
    """An endless, seeded stream of background sentences: the noise cycle or Gutenberg text."""

    def __init__(self, kind: str, path: str | Path | None = None):
        if kind not in ("noise", "essay"):
            raise ValueError(f"haystack kind must be 'noise' or 'essay', got {kind!r}")
        self.kind = kind
        self.path = str(path if path is not None else default_gutenberg_test())

    def sentences(self, rng: random.Random) -> Iterator[str]:
        if self.kind == "noise":
            while True:
                yield from NOISE_SENTENCES
        books = _load_books(self.path)
        book = rng.randrange(len(books))
        first = True
        while True:
            sents = _book_sentences(self.path, book)
            start = rng.randrange(max(1, len(sents) // 2)) if first else 0
            first = False
            yield from sents[start:]
            book = (book + 1) % len(books)


class TokenCounter:
    """Caches ``len(encode(" " + sentence))``; sentences are joined with single spaces."""

    def __init__(self, encode: Encode):
        self.encode = encode
        self._cache: dict[str, int] = {}

    def __call__(self, sentence: str) -> int:
        n = self._cache.get(sentence)
        if n is None:
            n = len(self.encode(" " + sentence))
            if len(self._cache) < 200_000:
                self._cache[sentence] = n
        return n


def fill_haystack(stream: Iterator[str], count: TokenCounter, budget: int,
                  forbidden: Iterable[str] = ()) -> tuple[list[str], list[int]]:
    """Take sentences from ``stream`` while their tokens fit in ``budget``.

    Sentences containing any ``forbidden`` string (e.g. the needle's value) are skipped.
    Returns the sentences and their token counts."""
    forbidden = tuple(forbidden)
    sents: list[str] = []
    counts: list[int] = []
    total = 0
    misses = 0
    for s in stream:
        if any(f in s for f in forbidden):
            continue
        n = count(s)
        if total + n > budget:
            misses += 1
            if misses > 50 or budget - total < 4:
                break
            continue  # a shorter later sentence may still fit
        sents.append(s)
        counts.append(n)
        total += n
    return sents, counts


def insert_index(counts: Sequence[int], depth: float) -> int:
    """The sentence boundary whose cumulative token count is closest to ``depth`` of the total."""
    total = sum(counts)
    target = depth * total
    best, best_err, acc = 0, abs(target), 0
    for i, n in enumerate(counts, 1):
        acc += n
        err = abs(acc - target)
        if err < best_err:
            best, best_err = i, err
    return best


@dataclass(frozen=True)
class NIAHSample:
    """One S-NIAH prompt. ``input_ids`` encode ``prompt``; ``answer`` is the needle's value."""

    variant: str
    length: int          # requested token budget (len(input_ids) <= length)
    depth: float         # requested depth in [0, 1]
    depth_actual: float  # tokens of haystack before the needle / haystack tokens
    index: int
    key: str
    answer: str
    needle: str
    prompt: str
    input_ids: list[int]

    def to_dict(self) -> dict:
        return asdict(self)


def _make_value(kind: str, rng: random.Random) -> str:
    if kind == "number":
        return str(rng.randrange(1_000_000, 10_000_000))
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class NIAHGenerator:
    """Deterministic S-NIAH samples for a tokenizer given as ``encode`` (and optional ``decode``).

    ``sample(variant, length, depth, index)`` depends only on ``seed`` and its arguments."""

    def __init__(self, encode: Encode, seed: int = 0, haystack_path: str | Path | None = None):
        if not callable(encode):
            raise ValueError("encode must be a callable str -> sequence of token ids")
        self.encode = encode
        self.seed = int(seed)
        self.haystack_path = haystack_path
        self.count = TokenCounter(encode)
        self._haystacks: dict[str, Haystack] = {}

    def _haystack(self, kind: str) -> Haystack:
        if kind not in self._haystacks:
            self._haystacks[kind] = Haystack(kind, self.haystack_path)
        return self._haystacks[kind]

    def sample(self, variant: str, length: int, depth: float, index: int = 0) -> NIAHSample:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if not isinstance(length, int) or length <= 0:
            raise ValueError(f"length must be a positive int (tokens), got {length!r}")
        if not 0.0 <= depth <= 1.0:
            raise ValueError(f"depth must lie in [0, 1], got {depth!r}")
        spec = VARIANTS[variant]
        rng = random.Random(derive_seed(self.seed, variant, length, round(depth, 6), index))
        key = f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}"
        value = _make_value(spec["value"], rng)
        fmt = {"type": spec["type"], "type1": spec["type1"], "key": key, "value": value}
        prefix, needle, question = PREFIX.format(**fmt), NEEDLE.format(**fmt), QUESTION.format(**fmt)
        fixed = len(self.encode(prefix)) + self.count(needle) + len(self.encode(question))
        budget = length - fixed
        if budget < 0:
            raise ValueError(f"length={length} is below the {fixed} tokens of prompt, needle and question")
        stream = self._haystack(spec["haystack"]).sentences(rng)
        sents, counts = fill_haystack(stream, self.count, budget, forbidden=(value, key, "special magic"))
        while True:
            at = insert_index(counts, depth)
            before = " ".join(sents[:at])
            after = " ".join(sents[at:])
            context = " ".join(p for p in (before, needle, after) if p)
            prompt = prefix + context + question
            ids = list(self.encode(prompt))
            if len(ids) <= length or not sents:
                break
            # BPE merges across joins can differ from per-sentence counts: trim from the far end.
            drop = len(sents) - 1 if at < len(sents) else 0
            del sents[drop], counts[drop]
        hay_tokens = sum(counts)
        head = len(self.encode(prefix + before)) - len(self.encode(prefix)) if before else 0
        depth_actual = head / hay_tokens if hay_tokens else 0.0
        return NIAHSample(variant, length, float(depth), float(depth_actual), index, key, value, needle,
                          prompt, ids)

    def sweep(self, variant: str, lengths: Iterable[int], depths: Iterable[float],
              samples_per_cell: int = 1, start_index: int = 0) -> Iterator[NIAHSample]:
        """Samples over a length × depth grid (``samples_per_cell`` each)."""
        depths = list(depths)
        for length in lengths:
            for depth in depths:
                for i in range(samples_per_cell):
                    yield self.sample(variant, length, depth, start_index + i)


def depth_grid(num: int) -> list[float]:
    """``num`` depths spread uniformly over [0, 1] (both ends included; ``num=1`` gives 0.5)."""
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num depths must be a positive int, got {num!r}")
    if num == 1:
        return [0.5]
    return [i / (num - 1) for i in range(num)]


def string_match(prediction: str, answer: str) -> float:
    """RULER's string-match score for one reference: 1.0 if ``answer`` occurs in ``prediction``."""
    return float(answer.strip().lower() in prediction.lower())


GenerateFn = Callable[[list[int], int], Sequence[int]]


def evaluate(generate: GenerateFn, decode: Decode, samples: Iterable[NIAHSample],
             max_new_tokens: int) -> list[dict]:
    """Run ``generate(prompt_ids, max_new_tokens) -> new ids`` on every sample; one record each."""
    records = []
    for s in samples:
        new = list(generate(list(s.input_ids), max_new_tokens))
        pred = decode(new)
        records.append({"variant": s.variant, "length": s.length, "depth": s.depth,
                        "depth_actual": s.depth_actual, "index": s.index, "answer": s.answer,
                        "prediction": pred, "score": string_match(pred, s.answer)})
    return records


def summarise(records: Iterable[dict]) -> dict:
    """Accuracy (%) per variant × length and per variant × length × depth."""
    by_len: dict[tuple, list[float]] = {}
    by_cell: dict[tuple, list[float]] = {}
    for r in records:
        by_len.setdefault((r["variant"], r["length"]), []).append(r["score"])
        by_cell.setdefault((r["variant"], r["length"], r["depth"]), []).append(r["score"])

    def pct(v: list[float]) -> float:
        return 100.0 * sum(v) / len(v)

    return {
        "accuracy": [{"variant": v, "length": n, "accuracy": pct(s), "count": len(s)}
                     for (v, n), s in sorted(by_len.items())],
        "heatmap": [{"variant": v, "length": n, "depth": d, "accuracy": pct(s), "count": len(s)}
                    for (v, n, d), s in sorted(by_cell.items())],
    }


def teacher_forced_scores(logits_fn: Callable, samples: Sequence[NIAHSample], encode: Encode,
                          pad_id: int = 0, batch_size: int = 8, device=None) -> list[dict[str, float]]:
    """Greedy exact match in one forward pass per batch: feed ``prompt + " value."`` and score 1
    when the argmax at every position of " value" is the next true token — exactly when greedy
    decoding would emit the value right after the answer prefix. Samples are right-padded with
    ``pad_id``, which leaves the earlier positions of a causal model unchanged.

    logits_fn: ``ids [B, T] (long) -> logits [B, T, V]``. Returns per sample ``{"exact": 0|1,
    "token_accuracy": share of the value's tokens predicted right}``; the second is partial
    credit (teacher-forced, so one wrong token does not derail the rest as in generation)."""
    import torch

    seqs = [(len(s.input_ids), list(s.input_ids) + list(encode(" " + s.answer + "."))) for s in samples]
    n_dot = len(encode("."))
    scores: list[dict[str, float]] = []
    with torch.no_grad():
        for i in range(0, len(seqs), batch_size):
            part = seqs[i:i + batch_size]
            T = max(len(q) for _, q in part)
            ids = torch.full((len(part), T), pad_id, dtype=torch.long)
            for b, (_, q) in enumerate(part):
                ids[b, :len(q)] = torch.tensor(q)
            ids = ids.to(device) if device is not None else ids
            pred = logits_fn(ids).argmax(-1)
            for b, (a, q) in enumerate(part):
                end = len(q) - n_dot  # the value's tokens are q[a:end]
                right = pred[b, a - 1:end - 1] == ids[b, a:end]
                scores.append({"exact": float(bool(right.all())),
                               "token_accuracy": right.float().mean().item()})
    return scores


def teacher_forced_exact_match(logits_fn: Callable, samples: Sequence[NIAHSample], encode: Encode,
                               pad_id: int = 0, batch_size: int = 8, device=None) -> list[float]:
    """The ``exact`` scores of :func:`teacher_forced_scores`: one 0/1 per sample."""
    return [s["exact"] for s in teacher_forced_scores(logits_fn, samples, encode, pad_id, batch_size, device)]


def model_generate_fn(model, device: str | None = None) -> GenerateFn:
    """Greedy decoding with a ``titans.models.TitansLM`` (``model.generate``, temperature 0)."""
    import torch

    dev = device or next(model.parameters()).device

    @torch.no_grad()
    def generate(ids: list[int], max_new_tokens: int) -> list[int]:
        x = torch.tensor([ids], dtype=torch.long, device=dev)
        out = model.generate(x, max_new_tokens, temperature=0.0)
        return out[0, len(ids):].tolist()

    return generate
