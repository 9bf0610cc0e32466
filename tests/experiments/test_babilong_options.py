"""Options of ``experiments/babilong/run_babilong.py``."""

from __future__ import annotations

import pytest

from titans.evaluation.babilong import BabilongGenerator


def test_facts_option_sets_the_story_size(run_babilong):
    """``--facts qa1=2``: stories of two facts (the 2-fact diagnostic of the CPU probe), checked
    when parsed; a count the task cannot have or a malformed item is refused by name."""
    facts = run_babilong.parse_facts(["qa1=2", "qa4=3"])
    assert facts == {"qa1": 2, "qa4": 3}
    gen = BabilongGenerator(run_babilong.TOK.encode, seed=1, num_facts=facts)
    assert all(len(gen.sample("qa1", 0, i).facts) == 2 for i in range(5))
    for bad in ("qa9=2", "qa1", "qa1=two"):
        with pytest.raises(ValueError, match="--facts"):
            run_babilong.parse_facts([bad])
    with pytest.raises(ValueError, match="num_facts for qa4"):
        run_babilong.parse_facts(["qa4=9"])
