"""NeuralMemory layer: shapes, piecewise == whole, ablations, gradients, config errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from titans.memory import NeuralMemory, NeuralMemoryConfig
from titans.ops import MemoryState, neural_memory, neural_memory_reference


def make(dtype=torch.float64, **kw):
    cfg = NeuralMemoryConfig(**{"d_model": 32, "num_heads": 2, "depth": 2, "chunk_size": 8, **kw})
    return NeuralMemory(cfg).to(dtype)


def stream_in_pieces(m, x, pieces):
    """The layer fed ``x`` piece by piece with its cache carried: (outputs joined, last cache)."""
    outs, cache, i = [], None, 0
    for n in pieces:
        out, cache = m(x[:, i:i + n], cache)
        outs.append(out)
        i += n
    return torch.cat(outs, 1), cache


def test_shapes_and_state():
    m = make(torch.float32)
    x = torch.randn(3, 21, 32)
    y, cache = m(x)
    assert y.shape == x.shape
    assert cache.offset == 21 % 8 and cache.anchor is not None
    assert cache.state.weights[0].shape == (3, 2, 16, 64)


@pytest.mark.parametrize("pieces", [[1] * 30, [3, 8, 1, 1, 13, 4], [16, 14], [7, 9, 5, 9]])
@pytest.mark.parametrize("depth", [1, 2])
def test_piecewise_equals_whole(pieces, depth):
    m = make(depth=depth)
    x = torch.randn(2, sum(pieces), 32, dtype=torch.float64)
    y, full = m(x)
    y_pieces, cache = stream_in_pieces(m, x, pieces)
    torch.testing.assert_close(y_pieces, y, rtol=1e-10, atol=1e-10)
    for a, b in zip(cache.state.weights + cache.state.momentum, full.state.weights + full.state.momentum):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pieces", [[3, 8, 1, 13, 4], [16, 14]])
def test_forget_to_init_piecewise_equals_whole_and_matches_reference(pieces):
    """``forget_target="init"``: the layer is the reference op with W̄ = its learned initial
    memory, streams piece by piece exactly, trains that initial memory through the decay too,
    and differs from the paper's forgetting towards zero."""
    torch.manual_seed(0)
    m = make(depth=2, forget_target="init", alpha_init=0.3)
    x = torch.randn(2, sum(pieces), 32, dtype=torch.float64)
    y, full = m(x)
    q, k, v, _ = m._qkv(x, None)
    y_ref, _ = neural_memory_reference(q, k, v, *(g.double() for g in m._gates(x)), m.initial_state(),
                                       chunk_size=8,
                                       forget_target=m.initial_state().weights)
    torch.testing.assert_close(y, m._output(x, y_ref), rtol=1e-10, atol=1e-10)
    y_pieces, cache = stream_in_pieces(m, x, pieces)
    torch.testing.assert_close(y_pieces, y, rtol=1e-10, atol=1e-10)
    for a, b in zip(cache.state.weights, full.state.weights):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    zero = make(depth=2, alpha_init=0.3)
    zero.load_state_dict(m.state_dict())
    assert (zero(x)[0] - y).abs().max() > 1e-4
    # W̄ = M_0 gets gradient from the decay term as well as from being the start state
    (g_init,) = torch.autograd.grad(y.square().sum(), [m.memory_init[0]])
    (g_zero,) = torch.autograd.grad(zero(x)[0].square().sum(), [zero.memory_init[0]])
    assert (g_init - g_zero).abs().max() > 1e-6


