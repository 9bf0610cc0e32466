"""``GraphedTrainStep`` (CUDA graphs of forward + loss + backward) against eager steps: the same
loss and gradients, optimizer updates seen by the next replay, one graph per batch shape and
eager steps past ``max_graphs``. GPU tests; skipped without CUDA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from titans.models import TitansLM, get_config
from titans.training.cuda_graph import GraphedTrainStep


def _model(variant: str) -> TitansLM:
    extra = {"segment_len": 64, "n_persistent": 4, "n_retrieve": 4} if variant == "mac" else {}
    torch.manual_seed(0)
    return TitansLM(get_config(f"tiny-{variant}", vocab_size=256, d_model=64, n_layers=2, n_heads=2,
                               memory={"chunk_size": 16}, **extra)).cuda()


def _loss(model, batch, cache_enabled=False):
    with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache_enabled):
        logits = model(batch["ids"]).logits.float()
    loss = F.cross_entropy(logits.flatten(0, 1), batch["tgt"].flatten())
    return {"loss": loss, "double": 2 * loss}


def _batch(B: int, T: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (B, T + 1), generator=g).cuda()
    return {"ids": x[:, :-1], "tgt": x[:, 1:]}


def _eager_grads(model, batch):
    model.zero_grad(set_to_none=True)
    out = _loss(model, batch, cache_enabled=True)
    out["loss"].backward()
    return out["loss"].item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for n in a:  # bf16 autocast: the graph replays the eager kernels, but atomics may reorder sums
        torch.testing.assert_close(a[n], b[n], rtol=2e-2, atol=1e-4, msg=n)


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["lmm", "mac", "transformer"])
def test_graphed_step_matches_eager_and_sees_optimizer_updates(variant):
    model = _model(variant)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    step = GraphedTrainStep(model, _loss)
    for i in range(3):  # T = 100: not a multiple of the chunk (16) or the MAC segment (64)
        batch = _batch(2, 100, i)
        e_loss, e_grads = _eager_grads(model, batch)
        out = step(batch)
        assert len(step.graphs) == 1
        assert out["loss"].item() == pytest.approx(e_loss, rel=1e-3)
        assert out["double"].item() == pytest.approx(2 * e_loss, rel=1e-3)
        _close({n: p.grad for n, p in model.named_parameters() if p.grad is not None}, e_grads)
        opt.step()  # the next replay must read the updated weights


@pytest.mark.gpu
def test_graphed_step_captures_each_shape_then_runs_eagerly():
    model = _model("lmm")
    step = GraphedTrainStep(model, _loss, max_graphs=2)
    shapes = [(2, 80), (1, 48), (2, 80), (3, 32)]
    for i, (B, T) in enumerate(shapes):
        batch = _batch(B, T, i)
        e_loss, e_grads = _eager_grads(model, batch)
        out = step(batch)
        assert out["loss"].item() == pytest.approx(e_loss, rel=1e-3)
        _close({n: p.grad for n, p in model.named_parameters() if p.grad is not None}, e_grads)
    assert len(step.graphs) == 2  # (3, 32) ran eagerly


def test_graphed_step_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(RuntimeError, match="CUDA"):
        GraphedTrainStep(torch.nn.Linear(2, 2), _loss)
