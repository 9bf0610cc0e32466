"""Training loop: learning, checkpoints, bit-identical resume, CLI round trip."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import tiny_config

from titans.models import TitansLM
from titans.training import Trainer, resolve_checkpoint, train


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("model", ["tiny-lmm", "tiny-mag"])
def test_resume_is_bit_identical(tmp_path, model):
    steps = 6
    full = Trainer(tiny_config(tmp_path / "full", model=model, max_steps=steps), print_fn=lambda *a: None)
    full.fit()
    first = Trainer(tiny_config(tmp_path / "half", model=model, max_steps=steps, stop_after=steps // 2),
                    print_fn=lambda *a: None)
    s1 = first.fit()
    assert s1["steps"] == steps // 2
    second = Trainer(tiny_config(tmp_path / "half", model=model, max_steps=steps), resume=tmp_path / "half",
                     print_fn=lambda *a: None)
    assert second.step == steps // 2 and second.sampler.position == steps // 2 * 4
    s2 = second.fit()
    assert s2["steps"] == steps and s2["steps_this_run"] == steps - steps // 2
    a, b = params(full.model), params(second.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, sb = full.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    for i in sa:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[i][key], sb[i][key]), (i, key)
    # and training did something
    assert s2["val_after"]["loss"] < s1["val_before"]["loss"]


def test_checkpoint_contents_and_atomic_latest(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=4, ckpt_interval=1, keep_checkpoints=2, sample_tokens=8)
    summary = train(cfg, print_fn=lambda *a: None)
    root = tmp_path / "checkpoints"
    kept = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert kept == ["step-0000003", "step-0000004"]  # older ones pruned, no temporaries left
    assert (root / "latest").read_text().strip() == "step-0000004"
    ckpt = resolve_checkpoint(tmp_path)
    assert ckpt == root / "step-0000004" and resolve_checkpoint(ckpt) == ckpt
    for name in ("config.json", "model.safetensors", "optimizer.pt", "rng.pt", "trainer_state.json",
                 "tokenizer_config.json"):
        assert (ckpt / name).exists(), name
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["sampler"]["position"] == 16 and state["config"]["seq_len"] == 16
    model = TitansLM.from_pretrained(ckpt)
    assert model.num_parameters() == summary["parameters"]
    weights = load_file(str(ckpt / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert isinstance(summary["sample"], str)
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,tokens,split,loss") and sum(",val," in r for r in rows) == 2
    (tmp_path / "summary.json").read_text()


def test_grad_accumulation_matches_big_batch(tmp_path):
    quiet = {"print_fn": lambda *a: None}
    big = Trainer(tiny_config(tmp_path / "a", batch_size=4, global_batch=4, max_steps=3), **quiet)
    acc = Trainer(tiny_config(tmp_path / "b", batch_size=2, global_batch=4, max_steps=3), **quiet)
    assert acc.accum == 2
    losses_big = [big.train_step()[0] for _ in range(3)]
    losses_acc = [acc.train_step()[0] for _ in range(3)]
    assert losses_big == pytest.approx(losses_acc, rel=1e-5)
    for (k, a), b in zip(big.model.state_dict().items(), acc.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)


def test_resume_refuses_a_different_model(tmp_path):
    train(tiny_config(tmp_path, max_steps=3), print_fn=lambda *a: None)
    other = tiny_config(tmp_path, max_steps=3, model="tiny-mag")
    with pytest.raises(ValueError, match="cannot resume: model"):
        Trainer(other, resume=tmp_path)
    with pytest.raises(ValueError, match="no checkpoint"):
        Trainer(tiny_config(tmp_path, max_steps=3), resume=tmp_path / "nothing")


def test_user_text_folder_with_split_and_bpe(tmp_path):
    from titans.data import train_bpe

    data = tmp_path / "books"
    data.mkdir()
    text = "It was a bright cold day in April, and the clocks were striking thirteen. " * 80
    for i in range(3):
        (data / f"b{i}.txt").write_text(text)
    tok = train_bpe(iter([text]), vocab_size=300)
    tok.save(tmp_path)
    cfg = tiny_config(tmp_path / "run", train_data=str(data), tokenizer=str(tmp_path), max_train_tokens=None,
                      max_steps=3, val_fraction=0.2)
    s = train(cfg, print_fn=lambda *a: None)
    assert s["val_after"]["bpb"] > 0 and s["val_after"]["tokens"] == 64  # eval_batches × batch_size × seq_len
    assert (resolve_checkpoint(tmp_path / "run") / "tokenizer.json").exists()


def _poison_gradients(trainer: Trainer, at_calls: set[int]) -> None:
    """Make the embedding's gradient NaN on the given (1-based) backward passes."""
    calls = {"n": 0}
    weight = next(p for n, p in trainer.model.named_parameters() if "embed" in n)

    def hook(grad):
        calls["n"] += 1
        return grad * float("nan") if calls["n"] in at_calls else grad

    weight.register_hook(hook)