def test_layer_matches_reference_op():
    """The layer's memory read-out equals the token-by-token reference on its own q/k/v/gates."""
    m = make(depth=2)
    x = torch.randn(2, 19, 32, dtype=torch.float64)
    q, k, v, _ = m._qkv(x, None)
    gates = m._gates(x)
    y_ref, _ = neural_memory_reference(q, k, v, *(g.double() for g in gates), m.initial_state(),
                                       chunk_size=8)
    y, _ = m(x)
    torch.testing.assert_close(y, m._output(x, y_ref), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ablation", [
    {"depth": 1}, {"momentum": False}, {"weight_decay": False}, {"conv_kernel": 0},
    {"depth": 3, "activation": "silu"}, {"output_gate": "none"},
])
def test_ablations_build_and_train_a_step(ablation):
    m = make(torch.float32, **ablation)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    x = torch.randn(2, 20, 32)
    y, _ = m(x)
    loss = (y - x.roll(1, 1)).pow(2).mean()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    if not m.config.momentum:
        _, _, eta = None, None, m._gates(x)[1]
        assert torch.count_nonzero(eta) == 0


def test_gradients_reach_initial_memory_and_gates():
    m = make(torch.float32)
    y, _ = m(torch.randn(2, 20, 32))
    y.pow(2).mean().backward()
    for name in ("memory_init.0", "memory_init.1", "gate_proj.weight", "gate_proj.bias", "qkv_proj.weight"):
        grad = dict(m.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_retrieve_reads_without_writing():
    m = make()
    x = torch.randn(2, 12, 32, dtype=torch.float64)
    r0 = m.retrieve(x)
    _, cache = m(x)
    r1 = m.retrieve(x, cache.state)
    assert r0.shape == x.shape and not torch.allclose(r0, r1)
    torch.testing.assert_close(m.retrieve(x, cache.state), r1)  # reading changed nothing


def _recall_loss(theta_max: float, steps: int = 150) -> tuple[float, float]:
    """Outer-train a 1-head linear memory to recall, at a later query, the value stored with a
    key earlier in the same sequence. Returns (mean loss of first, last 20 steps)."""
    torch.manual_seed(0)
    cfg = NeuralMemoryConfig(d_model=16, num_heads=1, depth=1, chunk_size=1, conv_kernel=0,
                             theta_max=theta_max, theta_init=0.5)
    m = NeuralMemory(cfg)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        keys = torch.stack([torch.nn.functional.one_hot(torch.randperm(8)[:4], 8).float()
                            for _ in range(16)])
        vals = torch.randn(16, 4, 8)
        x = torch.cat([torch.cat([keys, vals], -1), torch.cat([keys, torch.zeros_like(vals)], -1)], 1)
        y, _ = m(x)
        loss = (y[:, 4:, 8:] - vals).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses[:20]) / 20, sum(losses[-20:]) / 20


def test_learns_to_recall_in_context():
    """With test-time learning the layer recalls values (loss ≪ 1); with θ ≈ 0 it cannot."""
    first, last = _recall_loss(theta_max=1.0)
    _, last_frozen = _recall_loss(theta_max=1e-6)
    assert last < 0.25 * first
    assert last_frozen > 0.8


@pytest.mark.parametrize("kw,match", [
    ({"num_heads": 3}, "num_heads"), ({"depth": 0}, "depth"), ({"chunk_size": 0}, "chunk_size"),
    ({"activation": "tanh"}, "activation"), ({"output_gate": "relu"}, "output_gate"),
    ({"eta_init": 1.0}, "eta_init"), ({"theta_max": -1.0}, "theta_max"), ({"conv_kernel": -1}, "conv_kernel"),
    ({"value_norm": "l2"}, "value_norm"), ({"eta_max": 1.5}, "eta_max"), ({"eta_max": 0.5}, "eta_init"),
    ({"recompute_segment": 0}, "recompute_segment"), ({"recompute_segment": 100}, "recompute_segment"),
    ({"forget_target": "half"}, "forget_target"),
])
def test_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        NeuralMemoryConfig(**{"d_model": 32, "num_heads": 2, **kw})


