"""Attention masks against hand-built ones, FlexAttention == SDPA, RoPE, bounded KV cache."""

from __future__ import annotations

import warnings

import pytest
import torch

from titans.models.attention import SelfAttention, attend, attention_mask, rotary


def hand_mask(tq, tk, n_prefix, window, offset):
    m = torch.zeros(tq, tk, dtype=torch.bool)
    for q in range(tq):
        for k in range(tk):
            if k < n_prefix:
                m[q, k] = True
                continue
            qpos, kpos = q + offset, k - n_prefix  # positions in the stream
            m[q, k] = kpos <= qpos and (window is None or qpos - kpos < window)
    return m


CASES = [(9, 9, 0, None, 0), (9, 9, 0, 4, 0), (9, 12, 3, 4, 0), (1, 7, 2, 5, 4), (3, 10, 2, None, 5),
         (6, 14, 4, None, 0)]


@pytest.mark.parametrize("case", CASES)
def test_mask_matches_hand_built(case):
    assert torch.equal(attention_mask(*case), hand_mask(*case))


@pytest.mark.parametrize("case", CASES + [(130, 150, 4, 32, 16)])
def test_flex_equals_sdpa(case):
    tq, tk, n_prefix, window, offset = case
    q, k, v = torch.randn(2, 2, tq, 16), torch.randn(2, 2, tk, 16), torch.randn(2, 2, tk, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flex = attend(q, k, v, n_prefix, window, offset, backend="flex")
    sdpa = attend(q, k, v, n_prefix, window, offset, backend="sdpa")
    torch.testing.assert_close(flex, sdpa, rtol=1e-5, atol=1e-5)
    # and both equal a plain softmax with the hand-built mask
    s = (q @ k.mT) / 4.0
    ref = s.masked_fill(~hand_mask(*case), float("-inf")).softmax(-1) @ v
    torch.testing.assert_close(sdpa, ref, rtol=1e-5, atol=1e-5)


def test_rotary_is_relative():
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)
    pos = torch.tensor([5])
    a = rotary(q, pos, 1e4) @ rotary(k, pos - 3, 1e4).mT
    b = rotary(q, pos + 1000, 1e4) @ rotary(k, pos + 997, 1e4).mT
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("window", [None, 5])
def test_kv_cache_bounded_and_exact(window):
    attn = SelfAttention(32, 4, 8, 1e4, window).double()
    x = torch.randn(2, 23, 32, dtype=torch.float64)
    prefix = torch.randn(2, 3, 32, dtype=torch.float64)
    full, _ = attn(x, prefix)
    cache, outs = None, []
    for t in range(23):
        y, cache = attn(x[:, t:t + 1], prefix if cache is None else None, cache)
        outs.append(y)
        assert cache.k.shape[2] == (t + 1 if window is None else min(t + 1, window))
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="prefix"):
        attn(x, prefix, cache)


def test_rope_table_equals_computed_angles_across_its_limit():
    """Positions from the cached table and positions past it (computed on the fly) give the
    same rotation as computing every angle directly, in float64."""
    from titans.models.attention import _ROPE_CACHE_POSITIONS, apply_rotary, rope_cos_sin

    x = torch.randn(1, 2, 40, 16, dtype=torch.float64)
    for start in (0, 1234, _ROPE_CACHE_POSITIONS - 17):
        pos = torch.arange(start, start + 40)
        got = apply_rotary(x, *rope_cos_sin(start, 40, 16, 1e4, "cpu"))
        torch.testing.assert_close(got, rotary(x, pos, 1e4), rtol=0, atol=0)


def test_rope_table_first_built_under_inference_mode_still_trains():
    """The cached table must be a plain tensor: a float64 layer (whose ``.to`` keeps the table
    itself) first run under inference_mode and then trained must backpropagate."""
    from titans.models.attention import _ROPE_TABLES, SelfAttention

    _ROPE_TABLES.clear()
    layer = SelfAttention(32, 2, 16, 1e4, None).double()
    x = torch.randn(1, 9, 32, dtype=torch.float64)
    with torch.inference_mode():
        layer(x)
    y, _ = layer(x)
    y.sum().backward()
    assert layer.qkv.weight.grad is not None


def hand_paired_mask(tq, tk, n_prefix, window, offset):
    """Keys ``[prefix ‖ paired_0..L-1 ‖ stream_0..L-1]``: paired j is seen exactly when stream j is."""
    half = (tk - n_prefix) // 2
    stream = hand_mask(tq, n_prefix + half, n_prefix, window, offset)
    return torch.cat([stream, stream[:, n_prefix:]], dim=1)


PAIRED = [(9, 18, 0, None, 0), (5, 4 + 2 * 5, 4, None, 0), (2, 3 + 2 * 7, 3, None, 5), (6, 2 * 9, 0, 4, 3),
          (130, 4 + 2 * 140, 4, None, 10)]


@pytest.mark.parametrize("case", PAIRED)
def test_paired_mask_and_flex_equal_hand_built(case):
    tq, tk, n_prefix, window, offset = case
    assert torch.equal(attention_mask(*case, paired=True), hand_paired_mask(*case))
    q, k, v = torch.randn(2, 2, tq, 16), torch.randn(2, 2, tk, 16), torch.randn(2, 2, tk, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flex = attend(q, k, v, n_prefix, window, offset, backend="flex", paired=True)
    sdpa = attend(q, k, v, n_prefix, window, offset, backend="sdpa", paired=True)
    ref = ((q @ k.mT) / 4.0).masked_fill(~hand_paired_mask(*case), float("-inf")).softmax(-1) @ v
    torch.testing.assert_close(flex, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sdpa, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("window", [None, 5])
def test_paired_tokens_stream_exactly(window):
    """One paired token beside each token: fed in pieces (the cache keeps the paired keys, bounded
    by the window like the stream's) == one call; the paired input must come on every call."""
    attn = SelfAttention(32, 4, 8, 1e4, window).double()
    x, side = (torch.randn(2, 23, 32, dtype=torch.float64) for _ in range(2))
    prefix = torch.randn(2, 3, 32, dtype=torch.float64)
    full, _ = attn(x, prefix, paired=side)
    cache, outs, i = None, [], 0
    for n in (1, 6, 1, 9, 6):
        y, cache = attn(x[:, i:i + n], prefix if cache is None else None, cache, paired=side[:, i:i + n])
        outs.append(y)
        i += n
        assert cache.paired_k.shape == cache.k.shape
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-12, atol=1e-12)
    changed = side.clone()
    changed[:, 10] += 1.0  # token 10's paired input: no effect on positions before 10
    moved, _ = attn(x, prefix, paired=changed)
    torch.testing.assert_close(moved[:, :10], full[:, :10], rtol=0, atol=0)
    assert not torch.allclose(moved[:, 10], full[:, 10])
    with pytest.raises(ValueError, match="every call"):
        attn(x[:, :2], None, cache)
    with pytest.raises(ValueError, match="shape"):
        attn(x, prefix, paired=side[:, :5])
