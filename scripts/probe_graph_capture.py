"""Which part of a Titans training step breaks CUDA-graph capture? (GPU diagnostic.)

Runs one case (warm-up, an eager call under ``torch.cuda.set_sync_debug_mode("error")``, then a
capture and a replay) and prints what failed. Run each case in its own process — a failed
capture can leave the CUDA context unusable:

    for c in gates op_fwd op_fwdbwd layer_fwd layer_fwdbwd lmm_fwdbwd; do
        PYTHONPATH=src python3 scripts/probe_graph_capture.py $c; done
"""

from __future__ import annotations

import sys
import traceback

import torch

from titans.memory import NeuralMemory
from titans.models import TitansLM, get_config
from titans.ops import MemoryState, neural_memory
from titans.ops.neural_memory.triton.function import chunk_gates


def case_fn(case: str):
    dev = "cuda"
    B, T, H, D, N = 2, 100, 2, 32, 16
    g = torch.Generator(device=dev).manual_seed(0)

    def leaf(*shape, scale=1.0):
        return (torch.rand(*shape, device=dev, generator=g) * scale).requires_grad_()

    if case == "gates":
        th, et, al = leaf(B, H, 112, scale=0.1), leaf(B, H, 112), leaf(B, H, 112, scale=0.1)
        return lambda: sum(t.sum() for t in chunk_gates(th, et, al, T, N)).backward()
    if case.startswith("op"):
        q, k, v = (leaf(B, T, H, D) for _ in range(3))
        th, et, al = leaf(B, T, H, scale=0.1), leaf(B, T, H), leaf(B, T, H, scale=0.1)
        w = (leaf(H, D, 4 * D, scale=0.1), leaf(H, 4 * D, D, scale=0.1))

        def op():
            y, st = neural_memory(q, k, v, th, et, al, MemoryState(w, None), chunk_size=N,
                                  activation="silu", backend="triton")
            if case == "op_fwdbwd":
                y.float().square().sum().backward()
        return op
    if case.startswith("layer"):
        cfg = get_config("tiny-lmm", vocab_size=256, d_model=64, n_layers=1, n_heads=2,
                         memory={"chunk_size": N}).memory_config()
        layer, x = NeuralMemory(cfg).to(dev), leaf(B, T, 64)

        def run():
            with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
                y, _ = layer(x)
            if case == "layer_fwdbwd":
                y.float().square().sum().backward()
        return run
    if case == "lmm_fwdbwd":
        model = TitansLM(get_config("tiny-lmm", vocab_size=256, d_model=64, n_layers=2, n_heads=2,
                                    memory={"chunk_size": N})).to(dev)
        ids = torch.randint(0, 256, (B, T + 1), device=dev)

        def run():
            with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
                loss = model(ids[:, :-1], targets=ids[:, 1:]).loss
            loss.backward()
        return run
    raise SystemExit(f"unknown case {case!r}")


def main(case: str) -> None:
    fn = case_fn(case)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.cuda.stream(side):
            fn()
        print(f"{case}: eager call makes no synchronising op")
    except RuntimeError:
        print(f"{case}: eager call SYNCS:\n{traceback.format_exc(limit=-8)}")
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
            fn()
        graph.replay()
        torch.cuda.synchronize()
        print(f"{case}: capture and replay OK")
    except Exception:  # noqa: BLE001 - a diagnostic: report whatever breaks
        print(f"{case}: capture FAILED:\n{traceback.format_exc(limit=-8)}")


if __name__ == "__main__":
    main(sys.argv[1])
