"""CUDA checks: compiled FlexAttention == masked SDPA, and a model's flex and SDPA backends agree
and decode incrementally == full forward on the GPU. Skipped without CUDA; also runnable as a
script on a machine without pytest (``PYTHONPATH=src python3 tests/models/test_gpu.py``)."""

from __future__ import annotations

import pytest
import torch

from titans.models import VARIANTS, TitansLM, get_config
from titans.models.attention import attend

CASES = [(256, 256, 0, 64, 0), (300, 316, 16, 100, 0), (512, 544, 32, None, 0), (1, 80, 4, 64, 75)]


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES)
def test_flex_equals_sdpa_cuda(case):
    tq, tk, n_prefix, window, offset = case
    q, k, v = (torch.randn(2, 4, n, 64, device="cuda") for n in (tq, tk, tk))
    flex = attend(q, k, v, n_prefix, window, offset, backend="flex")
    sdpa = attend(q, k, v, n_prefix, window, offset, backend="sdpa")
    torch.testing.assert_close(flex, sdpa, rtol=2e-3, atol=2e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_model_backends_and_decoding_cuda(variant):
    torch.manual_seed(0)
    kw = dict(vocab_size=256, d_model=128, n_heads=2, window=128, segment_len=128, n_retrieve=8,
              memory={"chunk_size": 32})
    x = torch.randint(0, 256, (2, 300), device="cuda")
    model = TitansLM(get_config(f"tiny-{variant}", attn_backend="flex", **kw)).cuda()
    flex = model(x).logits
    model_sdpa = TitansLM(get_config(f"tiny-{variant}", attn_backend="sdpa", **kw)).cuda()
    model_sdpa.load_state_dict(model.state_dict())
    torch.testing.assert_close(model_sdpa(x).logits, flex, rtol=1e-3, atol=1e-3)
    out = model_sdpa(x[:, :150], use_cache=True)  # decode on SDPA (as "auto" does)
    cache, outs = out.cache, [out.logits]
    for t in range(150, 300, 30):
        out = model_sdpa(x[:, t:t + 30], cache=cache, use_cache=True)
        cache = out.cache
        outs.append(out.logits)
    torch.testing.assert_close(torch.cat(outs, 1), flex, rtol=1e-3, atol=1e-3)


if __name__ == "__main__":
    for c in CASES:
        test_flex_equals_sdpa_cuda(c)
    for v in VARIANTS:
        test_model_backends_and_decoding_cuda(v)
    print("cuda checks passed")
