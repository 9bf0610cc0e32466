"""A training step's forward, loss and backward captured as one CUDA graph and replayed.

Small Titans models are launch-bound on a GPU: a MAC step at d_model 256 makes ~8,000 kernel
launches and leaves the device idle ~45% of the time (``benchmarks/profile_step.py``). Replaying
a captured graph issues the same kernels with one launch, so the step costs its device time.

The captured step must be free of host syncs (no ``.item()``, no boolean indexing, no
data-dependent Python branches) and sees batches of one shape; each new shape is captured once
(up to ``max_graphs``), further shapes run eagerly. Parameters are read in place, so an
optimizer stepping outside the graph is seen by the next replay. After a step every parameter's
``.grad`` holds that batch's gradient (overwritten, not accumulated) — do not set grads to None.

    step = GraphedTrainStep(model, loss_fn)       # loss_fn(model, batch) -> {"loss": ..., ...}
    out = step(batch)                             # batch: dict of CUDA tensors
    clip_grad_norm_(model.parameters(), 1.0); opt.step()
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

LossFn = Callable[[nn.Module, dict[str, Tensor]], dict[str, Tensor]]


class _Captured:
    def __init__(self, model: nn.Module, loss_fn: LossFn, batch: dict[str, Tensor], warmup: int):
        params = [p for p in model.parameters() if p.requires_grad]
        self.static = {k: v.detach().clone() for k, v in batch.items()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # compiles, autotunes and fills lazy caches off the graph
            for _ in range(warmup):
                for p in params:
                    p.grad = None
                loss_fn(model, self.static)["loss"].backward()
        for p in params:
            p.grad = None  # the captured backward allocates (not accumulates) each gradient
        self.graph = torch.cuda.CUDAGraph()
        # Captured on the warm-up stream (autograd's gradient accumulators keep the stream they
        # were made on); thread_local: the DataLoader's pin-memory thread may allocate meanwhile.
        with torch.cuda.graph(self.graph, stream=side, capture_error_mode="thread_local"):
            self.outputs = loss_fn(model, self.static)
            self.outputs["loss"].backward()
        torch.cuda.current_stream().wait_stream(side)
        self.grads = [(p, p.grad) for p in params]

    def __call__(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        for k, v in batch.items():
            self.static[k].copy_(v, non_blocking=True)
        self.graph.replay()
        for p, g in self.grads:  # another shape's graph may have pointed .grad elsewhere
            p.grad = g
        return self.outputs


class GraphedTrainStep:
    """Forward + loss + backward of ``loss_fn(model, batch)`` as CUDA graphs, one per batch shape.

    loss_fn: returns a dict of scalar tensors with the key ``"loss"`` (the one differentiated);
        must not sync with the host. Run it under ``torch.autocast(..., cache_enabled=False)``:
        the autocast weight cache does not survive capture.
    warmup: eager iterations before each capture (Triton autotuning, ``torch.compile``, caches).
    max_graphs: shapes captured; batches of any further shape run eagerly (same semantics).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, warmup: int = 3, max_graphs: int = 4):
        if not torch.cuda.is_available():
            raise RuntimeError("GraphedTrainStep needs CUDA")
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1, got {warmup}")
        self.model, self.loss_fn, self.warmup, self.max_graphs = model, loss_fn, warmup, max_graphs
        self.graphs: dict[tuple, _Captured] = {}

    @staticmethod
    def _key(batch: dict[str, Tensor]) -> tuple:
        return tuple(sorted((k, tuple(v.shape), v.dtype) for k, v in batch.items()))

    def __call__(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        key = self._key(batch)
        step = self.graphs.get(key)
        if step is None and len(self.graphs) < self.max_graphs:
            step = self.graphs[key] = _Captured(self.model, self.loss_fn, batch, self.warmup)
        if step is not None:
            return step(batch)
        for p in self.model.parameters():
            p.grad = None
        out = self.loss_fn(self.model, batch)
        out["loss"].backward()
        return {k: v.detach() for k, v in out.items()}
