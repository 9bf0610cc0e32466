"""Options of ``experiments/babilong/run_babilong.py``."""

from __future__ import annotations

import argparse
import math
import random

import pytest

from titans.evaluation.babilong import BabilongGenerator


def test_facts_option_sets_the_story_size(run_babilong):
    """``--facts qa1=2``: stories of two facts (the 2-fact diagnostic of the CPU probe), checked
    when parsed; a count the task cannot have or a malformed item is refused by name."""
    schedule = run_babilong.parse_facts(["qa1=2", "qa4=3"])
    assert schedule == {"qa1": [(0, 2)], "qa4": [(0, 3)]}
    facts = run_babilong.facts_at(schedule, math.inf)
    assert facts == {"qa1": 2, "qa4": 3}
    gen = BabilongGenerator(run_babilong.TOK.encode, seed=1, num_facts=facts)
    assert all(len(gen.sample("qa1", 0, i).facts) == 2 for i in range(5))
    for bad in ("qa9=2", "qa1", "qa1=two", "qa1=2@x"):
        with pytest.raises(ValueError, match="--facts"):
            run_babilong.parse_facts([bad])
    with pytest.raises(ValueError, match="num_facts for qa4"):
        run_babilong.parse_facts(["qa4=9"])
    with pytest.raises(ValueError, match="twice at step 0"):
        run_babilong.parse_facts(["qa1=2", "qa1=4@0"])


def test_facts_curriculum_follows_the_training_step(run_babilong):
    """``--facts qa1=2 qa1=4@10 qa1=8@20``: training samples drawn for steps 0-9 have 2 facts,
    10-19 four, from 20 on eight; the test uses the last stage; a task before its first stage
    keeps its default."""
    schedule = run_babilong.parse_facts(["qa1=8@20", "qa1=2", "qa1=4@10"])
    assert schedule == {"qa1": [(0, 2), (10, 4), (20, 8)]}
    steps = (0, 9, 10, 19, 20, 10**6)
    assert [run_babilong.facts_at(schedule, s)["qa1"] for s in steps] == [2, 2, 4, 4, 8, 8]
    assert run_babilong.facts_at(schedule, math.inf) == {"qa1": 8}
    assert run_babilong.facts_at(run_babilong.parse_facts(["qa1=4@5"]), 0) == {}  # default before stage 1

    def generator_at(step):
        return BabilongGenerator(run_babilong.TOK.encode, seed=3,
                                 num_facts=run_babilong.facts_at(schedule, step))

    args = argparse.Namespace(batch=8, niah_fraction=0.5, tasks=["qa1"], zero_fraction=1.0, train_len=64)
    make = run_babilong.babilong_examples(generator_at, args)  # 4 samples a step
    text = {step: run_babilong.TOK.decode(make(random.Random(0), 4 * step)[0]) for step in (0, 12, 25)}
    # a qa1 fact is one sentence: count the sentences before the question
    sentences = {step: t.split("\nQuestion:")[0].count(".") for step, t in text.items()}
    assert sentences == {0: 2, 12: 4, 25: 8}
