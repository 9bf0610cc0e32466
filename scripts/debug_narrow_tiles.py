"""Which fused kernel faults with 32/16-column hidden tiles on the GPU (docs/kernel-notes.md V8).

Each case runs in its own process (an illegal memory access poisons the CUDA context) with
``CUDA_LAUNCH_BLOCKING=1``, so the error is raised by the faulting launch itself; the forward
state kernel, the forward query kernel and the backward run one after another with a
synchronize between them, and the first stage that fails is reported. The guard that refuses
narrow tiles on the GPU (``function.ALLOW_NARROW_TILES_ON_GPU``) is lifted in the child only.

    PYTHONPATH=src python3 scripts/debug_narrow_tiles.py --out narrow_tiles.json   # ~2 min, one GPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import traceback


def child(tile: int, warps: int, D: int, hidden: int, chunk: int) -> dict:
    import torch

    from titans.ops import MemoryState, neural_memory
    from titans.ops.neural_memory.triton import function

    function.ALLOW_NARROW_TILES_ON_GPU = True
    os.environ["TITANS_TRITON_KERNELS"] = "v6"
    os.environ["TITANS_TRITON_HIDDEN_TILE"] = str(tile)
    if warps:
        os.environ["TITANS_TRITON_WARPS"] = str(warps)
    torch.manual_seed(0)
    B, T, H = 1, 4 * chunk + 7, 2
    dev, bf16 = "cuda", torch.bfloat16
    q, k, v = (torch.nn.functional.normalize(torch.randn(B, T, H, D, device=dev), dim=-1).to(bf16)
               for _ in range(3))
    theta, eta, alpha = (torch.rand(B, T, H, device=dev) * s for s in (0.5, 1.0, 0.2))
    weights = (torch.randn(H, D, hidden, device=dev) / D**0.5,
               torch.randn(H, hidden, D, device=dev) / hidden**0.5)
    for t in (q, k, v, *weights):
        t.requires_grad_()
    stage = "forward (state, then query kernel)"
    try:
        y, st = neural_memory(q, k, v, theta, eta, alpha, MemoryState(weights, None), chunk_size=chunk,
                              backend="triton")
        torch.cuda.synchronize()
        stage = "backward (query, then state kernel)"
        (y.float().sum() + sum(w.sum() for w in st.weights)).backward()
        torch.cuda.synchronize()
        return {"ok": True, "max_abs_y": float(y.float().abs().max())}
    except Exception as e:  # the launch that faulted raises under CUDA_LAUNCH_BLOCKING=1
        # the source line of the faulting launch names its kernel (LAST_COMPILED["fwd2_state"] = ...)
        frames = [line.strip() for line in traceback.format_exc().splitlines()
                  if "LAST_COMPILED" in line or "kernel" in line.lower()]
        return {"ok": False, "stage": stage, "error": f"{type(e).__name__}: {str(e)[:200]}",
                "frames": frames[-4:]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiles", default="64,32,16")
    p.add_argument("--warps", default="0,4", help="0 = the default (8 at D 64, chunk 64)")
    p.add_argument("--shapes", default="64x256x64,64x256x16,32x128x64", help="DxHIDDENxCHUNK list")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # child process
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.case:
        print(json.dumps(child(*(int(x) for x in args.case.split(",")))))
        return
    rows = []
    for shape in args.shapes.split(","):
        D, hidden, chunk = (int(x) for x in shape.split("x"))
        for tile in (int(t) for t in args.tiles.split(",")):
            for warps in (int(w) for w in args.warps.split(",")):
                case = f"{tile},{warps},{D},{hidden},{chunk}"
                env = os.environ | {"CUDA_LAUNCH_BLOCKING": "1"}
                run = subprocess.run([sys.executable, __file__, "--case", case], env=env,
                                     capture_output=True, text=True, timeout=300)
                lines = run.stdout.strip().splitlines()
                result = json.loads(lines[-1]) if lines else {"ok": False, "error": run.stderr[-300:]}
                rows.append({"D": D, "hidden": hidden, "chunk": chunk, "tile": tile, "warps": warps} | result)
                print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
