"""BABILong-style reasoning-in-a-haystack: seeded bAbI qa1–qa5 stories hidden in Gutenberg text.

The stories follow the grammars of the original bAbI tasks (Weston et al., 2015):

* qa1 single supporting fact — people move; "Where is Mary?"
* qa2 two supporting facts — people move, pick up and drop objects; "Where is the football?"
* qa3 three supporting facts — "Where was the apple before the kitchen?"
* qa4 two-argument relations — rooms on a grid; "What is north of the kitchen?" /
  "What is the kitchen north of?"
* qa5 three-argument relations — people also give objects to each other; "Who gave the milk to
  Bill?", "Who received the milk?", "What did Fred give to Bill?", "Who did Fred give the milk
  to?", "Who gave the milk?" (always about the most recent matching hand-over).

A BABILong sample scatters the story's facts, in order, between background sentences of the
Gutenberg test split until the prompt reaches a target token length (0 = facts only) and asks
the question at the end. Everything is a pure function of (seed, task, length, index).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .niah import Encode, Haystack, TokenCounter, derive_seed, fill_haystack

TASKS = ("qa1", "qa2", "qa3", "qa4", "qa5")
ACTORS = ("Mary", "John", "Daniel", "Sandra")
ACTORS_QA5 = ("Fred", "Bill", "Jeff", "Mary")
LOCATIONS = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
OBJECTS = ("football", "apple", "milk")
MOVE = ("{a} moved to the {l}.", "{a} went to the {l}.", "{a} journeyed to the {l}.",
        "{a} travelled to the {l}.", "{a} went back to the {l}.")
GET = ("{a} picked up the {o}.", "{a} got the {o}.", "{a} grabbed the {o}.", "{a} took the {o}.",
       "{a} picked up the {o} there.", "{a} got the {o} there.", "{a} grabbed the {o} there.",
       "{a} took the {o} there.")
DROP = ("{a} dropped the {o}.", "{a} put down the {o}.", "{a} discarded the {o}.", "{a} left the {o}.",
        "{a} dropped the {o} there.", "{a} put down the {o} there.", "{a} discarded the {o} there.",
        "{a} left the {o} there.")
GIVE = ("{a} gave the {o} to {b}.", "{a} passed the {o} to {b}.", "{a} handed the {o} to {b}.")
DIRECTIONS = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}
DEFAULT_FACTS = {"qa1": 8, "qa2": 12, "qa3": 20, "qa4": 2, "qa5": 12}


@dataclass(frozen=True)
class BabiStory:
    """A bAbI story: facts (one sentence each), a question, its one-word answer, and the indices
    of the supporting facts."""

    task: str
    facts: list[str]
    question: str
    answer: str
    supporting: list[int] = field(default_factory=list)


class _World:
    """People, their locations and the objects they carry; every event is logged."""

    def __init__(self, rng: random.Random, actors: Sequence[str]):
        self.rng = rng
        self.actors = actors
        self.where: dict[str, str] = {}        # person -> location
        self.holder: dict[str, str] = {}       # object -> person holding it
        self.placed: dict[str, str] = {}       # object -> location where it lies
        self.path: dict[str, list[tuple[str, int]]] = {}  # object -> [(location, fact index)]
        self.gives: list[tuple[str, str, str, int]] = []  # (giver, object, receiver, fact index)
        self.facts: list[str] = []
        self.last_move: dict[str, int] = {}

    def loc(self, obj: str) -> str | None:
        if obj in self.holder:
            return self.where[self.holder[obj]]
        return self.placed.get(obj)

    def _track(self, obj: str) -> None:
        where = self.loc(obj)
        path = self.path.setdefault(obj, [])
        if where is not None and (not path or path[-1][0] != where):
            path.append((where, len(self.facts) - 1))

    def move(self) -> None:
        a = self.rng.choice(self.actors)
        l = self.rng.choice([x for x in LOCATIONS if x != self.where.get(a)])
        self.where[a] = l
        self.facts.append(self.rng.choice(MOVE).format(a=a, l=l))
        self.last_move[a] = len(self.facts) - 1
        for o, h in self.holder.items():
            if h == a:
                self._track(o)

    def gettable(self) -> list[tuple[str, str]]:
        out = []
        for a in self.actors:
            if a not in self.where:
                continue
            for o in OBJECTS:
                if o not in self.holder and self.placed.get(o, self.where[a]) == self.where[a]:
                    out.append((a, o))
        return out

    def get(self) -> None:
        a, o = self.rng.choice(self.gettable())
        self.holder[o] = a
        self.placed.pop(o, None)
        self.facts.append(self.rng.choice(GET).format(a=a, o=o))
        self._track(o)

    def drop(self) -> None:
        o = self.rng.choice(sorted(self.holder))
        a = self.holder.pop(o)
        self.placed[o] = self.where[a]
        self.facts.append(self.rng.choice(DROP).format(a=a, o=o))

    def givable(self) -> list[tuple[str, str, str]]:
        out = []
        for o, a in sorted(self.holder.items()):
            for b in self.actors:
                if b != a and self.where.get(b) == self.where[a]:
                    out.append((a, o, b))
        return out

    def give(self) -> None:
        a, o, b = self.rng.choice(self.givable())
        self.holder[o] = b
        self.facts.append(self.rng.choice(GIVE).format(a=a, o=o, b=b))
        self.gives.append((a, o, b, len(self.facts) - 1))

    def step(self, allow_give: bool) -> None:
        options = [("move", 4.0)]
        if self.gettable():
            options.append(("get", 2.0))
        if self.holder:
            options.append(("drop", 1.0))
        if allow_give and self.givable():
            options.append(("give", 4.0))
        names, weights = zip(*options)
        getattr(self, self.rng.choices(names, weights)[0])()


def _qa1(rng: random.Random, n: int) -> BabiStory:
    w = _World(rng, ACTORS)
    for _ in range(n):
        w.move()
    a = rng.choice(sorted(w.where))
    return BabiStory("qa1", w.facts, f"Where is {a}?", w.where[a], [w.last_move[a]])


def _objects_story(rng: random.Random, n: int, allow_give: bool, actors: Sequence[str]) -> _World:
    w = _World(rng, actors)
    w.move()
    while len(w.facts) < n:
        w.step(allow_give)
    return w


def _qa2(rng: random.Random, n: int) -> BabiStory | None:
    w = _objects_story(rng, n, False, ACTORS)
    known = [o for o in OBJECTS if w.loc(o) is not None]
    if not known:
        return None
    o = rng.choice(known)
    sup = [w.path[o][-1][1]]
    return BabiStory("qa2", w.facts, f"Where is the {o}?", w.loc(o), sup)


def _qa3(rng: random.Random, n: int) -> BabiStory | None:
    w = _objects_story(rng, n, False, ACTORS)
    cands = []
    for o in OBJECTS:
        path = [p for p, _ in w.path.get(o, [])]
        if len(path) >= 2 and path.count(path[-1]) == 1:  # "before the X" must be unambiguous
            cands.append(o)
    if not cands:
        return None
    o = rng.choice(cands)
    (prev, i), (last, j) = w.path[o][-2], w.path[o][-1]
    return BabiStory("qa3", w.facts, f"Where was the {o} before the {last}?", prev, [i, j])


def _qa4(rng: random.Random, n: int) -> BabiStory:
    """Rooms on a grid: a chain of ``n`` adjacency facts; the question inverts or repeats one."""
    rooms = rng.sample(LOCATIONS, n + 1)
    pos = {rooms[0]: (0, 0)}
    facts = []
    for i in range(1, n + 1):
        while True:
            anchor = rooms[rng.randrange(i)]
            d = rng.choice(sorted(DIRECTIONS))
            dx, dy = DIRECTIONS[d]
            p = (pos[anchor][0] + dx, pos[anchor][1] + dy)
            if p not in pos.values():
                break
        pos[rooms[i]] = p
        facts.append(f"The {rooms[i]} is {d} of the {anchor}.")
    k = rng.randrange(n)
    subj, rest = facts[k][4:-1].split(" is ")
    d, obj = rest.split(" of the ")
    if rng.random() < 0.5:
        return BabiStory("qa4", facts, f"What is {d} of the {obj}?", subj, [k])
    return BabiStory("qa4", facts, f"What is the {subj} {d} of?", obj, [k])


def _qa5(rng: random.Random, n: int) -> BabiStory | None:
    w = _objects_story(rng, n, True, ACTORS_QA5)
    if not w.gives:
        return None
    a, o, b, i = w.gives[-1]
    form = rng.randrange(5)
    if form == 0:
        q, ans = f"Who gave the {o} to {b}?", a
    elif form == 1:
        q, ans = f"Who received the {o}?", b
    elif form == 2:
        q, ans = f"What did {a} give to {b}?", o
    elif form == 3:
        q, ans = f"Who did {a} give the {o} to?", b
    else:
        q, ans = f"Who gave the {o}?", a
    return BabiStory("qa5", w.facts, q, ans, [i])


_BUILDERS = {"qa1": _qa1, "qa2": _qa2, "qa3": _qa3, "qa4": _qa4, "qa5": _qa5}


def generate_story(task: str, rng: random.Random, num_facts: int | None = None) -> BabiStory:
    """One story of ``task`` with ``num_facts`` facts (task default if None)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    n = DEFAULT_FACTS[task] if num_facts is None else num_facts
    # The smallest story that can ask the question: qa2 a pick-up after a move, qa3 two moves of a
    # carried object, qa5 a give (two actors moved into one room, a pick-up, the give).
    low = {"qa1": 1, "qa2": 2, "qa3": 3, "qa4": 1, "qa5": 4}[task]
    high = 5 if task == "qa4" else 10_000
    if not isinstance(n, int) or not low <= n <= high:
        raise ValueError(f"num_facts for {task} must be an int in [{low}, {high}], got {n!r}")
    for _ in range(1000):
        story = _BUILDERS[task](rng, n)
        if story is not None:
            return story
    raise RuntimeError(f"could not generate a valid {task} story with {n} facts")