def test_non_finite_gradient_raises_before_the_update(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, max_steps=4), print_fn=lambda *a: None)
    _poison_gradients(trainer, {2})
    trainer.train_step()
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    with pytest.raises(FloatingPointError, match="gradient norm nan at step 2"):
        trainer.train_step()
    for n, p in trainer.model.named_parameters():
        assert torch.equal(p, before[n]), n  # the optimizer never saw the NaN gradient


def test_non_finite_gradient_skip_drops_the_update_and_continues(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, max_steps=6, nonfinite_grads="skip"), print_fn=lambda *a: None)
    _poison_gradients(trainer, {2})
    trainer.train_step()
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train_step()  # skipped: weights unchanged, step and data move on
    assert trainer.step == 2 and trainer.skipped_steps == 1
    for n, p in trainer.model.named_parameters():
        assert torch.equal(p, before[n]), n
    trainer.train_step()  # finite again: updated
    assert trainer.consecutive_skips == 0
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_too_many_consecutive_skips_raise(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=6, nonfinite_grads="skip", max_skipped_steps=2)
    trainer = Trainer(cfg, print_fn=lambda *a: None)
    _poison_gradients(trainer, {1, 2})
    trainer.train_step()
    with pytest.raises(FloatingPointError, match="2 consecutive steps"):
        trainer.train_step()


def test_resume_from_a_checkpoint_saved_before_qkv_fusion(tmp_path):
    """A run checkpointed when the memory had separate q/k/v projections and convolutions (weights
    and Adam state under the old names) resumes bit-identically to one that never left the new
    layout."""
    from safetensors.torch import save_file

    steps = 6
    full = Trainer(tiny_config(tmp_path / "full", max_steps=steps), print_fn=lambda *a: None)
    full.fit()
    Trainer(tiny_config(tmp_path / "half", max_steps=steps, stop_after=steps // 2),
            print_fn=lambda *a: None).fit()
    ckpt = resolve_checkpoint(tmp_path / "half")

    def split(name: str) -> list[str] | None:
        for new, old in (("qkv_proj.weight", ["q_proj.weight", "k_proj.weight", "v_proj.weight"]),
                         ("conv.weight", [f"convs.{i}.weight" for i in range(3)]),
                         ("conv.bias", [f"convs.{i}.bias" for i in range(3)])):
            if name.endswith(new):
                return [name[: -len(new)] + o for o in old]
        return None

    weights, old_weights = load_file(str(ckpt / "model.safetensors")), {}
    for name, value in weights.items():
        olds = split(name)
        old_weights.update(zip(olds, value.chunk(3)) if olds else [(name, value)])
    assert len(old_weights) == len(weights) + 6
    save_file({k: v.contiguous() for k, v in old_weights.items()}, str(ckpt / "model.safetensors"))
    optim = torch.load(ckpt / "optimizer.pt", weights_only=False)
    state = {}
    for name, s in optim["state"].items():
        olds = split(name)
        if olds is None:
            state[name] = s
            continue
        parts = {k: (v.chunk(3) if torch.is_tensor(v) and v.dim() else [v] * 3) for k, v in s.items()}
        state.update({o: {k: parts[k][i].clone() for k in s} for i, o in enumerate(olds)})
    groups = [{**g, "params": [o for n in g["params"] for o in (split(n) or [n])]}
              for g in optim["param_groups"]]
    torch.save({"state": state, "param_groups": groups}, ckpt / "optimizer.pt")

    second = Trainer(tiny_config(tmp_path / "half", max_steps=steps), resume=tmp_path / "half",
                     print_fn=lambda *a: None)
    second.fit()
    a, b = params(full.model), params(second.model)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_cuda_graph_refuses_the_cpu(tmp_path):
    with pytest.raises(ValueError, match="cuda_graph"):
        tiny_config(tmp_path, device="cpu", cuda_graph=True)
    if not torch.cuda.is_available():  # device "auto" resolves to the CPU here
        with pytest.raises(ValueError, match="cuda_graph=true needs a CUDA device"):
            Trainer(tiny_config(tmp_path, cuda_graph=True), print_fn=lambda *a: None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model", ["tiny-lmm", "tiny-mac"])
@pytest.mark.parametrize("batch_size", [4, 2])  # global batch 4: accumulation 1 and 2
def test_cuda_graph_training_matches_eager(tmp_path, model, batch_size):
    quiet = {"print_fn": lambda *a: None}
    kw = dict(model=model, batch_size=batch_size, global_batch=4, max_steps=4, precision="fp32")
    eager = Trainer(tiny_config(tmp_path / "e", **kw), **quiet)
    graphed = Trainer(tiny_config(tmp_path / "g", cuda_graph=True, **kw), **quiet)
    assert graphed.accum == 4 // batch_size
    for _ in range(4):
        (le, ge), (lg, gg) = eager.train_step(), graphed.train_step()
        assert lg == pytest.approx(le, rel=1e-4) and gg == pytest.approx(ge, rel=1e-3)
    assert len(graphed.graphed.graphs) == 1
    for (k, a), b in zip(eager.model.state_dict().items(), graphed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5, msg=k)
