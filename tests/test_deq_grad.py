"""getkern.deq.train_iterates: unrolled, phantom and implicit gradients on toy DEQs with known answers
(gradcheck in float64, exact linear-map gradients), and composition with autocast and checkpointing."""

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from getkern import deq


def contraction(n=6, seed=0, dtype=torch.float64, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n, n, generator=g, dtype=dtype)
    W = scale * W / torch.linalg.matrix_norm(W, 2)
    U = torch.randn(n, n, generator=g, dtype=dtype)
    return W, U


def toy_deq(x, W, U, grad, solver="fixed_point", **options):
    """z* = tanh(z* W^T + x U^T): a contraction in z (||W|| = 0.5), z* depends on x, W and U."""
    f = lambda z: torch.tanh(z @ W.T + x @ U.T)  # noqa: E731
    states, info = deq.train_iterates(f, torch.zeros_like(x), grad=grad, solver=solver, backend="torch", **options)
    return states[-1]


def test_implicit_gradient_passes_gradcheck_in_float64():
    W, U = contraction(n=4)
    x = torch.randn(2, 4, dtype=torch.float64)
    x.requires_grad_(), W.requires_grad_()
    # 40 steps of a 0.5-contraction: forward and adjoint exact to ~1e-12, far below gradcheck's tolerance
    fn = lambda x, W: toy_deq(x, W, U, "implicit", iters=40, adjoint_max_iter=40, adjoint_tol=None)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, W), eps=1e-6, atol=1e-6, rtol=1e-5)