@dataclass(frozen=True)
class BabilongSample:
    """A bAbI story hidden in background text; ``input_ids`` encode ``prompt``."""

    task: str
    length: int            # requested token budget (0 = facts only)
    index: int
    facts: list[str]
    question: str
    answer: str
    supporting: list[int]
    prompt: str
    input_ids: list[int]
    fact_sentence_index: list[int]  # position of each fact among the context sentences

    def to_dict(self) -> dict:
        return asdict(self)


QUESTION = "\nQuestion: {question}\nAnswer:"


class BabilongGenerator:
    """Deterministic BABILong-style samples for a tokenizer given as ``encode``."""

    def __init__(self, encode: Encode, seed: int = 0, haystack_path: str | Path | None = None,
                 num_facts: dict[str, int] | None = None):
        if not callable(encode):
            raise ValueError("encode must be a callable str -> sequence of token ids")
        self.encode = encode
        self.seed = int(seed)
        self.count = TokenCounter(encode)
        self.haystack = Haystack("essay", haystack_path)
        self.num_facts = dict(DEFAULT_FACTS, **(num_facts or {}))

    def sample(self, task: str, length: int, index: int = 0) -> BabilongSample:
        if not isinstance(length, int) or length < 0:
            raise ValueError(f"length must be a non-negative int (tokens; 0 = facts only), got {length!r}")
        rng = random.Random(derive_seed(self.seed, "babilong", task, length, index))
        story = generate_story(task, random.Random(derive_seed(self.seed, "story", task, index)),
                               self.num_facts[task])
        question = QUESTION.format(question=story.question)
        facts_tokens = sum(self.count(f) for f in story.facts) + len(self.encode(question))
        if length and facts_tokens > length:
            raise ValueError(f"length={length} is below the {facts_tokens} tokens of the {task} story")
        background: list[str] = []
        if length:
            # Background sentences naming a bAbI person are skipped so the story stays well defined.
            background, _ = fill_haystack(self.haystack.sentences(rng), self.count,
                                          length - facts_tokens, forbidden=ACTORS + ACTORS_QA5)
        while True:
            slots = sorted(rng.randrange(len(background) + 1) for _ in story.facts)
            sents: list[str] = []
            where: list[int] = []
            b = 0
            for f, slot in zip(story.facts, slots):
                sents.extend(background[b:slot])
                b = slot
                where.append(len(sents))
                sents.append(f)
            sents.extend(background[b:])
            prompt = " ".join(sents) + question
            ids = list(self.encode(prompt))
            if not length or len(ids) <= length or not background:
                break
            background.pop()  # BPE joins can differ from per-sentence counts: trim and re-place
        return BabilongSample(task, length, index, story.facts, story.question, story.answer,
                              story.supporting, prompt, ids, where)

    def sweep(self, tasks: Iterable[str], lengths: Iterable[int], samples: int,
              start_index: int = 0) -> Iterator[BabilongSample]:
        lengths = list(lengths)
        for task in tasks:
            for length in lengths:
                for i in range(samples):
                    yield self.sample(task, length, start_index + i)


def first_word_match(prediction: str, answer: str) -> float:
    """1.0 if the first word of ``prediction`` (punctuation stripped) is ``answer``."""
    words = prediction.strip().split()
    if not words:
        return 0.0
    return float(words[0].strip(".,;:!?\"'").lower() == answer.lower())