def test_recomputed_segments_leave_the_layer_unchanged():
    """``recompute_segment``: the layer's output and every parameter gradient equal the plain
    layer's (float64), for a length that is no multiple of the segment or the chunk."""
    torch.manual_seed(0)
    plain = make()
    recomputed = make(recompute_segment=16)
    recomputed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 45, 32, dtype=torch.float64)
    outs = []
    for m in (plain, recomputed):
        y, _ = m(x, need_cache=False)
        y.pow(2).sum().backward()
        outs.append(y)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-12, atol=1e-12)
    for (name, a), b in zip(plain.named_parameters(), recomputed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="d_model"):
        make()(torch.randn(2, 5, 31, dtype=torch.float64))


def test_bf16_autocast_close_to_fp32():
    m = make(torch.float32)
    x = torch.randn(2, 40, 32)
    y32, _ = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y16, _ = m(x)
        y16.float().pow(2).mean().backward()
    rel = (y16.float() - y32).norm() / y32.norm()
    assert rel < 3e-2, rel


def _weight_growth(depth: int, chunk: int, hidden: int, theta: float, eta: float = 0.9,
                   n_chunks: int = 24) -> float:
    """max|W_final| / max|W_0| of the op driven at θ_t = theta, η_t = eta, no decay, on a stream
    whose keys are nearly parallel (SiLU features of one shared direction plus noise, unit norm):
    the worst case for the chunk-summed inner step (every gradient points the same way)."""
    g = torch.Generator().manual_seed(0)
    B, H, D, T = 2, 2, 32, chunk * n_chunks
    common = torch.randn(B, 1, H, D, generator=g)

    def features() -> torch.Tensor:
        x = 0.7 * common + 0.3 * torch.randn(B, T, H, D, generator=g)
        return torch.nn.functional.normalize(torch.nn.functional.silu(2 * x), dim=-1).double()

    q, k = features(), features()
    v = torch.randn(B, T, H, D, generator=g, dtype=torch.float64)
    dims = [D] + [hidden] * (depth - 1) + [D]
    w0 = tuple(torch.randn(H, dims[i], dims[i + 1], generator=g, dtype=torch.float64)
               * (1.0 if i == 0 else dims[i] ** -0.5) for i in range(depth))
    ones = torch.ones(B, T, H, dtype=torch.float64)
    _, state = neural_memory(q, k, v, theta * ones, eta * ones, 0 * ones, MemoryState(w0, None),
                             chunk_size=chunk)
    grown = max(w.abs().max().item() for w in state.weights) / max(w.abs().max().item() for w in w0)
    return grown if math.isfinite(grown) else math.inf


@pytest.mark.parametrize("chunk,hidden", [(8, 32), (64, 128)])
def test_default_theta_bound_keeps_deep_memory_stable(chunk, hidden):
    """The default θ_max (2 / (chunk · hidden)) keeps the weights bounded with gates saturated
    (θ = θ_max, η = 0.9, no decay) on nearly parallel keys; 8× that bound blows up — the margin
    the default leaves (docs/design.md, "Inner learning rate bound")."""
    theta = NeuralMemoryConfig(d_model=32, num_heads=1, depth=2, hidden_dim=hidden,
                               chunk_size=chunk).theta_max
    assert theta == pytest.approx(2.0 / (chunk * hidden))
    assert _weight_growth(2, chunk, hidden, theta) < 10
    assert _weight_growth(2, chunk, hidden, 8 * theta) > 1e6


def _module_growth(value_norm: str, value_scale: float, eta_max: float = 1.0,
                   eta_logit: float = math.log(0.9 / 0.1)) -> float:
    """Weight growth of a deep-memory layer fed one token repeated 640 times with saturated gates
    (θ = θ_max, η = 0.9, α = 0) and the value projection scaled by ``value_scale``: the failure
    seen in training when a batch is padded with one repeated token and values have grown."""
    torch.manual_seed(0)
    cfg = NeuralMemoryConfig(d_model=32, num_heads=1, depth=2, hidden_dim=64, chunk_size=16,
                             value_norm=value_norm, eta_max=eta_max, eta_init=min(0.6, eta_max / 2))
    m = NeuralMemory(cfg).double()
    with torch.no_grad():
        m.gate_proj.weight.zero_()
        m.gate_proj.bias.copy_(torch.tensor([20.0, eta_logit, -20.0], dtype=torch.float64))
        m.qkv_proj.weight[2 * cfg.num_heads * cfg.head_dim:].mul_(value_scale)  # the value rows
    x = torch.randn(1, 1, 32, dtype=torch.float64).expand(2, 16 * 40, 32)
    _, cache = m(x)
    grown = max(w.abs().max().item() for w in cache.state.weights) / max(
        w.abs().max().item() for w in m.memory_init)
    return grown if math.isfinite(grown) else math.inf


