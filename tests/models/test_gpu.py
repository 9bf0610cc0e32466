"""CUDA checks: compiled FlexAttention == masked SDPA == a plain masked softmax, and a model's flex
and SDPA backends agree and decode incrementally == full forward on the GPU. Skipped without CUDA;
also runnable as a script where pytest is missing (``PYTHONPATH=src python3 tests/models/test_gpu.py``,
exit status 1 when the compiled flex path disagrees)."""

from __future__ import annotations

import sys

import pytest
import torch
from torch.nn.attention.flex_attention import flex_attention

from titans.models import VARIANTS, TitansLM, get_config
from titans.models.attention import attend, attention_mask, block_mask

CASES = [(256, 256, 0, 64, 0), (300, 316, 16, 100, 0), (512, 544, 32, None, 0), (1, 80, 4, 64, 75)]


def reference(q, k, v, case):
    s = (q.double() @ k.double().mT) / q.shape[-1] ** 0.5
    return (s.masked_fill(~attention_mask(*case, device=q.device), float("-inf")).softmax(-1)
            @ v.double()).float()


def diffs(case) -> dict:
    tq, tk, n_prefix, window, offset = case
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, n, 64, device="cuda") for n in (tq, tk, tk))
    ref = reference(q, k, v, case)
    out = {"flex": attend(q, k, v, n_prefix, window, offset, backend="flex"),
           "sdpa": attend(q, k, v, n_prefix, window, offset, backend="sdpa"),
           "flex_eager": flex_attention(q, k, v, block_mask=block_mask(tq, tk, n_prefix, window, offset,
                                                                      "cuda:0"))}
    if window is not None and n_prefix == 0 and offset == 0 and tq == tk:  # a closure-free mask_mod
        def swa(b, h, qi, ki):
            return (qi >= ki) & (qi - ki < 64)
        from torch.nn.attention.flex_attention import create_block_mask
        bm = create_block_mask(swa, None, None, tq, tk, device="cuda")
        out["flex_plain"] = torch.compile(flex_attention, dynamic=False)(q, k, v, block_mask=bm)
        out["sdpa_float_mask"] = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=torch.zeros(tq, tk, device="cuda").masked_fill(
                ~attention_mask(*case, device="cuda"), float("-inf")))
    return {name: (o - ref).abs().max().item() for name, o in out.items()}


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES)
def test_flex_equals_sdpa_cuda(case):
    d = diffs(case)
    assert max(d.values()) < 2e-3, d


@pytest.mark.gpu
@pytest.mark.parametrize("case", [(256, 16 + 2 * 256, 16, None, 0), (300, 2 * 300, 0, 64, 0)])
def test_flex_equals_sdpa_paired_cuda(case):
    """MAC's paired keys (one retrieved token beside each token): compiled flex == masked SDPA."""
    tq, tk, n_prefix, window, offset = case
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, n, 64, device="cuda") for n in (tq, tk, tk))
    flex = attend(q, k, v, n_prefix, window, offset, backend="flex", paired=True)
    sdpa = attend(q, k, v, n_prefix, window, offset, backend="sdpa", paired=True)
    assert (flex - sdpa).abs().max().item() < 2e-3


@pytest.mark.gpu
@pytest.mark.parametrize("variant", list(VARIANTS) + ["mac-token"])
def test_model_backends_and_decoding_cuda(variant):
    torch.manual_seed(0)
    kw = dict(vocab_size=256, d_model=128, n_heads=2, window=128, segment_len=128, n_retrieve=8,
              memory={"chunk_size": 32})
    if variant == "mac-token":  # MAC with per-token retrieval (paired keys in the attention)
        variant, kw = "mac", {**kw, "mac_retrieval": "token"}
    x = torch.randint(0, 256, (2, 300), device="cuda")
    model = TitansLM(get_config(f"tiny-{variant}", attn_backend="flex", **kw)).cuda()
    flex = model(x).logits
    model_sdpa = TitansLM(get_config(f"tiny-{variant}", attn_backend="sdpa", **kw)).cuda()
    model_sdpa.load_state_dict(model.state_dict())
    full = model_sdpa(x).logits
    torch.testing.assert_close(full, flex, rtol=1e-3, atol=1e-3)
    out = model_sdpa(x[:, :150], use_cache=True)  # decode on SDPA (as "auto" does)
    cache, outs = out.cache, [out.logits]
    for t in range(150, 300, 30):
        out = model_sdpa(x[:, t:t + 30], cache=cache, use_cache=True)
        cache = out.cache
        outs.append(out.logits)
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-3, atol=1e-3)


if __name__ == "__main__":
    ok = True
    for c in CASES:
        d = diffs(c)
        ok = ok and max(d.values()) < 2e-3
        print("attention", c, {k: f"{v:.2e}" for k, v in d.items()}, flush=True)
    if ok:
        for v in VARIANTS:
            try:
                test_model_backends_and_decoding_cuda(v)
                print("model", v, "flex == sdpa == decode: ok", flush=True)
            except AssertionError as e:
                ok = False
                print("model", v, "FAILED", str(e)[:300], flush=True)
    print("cuda checks", "passed" if ok else "FAILED")
    sys.exit(0 if ok else 1)
