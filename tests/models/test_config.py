"""ModelConfig validation, JSON round trip and preset parameter counts."""

from __future__ import annotations

import pytest

from titans.models import PRESETS, VARIANTS, ModelConfig, count_parameters, get_config


@pytest.mark.parametrize("kwargs, match", [
    ({"variant": "gpt"}, "variant must be one of"),
    ({"d_model": 60, "n_heads": 7}, "n_heads=7 must divide d_model=60"),
    ({"variant": "mac", "segment_len": 20, "memory": {"chunk_size": 8}}, "multiple of the memory chunk"),
    ({"variant": "mac", "segment_len": 8, "n_retrieve": 9, "memory": {"chunk_size": 8}}, "n_retrieve"),
    ({"variant": "mag", "window": None}, "needs a sliding window"),
    ({"variant": "mal", "window": 0}, "window must be a positive int"),
    ({"memory": {"depht": 2}}, "unknown keys"),
    ({"memory": {"chunk_size": 0}}, "chunk_size must be a positive int"),
    ({"n_layers": 0}, "n_layers must be a positive int"),
    ({"attn_backend": "xformers"}, "attn_backend must be one of"),
    ({"gate_activation": "tanh"}, "gate_activation must be one of"),
])
def test_bad_configs_raise(kwargs, match):
    base = {"variant": "mag", "vocab_size": 64, "d_model": 64, "n_heads": 4}
    with pytest.raises(ValueError, match=match):
        ModelConfig(**{**base, **kwargs})


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        get_config("huge-mac")
    with pytest.raises(ValueError, match="unknown preset"):
        get_config("tiny-rnn")


@pytest.mark.parametrize("variant", VARIANTS)
def test_json_round_trip(variant):
    cfg = get_config(f"tiny-{variant}", vocab_size=100, memory={"depth": 1})
    again = ModelConfig.from_dict(__import__("json").loads(cfg.to_json()))
    assert again == cfg
    assert cfg.memory_config().depth == 1


def test_presets_cover_sizes_and_variants():
    assert len(PRESETS) == 6 * len(VARIANTS)
    assert {p.split("-")[1] for p in PRESETS} == set(VARIANTS)
    tiny = count_parameters(get_config("tiny-mac", vocab_size=256))
    assert 50_000 < tiny < 1_000_000


@pytest.mark.parametrize("size, target", [("170m", 170e6), ("340m", 340e6), ("400m", 400e6),
                                          ("760m", 760e6)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_paper_sizes_match_names(size, target, variant):
    cfg = get_config(f"{size}-{variant}", vocab_size=32000)
    n = count_parameters(cfg)
    assert abs(n / target - 1) < 0.05, (cfg.n_layers, n)


@pytest.mark.parametrize("vocab", [256, 32000])
@pytest.mark.parametrize("variant", VARIANTS)
def test_small_preset_is_about_30m(vocab, variant):
    n = count_parameters(get_config(f"small-{variant}", vocab_size=vocab))
    assert 20e6 <= n <= 40e6, n


def test_explicit_layers_win():
    assert get_config("340m-mag", n_layers=3).n_layers == 3


def test_memory_theta_bound_is_the_layers_default():
    mem = get_config("tiny-mag", vocab_size=64).memory_config()  # chunk 8, hidden 32
    assert mem.theta_max == pytest.approx(2.0 / (8 * mem.hidden_dim))
    assert get_config("tiny-mag", memory={"theta_max": 0.5}).memory_config().theta_max == 0.5
    assert get_config("tiny-mag", memory={"depth": 1}).memory_config().theta_max == 0.25
    small = get_config("small-mac", vocab_size=256).memory_config()  # chunk 64, hidden 256
    assert small.theta_max == pytest.approx(2.0 / (64 * 256))


def test_presets_table_prints(capsys):
    from titans.models.__main__ import main

    main(["--sizes", "tiny", "--vocab", "256"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(VARIANTS) and lines[1].startswith("tiny-mac")


def test_mac_memory_options_and_configs_saved_before_them():
    cfg = get_config("tiny-mac", vocab_size=64)
    assert cfg.mac_retrieval == "prefix" and cfg.mac_write_norm is False
    with pytest.raises(ValueError, match="mac_retrieval"):
        get_config("tiny-mac", vocab_size=64, mac_retrieval="bogus")
    old = get_config("tiny-mac", vocab_size=64).to_dict()
    del old["mac_retrieval"], old["mac_write_norm"]  # a MAC config written before the options
    assert ModelConfig.from_dict(old) == cfg  # the defaults are the earlier forms
    assert ModelConfig.from_dict({**old, "mac_retrieval": "token"}).mac_retrieval == "token"
    with pytest.raises(ValueError, match="mac_write_norm"):
        get_config("tiny-mac", vocab_size=64, mac_write_norm=1)
    with pytest.raises(ValueError, match="mac_write must be one of"):
        get_config("tiny-mac", vocab_size=64, mac_write="output")
