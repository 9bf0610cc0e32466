"""Language models: incremental == full, causality, exact masks, gradients, ablations, training,
save/load, generation and streaming — for every variant at the tiny preset."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import titans.models.attention as attention_module
from titans.models import VARIANTS, LMCache, ModelConfig, TitansLM, get_config

V = 64
ALL = list(VARIANTS)
TITANS = [v for v in VARIANTS if v != "transformer"]


def make(variant: str, dtype=torch.float64, **kw) -> TitansLM:
    """``tiny-{variant}``; ``mac-token`` is MAC with per-token retrieval, ``mac-wnorm`` MAC
    writing ``RMSNorm(y)`` into its memory, ``mac-input`` MAC writing its input tokens."""
    if variant == "mac-token":
        variant, kw = "mac", {"mac_retrieval": "token", **kw}
    if variant == "mac-wnorm":
        variant, kw = "mac", {"mac_write_norm": True, **kw}
    if variant == "mac-input":
        variant, kw = "mac", {"mac_write": "input", **kw}
    kw.setdefault("window", None if variant == "transformer" else 8)
    cfg = get_config(f"tiny-{variant}", vocab_size=V, **kw)
    return TitansLM(cfg).to(dtype)


def cache_numel(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel()
    if isinstance(obj, (list, tuple)):
        return sum(cache_numel(o) for o in obj)
    if dataclasses.is_dataclass(obj):
        return sum(cache_numel(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return 0


@pytest.mark.parametrize("variant", ALL + ["transformer-window", "mac-token", "mac-wnorm", "mac-input"])
def test_incremental_equals_full(variant):
    """T = 45 crosses 2 MAC segments (16), 5 memory chunks (8) and the window (8) several times."""
    kw = {"window": 8} if variant == "transformer-window" else {}
    model = make(variant.removesuffix("-window"), **kw)
    x = torch.randint(0, V, (2, 45))
    full = model(x).logits
    for pieces in ([1] * 45, [5, 13, 1, 20, 6], [16, 16, 13]):
        cache, outs, i = None, [], 0
        for n in pieces:
            out = model(x[:, i:i + n], cache=cache, use_cache=True)
            cache, i = out.cache, i + n
            outs.append(out.logits)
        torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-10, atol=1e-10)
        assert cache.pos == 45


@pytest.mark.parametrize("variant", ALL + ["mac-token", "mac-wnorm", "mac-input"])
def test_causal(variant):
    """Changing token t never changes the logits of positions < t (and does change later ones)."""
    model = make(variant)
    x = torch.randint(0, V, (1, 40))
    base = model(x).logits
    for t in (3, 17, 33):  # inside segment 0, right after a segment start, late
        y = x.clone()
        y[0, t] = (y[0, t] + 1) % V
        out = model(y).logits
        assert torch.equal(out[:, :t], base[:, :t])
        assert (out[:, t] - base[:, t]).abs().max() > 1e-6


def recorded_masks(model, x, monkeypatch):
    calls = []
    real = attention_module.attend

    def spy(q, k, v, n_prefix=0, window=None, offset=0, backend="auto", paired=False):
        calls.append(attention_module.attention_mask(q.shape[-2], k.shape[-2], n_prefix, window,
                                                     offset, paired=paired))
        return real(q, k, v, n_prefix, window, offset, backend, paired)

    monkeypatch.setattr(attention_module, "attend", spy)
    model(x)
    return calls


@pytest.mark.parametrize("variant", ["transformer", "mag", "mal", "mac", "mac-token"])
def test_variant_masks_match_hand_built(variant, monkeypatch):
    """The exact mask each variant uses (first layer) against one written out from Fig. 3."""
    T, W, Np, C, Nl = 20, 8, 4, 16, 4
    extra = {"mac_retrieval": "token"} if variant == "mac-token" else {}
    variant = variant.removesuffix("-token")
    model = make(variant, dtype=torch.float32, window=None if variant == "transformer" else W, **extra)
    masks = recorded_masks(model, torch.randint(0, V, (1, T)), monkeypatch)
    per_layer = len(masks) // model.config.n_layers
    layer0 = masks[:per_layer]
    if variant == "transformer":  # full causal, no persistent tokens
        assert [m.shape for m in layer0] == [(T, T)]
        assert torch.equal(layer0[0], torch.ones(T, T, dtype=torch.bool).tril())
    elif variant in ("mag", "mal"):  # P always visible + sliding window of W over the tokens
        want = torch.zeros(T, Np + T, dtype=torch.bool)
        want[:, :Np] = True
        for i in range(T):
            for j in range(max(0, i - W + 1), i + 1):
                want[i, Np + j] = True
        assert len(layer0) == 1 and torch.equal(layer0[0], want)
    elif extra:  # MAC, token retrieval: per segment, [P ‖ h_1..h_n ‖ S_1..S_n], h_j and S_j seen iff j ≤ i
        sizes = [C, T - C]
        assert len(layer0) == 2
        for m, n in zip(layer0, sizes):
            want = torch.zeros(n, Np + 2 * n, dtype=torch.bool)
            want[:, :Np] = True
            for i in range(n):
                for j in range(i + 1):
                    want[i, Np + j] = want[i, Np + n + j] = True
            assert torch.equal(m, want)
    else:  # MAC, prefix retrieval: per segment, [P ‖ h ‖ S], P and h visible to all
        sizes = [C, T - C]
        assert len(layer0) == 2
        for m, n in zip(layer0, sizes):
            want = torch.zeros(n, Np + Nl + n, dtype=torch.bool)
            want[:, :Np + Nl] = True
            want[:, Np + Nl:] = torch.ones(n, n, dtype=torch.bool).tril()
            assert torch.equal(m, want)


@pytest.mark.parametrize("variant", TITANS)
def test_gradients_reach_memory_init_gates_and_persistent(variant):
    model = make(variant, dtype=torch.float32)
    x = torch.randint(0, V, (2, 40))
    model(x, targets=x.roll(-1, 1)).loss.backward()
    mixer = model.blocks[0].mixer
    for name, p in [("memory_init[0]", mixer.memory.memory_init[0]),
                    ("memory_init[-1]", mixer.memory.memory_init[-1]),
                    ("gate_proj", mixer.memory.gate_proj.weight),
                    ("persistent", mixer.persistent.tokens)] + (
                        [("retrieve_init", mixer.retrieve_init)] if hasattr(mixer, "retrieve_init") else []):
        assert p.grad is not None and p.grad.abs().max() > 0, name


ABLATIONS = [{"n_persistent": 0}, {"memory": {"depth": 1}}, {"memory": {"momentum": False}},
             {"memory": {"weight_decay": False}}, {"memory": {"conv_kernel": 0}}]


@pytest.mark.parametrize("ablation", ABLATIONS, ids=lambda a: str(a))
@pytest.mark.parametrize("variant", TITANS)
def test_ablations_build_and_train_a_step(variant, ablation):
    model = make(variant, dtype=torch.float32, **ablation)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randint(0, V, (2, 24))
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(x, targets=x.roll(-1, 1)).loss
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("variant", ALL)
def test_loss_falls_on_repetitive_bytes(variant):
    torch.manual_seed(0)
    text = b"the cat sat on the mat. " * 40
    data = torch.tensor(list(text)) % V
    model = make(variant, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        starts = torch.randint(0, len(data) - 33, (4,))
        batch = torch.stack([data[s:s + 33] for s in starts])
        loss = model(batch[:, :-1], targets=batch[:, 1:]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("variant", ALL)
def test_save_load_round_trip(variant, tie, tmp_path):
    model = make(variant, dtype=torch.float32, tie_embeddings=tie)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = TitansLM.from_pretrained(tmp_path)
    assert loaded.config == model.config
    for (n1, a), (n2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(a, b), n1
    if tie:
        assert loaded.head.weight is loaded.embed.weight
    x = torch.randint(0, V, (2, 20))
    assert torch.equal(model(x).logits, loaded(x).logits)


@pytest.mark.parametrize("variant", ALL)
def test_generate_greedy_matches_full_forward(variant):
    model = make(variant)
    prompt = torch.randint(0, V, (2, 7))
    ids = model.generate(prompt, 30, temperature=0)
    assert ids.shape == (2, 37) and torch.equal(ids[:, :7], prompt)
    logits = model(ids).logits
    torch.testing.assert_close(ids[:, 7:], logits[:, 6:-1].argmax(-1), rtol=0, atol=0)
    # top_k=1 sampling is greedy; seeded sampling is reproducible
    assert torch.equal(model.generate(prompt, 10, top_k=1), ids[:, :17])
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(model.generate(prompt, 10, top_p=0.9, generator=g1),
                       model.generate(prompt, 10, top_p=0.9, generator=g2))


def test_generate_eos_pads_and_stops():
    model = make("lmm")
    prompt = torch.randint(0, V, (2, 5))
    greedy = model.generate(prompt, 8, temperature=0)
    eos = int(greedy[0, 5])  # the first sequence emits it at once
    ids = model.generate(prompt, 8, temperature=0, eos_token_id=eos)
    assert (ids[0, 5:] == eos).all()
    with pytest.raises(ValueError, match="top_p"):
        model.generate(prompt, 2, top_p=1.5)


@pytest.mark.parametrize("variant", ALL)
def test_stream_matches_full_forward(variant):
    model = make(variant)
    x = torch.randint(0, V, (2, 50))
    full = model(x[:, :-1], targets=x[:, 1:])
    pieces = [x[:, :12], x[:, 12:13], x[:, 13:40], x[:, 40:]]
    outs = list(model.stream(pieces))
    torch.testing.assert_close(torch.cat([o.logits for o in outs], 1)[:, :-1], full.logits,
                               rtol=1e-10, atol=1e-10)
    n = [p.shape[1] - (1 if i == len(pieces) - 1 else 0) for i, p in enumerate(pieces)]
    total = sum(o.loss * k for o, k in zip(outs, n)) / sum(n)
    torch.testing.assert_close(total, full.loss, rtol=1e-10, atol=1e-10)
    # explicit targets
    tgt = [torch.full_like(p, -100) for p in pieces]
    assert all(o.loss == 0 for o in model.stream(pieces, tgt))


@pytest.mark.parametrize("variant", TITANS + ["transformer-window", "mac-token"])
def test_decode_state_is_bounded(variant):
    kw = {"window": 8} if variant == "transformer-window" else {}
    model = make(variant.removesuffix("-window"), dtype=torch.float32, **kw)
    out = model(torch.randint(0, V, (1, 3)), use_cache=True)
    cache, sizes = out.cache, []
    with torch.no_grad():
        for t in range(80):
            out = model(torch.randint(0, V, (1, 1)), cache=cache, use_cache=True)
            cache = out.cache
            if t in (39, 71):  # same phase of segment (16), chunk (8) and window (8)
                sizes.append(cache_numel(cache))
    assert isinstance(cache, LMCache) and sizes[0] == sizes[1]


def test_forward_input_errors():
    model = make("mag", dtype=torch.float32)
    with pytest.raises(ValueError, match="input_ids"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        model(torch.zeros(1, 5, dtype=torch.long), targets=torch.zeros(1, 4, dtype=torch.long))
    assert isinstance(ModelConfig.from_dict(model.config.to_dict()), ModelConfig)


def test_gradient_checkpointing_gives_the_same_gradients():
    model = make("mac", dtype=torch.float64)
    x = torch.randint(0, V, (2, 20))
    model(x, targets=x.roll(-1, 1)).loss.backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing = True
    model(x, targets=x.roll(-1, 1)).loss.backward()
    for a, p in zip(plain, model.parameters()):
        torch.testing.assert_close(p.grad, a, rtol=1e-10, atol=1e-12)


def zen_bytes() -> torch.Tensor:
    import codecs
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return torch.tensor(list(codecs.decode(this.s, "rot13").encode())) % V


@pytest.mark.parametrize("variant", ["mal", "mac"])
def test_training_on_text_stays_finite(variant):
    """Regression: with the memory layer's own θ_max (4 / hidden) these diverged to NaN within
    18-25 steps on this text; the models' default bound (0.25 / hidden) trains."""
    torch.manual_seed(0)
    data = zen_bytes().repeat(4)
    model = make(variant, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    for _ in range(40):
        idx = torch.randint(0, len(data) - 65, (8,))
        batch = torch.stack([data[i:i + 65] for i in idx])
        loss = model(batch[:, :-1], targets=batch[:, 1:]).loss
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()


@pytest.mark.parametrize("variant", ["lmm", "mag", "mal", "mac"])
def test_training_forward_makes_one_memory_call_per_layer(variant, monkeypatch):
    """Without a cache (a training step) the memory runs P ‖ x in one op call even when it ends
    inside a chunk; with one, the tail is a second call (to keep that chunk's start weights).
    The logits are the same either way."""
    import titans.memory.neural_memory as memory_module

    model = make(variant)
    # LMM/MAG/MAL: 4 persistent + 45 tokens = 6 chunks of 8 and a tail of 1; MAC (segment 16):
    # segments of 16, 16 and 13 (the last = a chunk of 8 and a tail of 5)
    x = torch.randint(0, V, (2, 45))
    calls = []
    real = memory_module.neural_memory

    def counting(*args, **kwargs):
        calls.append(args[0].shape[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(memory_module, "neural_memory", counting)
    train = model(x).logits
    n_train = len(calls)
    calls.clear()
    cached = model(x, use_cache=True).logits
    per_layer = 3 if variant == "mac" else 1  # MAC: one call per segment
    assert n_train == per_layer * model.config.n_layers
    assert len(calls) == (per_layer + 1) * model.config.n_layers
    torch.testing.assert_close(train, cached, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("write", ["attention", "input"])
def test_mac_write_source(write):
    """``mac_write``: MAC's memory is fed the attention output y (the paper's) or the segment's
    input tokens; the memory's input is checked directly, segment by segment."""
    model = make("mac", mac_write=write)
    mixer = model.blocks[0].mixer
    seen, inputs, outputs = [], [], []
    mixer.memory.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    mixer.register_forward_pre_hook(lambda m, a: inputs.append(a[0]))
    mixer.attn.register_forward_hook(lambda m, a, o: outputs.append(o[0]))
    model(torch.randint(0, V, (2, 20)))  # segments of 16: two memory calls
    expected = [inputs[0][:, :16], inputs[0][:, 16:]] if write == "input" else outputs
    assert len(seen) == 2
    for got, want in zip(seen, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