def test_value_norm_keeps_repeated_tokens_stable():
    """Large values on a run of one repeated token make the deep memory's inner step diverge at
    the default θ bound; ``value_norm="rms"`` bounds the values and keeps the weights bounded
    whatever the projection's scale (docs/design.md, "Inner learning rate bound")."""
    assert _module_growth("none", 30.0) > 1e6
    for scale in (1.0, 30.0):
        assert _module_growth("rms", scale) < 10


def test_eta_max_keeps_saturated_gates_stable():
    """The gates a run of one repeated token drove a MAC layer to in training (θ = θ_max, η → 1,
    α → 0; docs/design.md): the deep memory diverges even with normalised values; bounding η at
    0.9 keeps it bounded."""
    saturated = 20.0  # η = eta_max · σ(20)
    assert _module_growth("rms", 1.0, eta_max=1.0, eta_logit=saturated) > 1e5  # measured 9.5e5
    assert _module_growth("rms", 1.0, eta_max=0.9, eta_logit=saturated) < 10  # measured 6.6
    assert _module_growth("rms", 30.0, eta_max=0.9, eta_logit=saturated) < 10  # measured 6.5


def test_weights_saved_with_separate_qkv_projections_still_load():
    """Checkpoints written before q/k/v were fused (``q_proj``/``k_proj``/``v_proj`` and three
    ``convs``) load into the fused layer and give the same outputs."""
    torch.manual_seed(0)
    cfg = NeuralMemoryConfig(d_model=32, num_heads=2, chunk_size=8)
    m = NeuralMemory(cfg).double()
    old = {}
    for key, value in m.state_dict().items():
        if key == "qkv_proj.weight":
            old.update(zip(("q_proj.weight", "k_proj.weight", "v_proj.weight"), value.chunk(3)))
        elif key.startswith("conv."):
            name = key.split(".", 1)[1]
            old.update({f"convs.{i}.{name}": part for i, part in enumerate(value.chunk(3))})
        else:
            old[key] = value
    fresh = NeuralMemory(cfg).double()
    fresh.load_state_dict(old)  # strict: every key accounted for
    x = torch.randn(2, 21, 32, dtype=torch.float64)
    torch.testing.assert_close(fresh(x)[0], m(x)[0], rtol=0, atol=0)


def test_upgrade_unfused_qkv_maps_a_whole_models_old_weights():
    """The hook-free upgrade (used where FSDP loads full state dicts) turns a model's weights in
    the old layout back into exactly its current state dict; other entries pass through."""
    from titans.memory.neural_memory import upgrade_unfused_qkv
    from titans.models import TitansLM, get_config

    model = TitansLM(get_config("tiny-mac", vocab_size=64, d_model=32, n_layers=2, n_heads=2))
    new = model.state_dict()
    old = {}
    for name, value in new.items():
        if name.endswith("qkv_proj.weight"):
            base = name[: -len("qkv_proj.weight")]
            old.update(zip((base + f"{c}_proj.weight" for c in "qkv"), value.chunk(3)))
        elif name.endswith(("memory.conv.weight", "memory.conv.bias")):
            base, kind = name.rsplit(".conv.", 1)
            old.update({f"{base}.convs.{i}.{kind}": part for i, part in enumerate(value.chunk(3))})
        else:
            old[name] = value
    assert len(old) == len(new) + 2 * 6  # two memory layers, 3 entries each become 9
    upgraded = upgrade_unfused_qkv(old)
    assert upgraded.keys() == new.keys()
    for name, value in new.items():
        assert torch.equal(upgraded[name], value), name