def linear_deq_exact_grad(n=12, batch=2, seed=0, dtype=torch.float32):
    """f(z) = z A^T + x B^T: z* = x B^T (I - A)^-T; loss = sum(w * z*); exact grads w.r.t. x and B."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = 0.9 * A / torch.linalg.matrix_norm(A, 2)
    Bm = torch.randn(n, n, generator=g, dtype=torch.float64)
    x = torch.randn(batch, n, generator=g, dtype=torch.float64)
    w = torch.randn(batch, n, generator=g, dtype=torch.float64)
    M = torch.linalg.inv(torch.eye(n, dtype=torch.float64) - A)  # z* = x B^T M^T
    a = w @ M  # adjoint: dloss/d(x B^T)
    exact = {"x": a @ Bm, "B": a.T @ x}
    return [t.to(dtype) for t in (A, Bm, x, w)], exact


@pytest.mark.parametrize("solver", ["fixed_point", "anderson"])
def test_implicit_gradient_equals_the_exact_gradient_of_a_linear_deq(solver):
    (A, Bm, x, w), exact = linear_deq_exact_grad()
    x.requires_grad_(), Bm.requires_grad_()
    states, info = deq.train_iterates(
        lambda z: z @ A.T + x @ Bm.T,
        torch.zeros_like(x),
        iters=200,
        tol=1e-6,
        stop="rel",
        grad="implicit",
        solver=solver,
        adjoint_tol=1e-6,
        adjoint_max_iter=300,
        backend="torch",
    )
    assert len(states) == 1 and "adjoint" not in info
    (states[0] * w).sum().backward()
    torch.testing.assert_close(x.grad.double(), exact["x"], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(Bm.grad.double(), exact["B"], rtol=1e-3, atol=1e-3)
    assert info["adjoint"]["solver"] == solver and (info["adjoint"]["best_res"] < 1e-5).all()


def test_phantom_gradient_with_many_undamped_steps_approaches_the_exact_gradient():
    (A, Bm, x, w), exact = linear_deq_exact_grad(dtype=torch.float64)
    x.requires_grad_()
    f = lambda z: z @ A.T + x @ Bm.T  # noqa: E731
    errs = []
    for steps in (1, 80):
        x.grad = None
        states, _ = deq.train_iterates(
            f, torch.zeros_like(x), iters=300, grad="phantom", phantom_steps=steps, phantom_damping=1.0, backend="torch"
        )
        assert len(states) == steps
        (states[-1] * w).sum().backward()
        errs.append(float((x.grad - exact["x"]).norm() / exact["x"].norm()))
    assert errs[1] < 1e-3 < errs[0]  # a truncated Neumann series: one step is crude, many are exact


def test_phantom_damping_is_the_documented_update():
    W, U = contraction(dtype=torch.float32)
    x = torch.randn(2, 6)
    f = lambda z: torch.tanh(z @ W.T + x @ U.T)  # noqa: E731
    z_star, _ = deq.solve(f, torch.zeros_like(x), max_iter=5, backend="torch")
    states, _ = deq.train_iterates(
        f, torch.zeros_like(x), iters=5, grad="phantom", phantom_steps=2, phantom_damping=0.3, backend="torch"
    )
    z1 = 0.7 * z_star + 0.3 * f(z_star)
    torch.testing.assert_close(states[0], z1)
    torch.testing.assert_close(states[1], 0.7 * z1 + 0.3 * f(z1))


def test_unrolled_is_the_reference_recipe():
    W, U = contraction(dtype=torch.float32)
    x = torch.randn(2, 6, requires_grad=True)
    f = lambda z: torch.tanh(z @ W.T + x @ U.T)  # noqa: E731
    z0 = torch.randn(2, 6)
    states, info = deq.train_iterates(f, z0, iters=4, grad="unrolled")
    z, expected = z0, []
    for _ in range(4):
        z = f(z)
        expected.append(z)
    for a, b in zip(states, expected):
        assert torch.equal(a, b) and a.requires_grad
    assert info["abs_trace"].shape == (4, 2) and info["grad"] == "unrolled"
    torch.testing.assert_close(info["abs_trace"][1], (expected[1] - expected[0]).detach().norm(dim=1))
    with pytest.raises(ValueError, match="unrolled"):
        deq.train_iterates(f, z0, iters=4, grad="unrolled", solver="anderson")
    with pytest.raises(ValueError, match="grad must be"):
        deq.train_iterates(f, z0, iters=4, grad="ift")


def test_implicit_composes_with_autocast_and_checkpointing():
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 16)
    with torch.no_grad():
        lin.weight.mul_(0.5 / torch.linalg.matrix_norm(lin.weight, 2))
    x = torch.randn(2, 16)
    grads = {}
    for mode in ("plain", "checkpoint", "autocast"):
        lin.zero_grad()
        if mode == "checkpoint":
            f = lambda z: checkpoint(lambda z: torch.tanh(lin(z) + x), z, use_reentrant=False)  # noqa: E731
        else:
            f = lambda z: torch.tanh(lin(z) + x)  # noqa: E731
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
            states, _ = deq.train_iterates(f, torch.zeros(2, 16), iters=30, grad="implicit", backend="torch")
            loss = states[0].float().square().sum()
        loss.backward()
        grads[mode] = lin.weight.grad.clone()
    torch.testing.assert_close(grads["checkpoint"], grads["plain"])
    assert torch.isfinite(grads["autocast"]).all()
    torch.testing.assert_close(grads["autocast"], grads["plain"], rtol=0.1, atol=0.05)


def test_implicit_composes_with_distributed_data_parallel(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    class ToyDEQ(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 8)
            with torch.no_grad():
                self.lin.weight.mul_(0.5 / torch.linalg.matrix_norm(self.lin.weight, 2))

        def forward(self, x):
            f = lambda z: torch.tanh(self.lin(z) + x)  # noqa: E731
            return deq.train_iterates(f, torch.zeros_like(x), iters=30, grad="implicit", backend="torch")[0][0]

    torch.manual_seed(0)
    model, x = ToyDEQ(), torch.randn(3, 8)
    model(x).square().sum().backward()
    expected = model.lin.weight.grad.clone()
    model.zero_grad()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model)
        ddp(x).square().sum().backward()
    finally:
        dist.destroy_process_group()
    torch.testing.assert_close(model.lin.weight.grad, expected)


def test_implicit_recompute_gives_the_same_gradient_and_keeps_no_activations_of_f():
    from getkern.profiling.memory import training_step_memory

    W, U = contraction(n=256)
    x = torch.randn(3, 256, dtype=W.dtype)
    grads, kept = {}, {}
    for recompute in (True, False):
        Wr = W.clone().requires_grad_()

        def f(z):  # six layers, each keeping its tanh output for backward
            h = z @ Wr.T + x @ U.T
            for _ in range(6):
                h = torch.tanh(h) @ Wr.T + x @ U.T
            return torch.tanh(h)

        kept[recompute] = training_step_memory(
            lambda: (
                deq.train_iterates(
                    f, torch.zeros_like(x), iters=30, grad="implicit", backend="torch", recompute=recompute
                )[0][0]
                .square()
                .sum()
            ),
            torch.device("cpu"),
        )["retained"]
        grads[recompute] = Wr.grad
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-5, atol=1e-6)
    # without recompute f's activations stay alive until backward; with it only z* and f(z*) do
    assert kept[True] < 0.5 * kept[False], kept
