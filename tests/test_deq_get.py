"""getkern.deq inside a small GET: inference with both solvers, the three gradient modes (also in eval
mode), and activation memory that does not grow with solver iterations for phantom/implicit."""

import pytest
import torch
from helpers import tiny_get

SMALL = dict(in_channels=1, deq_mlp_ratio=2, solver_backend="torch")  # on top of helpers.TINY_GET


def saved_bytes(fn) -> int:
    """Bytes of every tensor autograd saves for backward while fn runs."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def test_default_inference_is_the_reference_loop():
    model = tiny_get(**SMALL).eval()
    noise, z0 = torch.randn(3, 1, 8, 8), torch.randn(3, 16, 32)
    with torch.no_grad():
        out, info = model(noise, z0=z0, return_info=True)
        f = model.equilibrium_fn(*model.inject(noise))
        x, lowest, answer = z0, torch.full((3,), float("inf")), z0.clone()
        for _ in range(6):
            fx = f(x)
            r = (fx - x).flatten(1).norm(dim=1)
            answer[r < lowest] = fx[r < lowest]
            lowest = torch.minimum(r, lowest)
            x = fx
            if (r < 1e-3).all():
                break
    assert torch.equal(out, model.decode(answer))
    assert info["solver"] == "fixed_point" and info["abs_trace"].shape == (6, 3)
    assert torch.equal(info["nstep"], torch.full((3,), 6))


def test_anderson_inference_on_get():
    model = tiny_get(**SMALL).eval()
    noise, z0 = torch.randn(2, 1, 8, 8), torch.randn(2, 16, 32)
    with torch.no_grad():
        out, info = model(noise, z0=z0, iters=5, solver="anderson", return_info=True)
        _, fp_info = model(noise, z0=z0, iters=2, return_info=True)
    assert out.shape == (2, 1, 8, 8) and torch.isfinite(out).all()
    assert info["solver"] == "anderson" and info["backend"] == "torch" and info["nfev"] == 5
    assert not info["nan"].any()
    # the first two evaluations are at z0 and at the plain step f(z0) in both solvers
    torch.testing.assert_close(info["abs_trace"][:2], fp_info["abs_trace"][:2])
    assert torch.isfinite(info["best_res"]).all() and (info["fallback"] == 0).all()


@pytest.mark.parametrize("grad", ["unrolled", "phantom", "implicit"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_every_gradient_mode_trains_get_in_train_and_eval_mode(grad, mode):
    model = tiny_get(**SMALL)
    model.train(mode == "train")
    noise = torch.randn(2, 1, 8, 8)
    solver = "fixed_point" if grad == "unrolled" else "anderson"
    outs, info = model(
        noise,
        iters=3,
        grad=grad,
        solver=solver,
        return_iterates=True,
        return_info=True,
        phantom_steps=2,
        adjoint_max_iter=5,
    )
    assert len(outs) == {"unrolled": 3, "phantom": 2, "implicit": 1}[grad]
    loss = sum(0.8 ** (len(outs) - 1 - k) * o.abs().mean() for k, o in enumerate(outs))
    loss.backward()
    for p in (model.deq_blocks[0].attn.qkv.weight, model.qkv_inj.weight, model.blocks[0].mlp.fc1.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert info["grad"] == grad
    if grad == "implicit":
        assert info["adjoint"]["nfev"] == 5


@pytest.mark.parametrize("grad", ["phantom", "implicit"])
def test_saved_activation_bytes_do_not_grow_with_solver_iterations(grad):
    model = tiny_get(**SMALL).train()
    noise, z0 = torch.randn(2, 1, 8, 8), torch.randn(2, 16, 32)

    def run(iters, grad):
        return saved_bytes(
            lambda: model(
                noise,
                z0=z0,
                iters=iters,
                grad=grad,
                solver="anderson" if grad != "unrolled" else "fixed_point",
                return_iterates=True,
            )
        )

    two, twelve = run(2, grad), run(12, grad)
    assert two > 0 and abs(twelve - two) < 0.05 * two, (two, twelve)
    if grad == "phantom":  # the counter does see per-iteration activations
        assert run(12, "unrolled") > 3 * run(2, "unrolled")