def _repeated_token_fit(momentum_form: str, eta_logit: float, value_norm: str, value_scale: float
                        ) -> tuple[float, float]:
    """(weight growth, relative fit error ‖M(k) − v‖ / ‖v‖ at the end) of a deep-memory layer fed
    one token 640 times at θ = θ_max, α ≈ 0 and η = σ(eta_logit)."""
    torch.manual_seed(0)
    cfg = NeuralMemoryConfig(d_model=32, num_heads=1, depth=2, hidden_dim=64, chunk_size=16,
                             value_norm=value_norm, eta_init=0.5, momentum_form=momentum_form)
    m = NeuralMemory(cfg).double()
    with torch.no_grad():
        m.gate_proj.weight.zero_()
        m.gate_proj.bias.copy_(torch.tensor([20.0, eta_logit, -20.0], dtype=torch.float64))
        m.qkv_proj.weight[2 * cfg.num_heads * cfg.head_dim:].mul_(value_scale)
    x = torch.randn(1, 1, 32, dtype=torch.float64).expand(1, 16 * 40, 32)
    _, cache = m(x)
    _, k, v, _ = m._qkv(x[:, :1], None)
    if value_norm == "rms":
        v = F.rms_norm(v, (v.shape[-1],))
    w0, w1 = cache.state.weights
    pred = F.gelu(k[0, 0, 0] @ w0[0]) @ w1[0]
    err = ((pred - v[0, 0, 0]).norm() / v[0, 0, 0].norm()).item()
    grown = max(w.abs().max().item() for w in cache.state.weights) / max(
        w.abs().max().item() for w in m.memory_init)
    return (grown if math.isfinite(grown) else math.inf), err


def test_ema_momentum_is_stable_where_heavy_ball_diverges_and_still_fits():
    """``momentum_form="ema"`` (θ_t → θ_t (1 − η_t)) keeps the steady step at θ: on the repeated
    token at θ = θ_max the heavy-ball form diverges for η 0.99 or values 30× unit RMS, the EMA form
    stays bounded and fits the pair (docs/design.md, "Inner learning rate bound")."""
    eta_09, eta_099 = math.log(9.0), math.log(99.0)
    assert _repeated_token_fit("heavy_ball", eta_099, "rms", 1.0)[0] > 1e4  # measured 4.6e4
    assert _repeated_token_fit("heavy_ball", eta_09, "none", 30.0)[0] > 1e6  # measured 2e39
    for eta, norm, scale, max_err in ((eta_09, "rms", 1.0, 0.1), (eta_099, "rms", 1.0, 0.1),
                                      (eta_09, "none", 30.0, 0.5)):
        grown, err = _repeated_token_fit("ema", eta, norm, scale)
        assert grown < 10 and err < max_err, (eta, norm, scale, grown, err)  # measured ≤ 3.8, ≤ 0.26


def test_ema_momentum_scales_theta_by_one_minus_eta():
    torch.manual_seed(0)
    kw = dict(d_model=16, num_heads=2, chunk_size=4)
    heavy = NeuralMemory(NeuralMemoryConfig(**kw))
    ema = NeuralMemory(NeuralMemoryConfig(momentum_form="ema", **kw))
    ema.load_state_dict(heavy.state_dict())
    x = torch.randn(2, 9, 16)
    (th, et, al), (th2, et2, al2) = heavy._gates(x), ema._gates(x)
    torch.testing.assert_close(th2, th * (1 - et))
    assert torch.equal(et, et2) and torch.equal(al, al2)
    with pytest.raises(ValueError, match="momentum_form"):
        NeuralMemoryConfig(momentum_form="nesterov", **kw)
