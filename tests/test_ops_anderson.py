"""Triton Anderson passes (getkern.ops.anderson) vs the PyTorch reference and float64, under the interpreter.

Tolerance (FlashAttention style): the kernel's max error vs a float64 computation on the same stored
(state-dtype-rounded) values must be at most FACTOR times the torch path's error, plus one fp32 ulp
of the magnitude. History slots, the best iterate and every bit the passes copy must match exactly.
"""

import pytest
import torch
from helpers import assert_close_to_f64

from getkern._backend import BackendUnavailable
from getkern.ops import anderson as ops
from getkern.ops.anderson import REL_EPS, anderson_mix, anderson_record

FACTOR = 2.0
FP32_EPS = torch.finfo(torch.float32).eps


def history(B, m, n, k, dtype, gen):
    """Ring buffers as they are before iteration k: written slots random, never-written slots and
    the whole Gram poisoned with NaN (the record pass must neither read nor leave them)."""
    F = torch.randn(B, m, n, generator=gen).to(dtype)
    G = (0.3 * torch.randn(B, m, n, generator=gen)).to(dtype)
    F[:, min(k, m) :] = float("nan")
    G[:, min(k, m) :] = float("nan")
    return F, G, torch.full((B, m, m), float("nan"))


def check_record(B, m, n, k, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    F, G, gram = history(B, m, n, k, dtype, gen)
    z = torch.randn(B, n, generator=gen).to(dtype)
    fz = (z.float() + 0.2 * torch.randn(B, n, generator=gen)).to(dtype)
    state = [(F.clone(), G.clone(), gram.clone()) for _ in range(2)]
    got = anderson_record(fz, z, *state[0], k, backend="triton")
    ref = anderson_record(fz, z, *state[1], k, backend="torch")

    (Fk, Gk, gk), (Ft, Gt, gt) = state
    assert torch.equal(Fk.nan_to_num(7.0), Ft.nan_to_num(7.0)), "F ring differs from the torch path"
    assert torch.equal(Gk.nan_to_num(7.0), Gt.nan_to_num(7.0)), "G ring (g rounded to the state dtype) differs"
    slot, valid = k % m, min(k + 1, m)
    written = torch.zeros(m, m, dtype=torch.bool)
    written[slot, :valid] = written[:valid, slot] = True
    assert torch.isnan(gk[:, ~written]).all(), "Gram entries outside the slot's row/column were touched"
    assert torch.isfinite(gk[:, written]).all(), "Gram row/column not fully written"

    G64 = Gt.double()
    row64 = torch.einsum("bin,bn->bi", G64[:, :valid], G64[:, slot])
    assert_close_to_f64("gram row", gk[:, slot, :valid], row64, gt[:, slot, :valid], FACTOR, eps_dtype=torch.float32)
    assert torch.equal(gk[:, slot, :valid], gk[:, :valid, slot]), "Gram row and column differ"
    abs64 = G64[:, slot].norm(dim=1)
    rel64 = abs64 / (Ft[:, slot].double().norm(dim=1) + REL_EPS)
    assert_close_to_f64("abs_res", got[0], abs64, ref[0], FACTOR, eps_dtype=torch.float32)
    assert_close_to_f64("rel_res", got[1], rel64, ref[1], FACTOR, eps_dtype=torch.float32)
    assert got[0].dtype == got[1].dtype == torch.float32 and got[0].shape == (B,)


# History sizes 1..8, the state dtypes, batch 1 and 5, odd n; k covers a filling and a wrapped ring.
@pytest.mark.parametrize("m", range(1, 9))
def test_record_matches_reference(m, poisoned):
    dtype = torch.float16 if m == 3 else torch.bfloat16 if m % 2 else torch.float32
    B = 5 if m in (1, 4, 5, 8) else 1
    for k in sorted({m // 2, 2 * m + 1}):
        check_record(B, m, 37 + 2 * m, k, dtype, seed=m * 100 + k)


@pytest.mark.parametrize("dtype,m", [(torch.float32, 3), (torch.bfloat16, 8)])
def test_record_reduces_across_chunks(dtype, m, poisoned):
    n = 1101  # several programs per sample: the two-stage reduction and the masks of the last chunk
    assert ops._stream_config(m)[1] < n
    check_record(2, m, n, m + 2, dtype, seed=m)


def mix_inputs(B, m, n, k, dtype, gen):
    F, G, _ = history(B, m, n, k + 1, dtype, gen)
    valid = min(k + 1, m)
    alpha = torch.randn(B, m, generator=gen)
    alpha[:, valid:] = 0.0
    best = torch.randn(B, n, generator=gen).to(dtype)
    # improved, worse, NaN residual, exact tie, first iterate (best_res = inf)
    res = torch.tensor([0.5, 2.0, float("nan"), 1.0, 3.0])[:B].contiguous()
    best_res = torch.tensor([1.0, 1.0, 1.0, 1.0, float("inf")])[:B].contiguous()
    return F, G, alpha, res, best, best_res


def check_mix(B, m, n, k, tau, dtype, seed, restart=None):
    gen = torch.Generator().manual_seed(seed)
    F, G, alpha, res, best, best_res = mix_inputs(B, m, n, k, dtype, gen)
    kbest, kbest_res = best.clone(), best_res.clone()
    tbest, tbest_res = best.clone(), best_res.clone()
    out = anderson_mix(
        F, G, alpha, tau, k=k, res=res, best=kbest, best_res=kbest_res, restart=restart, backend="triton"
    )
    # the kernel never reads never-written slots (NaN here); the torch path weighs them by 0, so it
    # gets zeros there
    ref = anderson_mix(
        F.nan_to_num(0.0),
        G.nan_to_num(0.0),
        alpha,
        tau,
        k=k,
        res=res,
        best=tbest,
        best_res=tbest_res,
        restart=restart,
        backend="torch",
    )
    assert out.dtype == dtype and out.shape == (B, n)
    F64, G64 = F.nan_to_num(0.0).double(), G.nan_to_num(0.0).double()
    mixed64 = torch.einsum("bi,bin->bn", alpha.double(), F64 - (1.0 - tau) * G64)
    if restart is not None:  # restarted samples step to the best iterate as it was before the call
        mixed64 = torch.where(restart.unsqueeze(1), best.double(), mixed64)
        assert torch.equal(out[restart], best[restart]) and torch.equal(ref[restart], best[restart])
    assert torch.isfinite(out).all(), "z_next has unwritten or non-finite elements"
    assert_close_to_f64("z_next", out, mixed64, ref, FACTOR, eps_dtype=torch.float32)
    assert torch.equal(kbest, tbest), "best iterate differs from the torch path"
    assert torch.equal(kbest_res.nan_to_num(-1.0), tbest_res.nan_to_num(-1.0)), "best_res differs"


@pytest.mark.parametrize(
    "m,tau,dtype,B",
    [
        (1, 1.0, torch.float32, 5),
        (2, 0.6, torch.bfloat16, 1),
        (3, 1.0, torch.bfloat16, 5),
        (4, 0.6, torch.float32, 5),
        (5, 1.0, torch.float16, 1),
        (6, 1.0, torch.bfloat16, 5),
        (7, 0.6, torch.float32, 1),
        (8, 0.6, torch.bfloat16, 5),
    ],
)
def test_mix_matches_reference(m, tau, dtype, B, poisoned):
    for k in sorted({m // 2, 2 * m + 1}):
        check_mix(B, m, 41 + 2 * m, k, tau, dtype, seed=m * 10 + k)


@pytest.mark.parametrize("dtype,tau", [(torch.float32, 1.0), (torch.bfloat16, 0.6)])
def test_mix_restart_takes_the_best_iterate(dtype, tau, poisoned):
    """The safeguard's step: restarted samples (the first one also improving, the last one the first
    iterate) get the best f-value from before the call, bitwise, on both paths and across chunks."""
    restart = torch.tensor([True, False, True, False, True])
    check_mix(5, 4, 41, 6, tau, dtype, seed=7, restart=restart)
    check_mix(5, 3, ops.BLOCK + 77, 4, tau, dtype, seed=8, restart=restart)


@pytest.mark.parametrize("tau", [1.0, 0.6])
def test_mix_keeps_the_state_precision_under_extrapolation(tau):
    """Near convergence the history is nearly equal and the weights large (here +-300, summing to 1):
    summed over the raw F_i, fp32 rounding of alpha_i F_i would cost about sum |alpha| ulps of the state;
    relative to the newest slot it costs a few ulps of the differences. Both paths, fp32 state."""
    gen = torch.Generator().manual_seed(9)
    B, m, n, k = 2, 4, 300, 5
    slot = k % m
    F = (1.0 + 1e-4 * torch.randn(B, m, n, generator=gen)).float()
    G = (1e-4 * torch.randn(B, m, n, generator=gen)).float()
    alpha = torch.tensor([[300.0, -299.5, 0.0, 0.5], [-300.0, 150.0, 0.0, 151.0]])  # slot 1 implied
    for backend in ("triton", "torch"):
        best, best_res = torch.zeros(B, n), torch.zeros(B)
        out = anderson_mix(F, G, alpha, tau, k=k, res=torch.ones(B), best=best, best_res=best_res, backend=backend)
        D = F.double() - (1.0 - tau) * G.double()
        ref = D[:, slot] + torch.einsum("bi,bin->bn", alpha.double(), D - D[:, slot : slot + 1])
        scale = torch.einsum("bi,bin->bn", alpha.double().abs(), (D - D[:, slot : slot + 1]).abs())
        err = (out.double() - ref).abs()
        assert (err <= 2 * FP32_EPS * (ref.abs() + 4 * scale)).all(), (backend, err.max().item())


def test_mix_best_update_across_chunks(poisoned):
    """Several programs per sample: every chunk of an improved sample is copied, best_res changes
    once all of them have compared against it, and the arrival tickets are re-armed."""
    n = 2 * ops.BLOCK + 77
    check_mix(5, 3, n, 4, 1.0, torch.bfloat16, seed=3)
    assert not ops._ticket_buffer(torch.device("cpu"), 5).any(), "arrival tickets left armed"


def contractive_map(B, n, dtype, gen, rho=0.8):
    """f(z) = A z + c per sample with ||A||_2 = rho, evaluated in fp32 and rounded to dtype."""
    A = torch.randn(B, n, n, generator=gen)
    A *= rho / torch.linalg.matrix_norm(A, ord=2).view(B, 1, 1)
    c = torch.randn(B, n, generator=gen)
    return lambda z: (torch.bmm(A, z.float().unsqueeze(2)).squeeze(2) + c).to(dtype)


def mixing_weights(gram, k, lam=1e-4):
    """The bordered (m+1)x(m+1) system over the valid slots, solved with torch.linalg.solve."""
    B, m, _ = gram.shape
    v = min(k + 1, m)
    H = torch.zeros(B, v + 1, v + 1)
    H[:, 0, 1:] = H[:, 1:, 0] = 1.0
    H[:, 1:, 1:] = gram[:, :v, :v] + lam * torch.eye(v)
    rhs = torch.zeros(B, v + 1)
    rhs[:, 0] = 1.0
    alpha = torch.zeros(B, m)
    alpha[:, :v] = torch.linalg.solve(H, rhs)[:, 1:]
    return alpha


def anderson_lockstep(f, z0, m, iters, tau):
    """Run the Anderson loop on the torch passes; at every step run the Triton passes on a copy of the
    same state and inputs, and compare. Returns the torch path's iterates."""
    B, n = z0.shape
    F, G = torch.zeros(B, m, n, dtype=z0.dtype), torch.zeros(B, m, n, dtype=z0.dtype)
    gram, best, best_res = torch.zeros(B, m, m), z0.clone(), torch.full((B,), float("inf"))
    z, iterates = z0, []
    for k in range(iters):
        fz = f(z)
        kF, kG, kgram, kbest, kbest_res = (t.clone() for t in (F, G, gram, best, best_res))
        got = anderson_record(fz, z, kF, kG, kgram, k, backend="triton")
        ref = anderson_record(fz, z, F, G, gram, k, backend="torch")
        assert torch.equal(kF, F) and torch.equal(kG, G), f"step {k}: history differs"
        torch.testing.assert_close(kgram, gram, rtol=1e-5, atol=1e-5 * gram.abs().max().item())
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)
        alpha = mixing_weights(gram, k)
        z_k = anderson_mix(kF, kG, alpha, tau, k=k, res=ref[0], best=kbest, best_res=kbest_res, backend="triton")
        z = anderson_mix(F, G, alpha, tau, k=k, res=ref[0], best=best, best_res=best_res, backend="torch")
        # one state-dtype ulp (the final rounding) plus fp32 summation-order error
        scale = torch.einsum("bi,bin->bn", alpha.abs(), F.float().abs() + G.float().abs()).max().item()
        atol = torch.finfo(z.dtype).eps * z.float().abs().max().item() + 8 * FP32_EPS * scale
        torch.testing.assert_close(z_k.float(), z.float(), rtol=0, atol=atol, msg=f"step {k}: z_next differs")
        assert torch.equal(kbest, best) and torch.equal(kbest_res, best_res), f"step {k}: best iterate differs"
        iterates.append(z)
    return iterates, best_res


@pytest.mark.parametrize(
    "dtype,B,m,n,tau,iters",
    [
        (torch.float32, 5, 3, 37, 1.0, 5),
        (torch.bfloat16, 5, 2, 45, 0.7, 5),
        (torch.float32, 1, 8, 29, 0.8, 10),
        (torch.bfloat16, 1, 1, 33, 1.0, 3),
    ],
)
def test_anderson_steps_match_reference(dtype, B, m, n, tau, iters):
    gen = torch.Generator().manual_seed(B * 100 + m)
    f = contractive_map(B, n, dtype, gen)
    z0 = torch.randn(B, n, generator=gen).to(dtype)
    _, best_res = anderson_lockstep(f, z0, m, iters, tau)
    assert torch.isfinite(best_res).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_singular_history_of_repeated_iterates(dtype):
    """f constant: from the second step on every g is zero and every stored f-value identical, so
    the Gram is all zero (rank 0) and only the regularisation keeps the bordered system solvable."""
    gen = torch.Generator().manual_seed(5)
    c = torch.randn(2, 31, generator=gen).to(dtype)
    iterates, best_res = anderson_lockstep(lambda z: c.clone(), torch.zeros_like(c), 3, 5, 1.0)
    torch.testing.assert_close(iterates[-1], c)
    assert (best_res == 0).all()


def test_solver_triton_backend_matches_torch_through_a_restart():
    """A transient fault in f (sample 1, call 6): both paths reject that step and restart there."""
    from getkern.deq import solve

    gen = torch.Generator().manual_seed(12)
    f = contractive_map(3, 35, torch.float32, gen, rho=0.9)
    z0 = torch.randn(3, 35, generator=gen)

    def faulty():
        calls = []

        def f_faulty(z):
            out = f(z)
            if len(calls) == 6:
                out[1] += 10.0
            calls.append(z)
            return out

        return f_faulty

    kw = dict(solver="anderson", max_iter=10, m=4, tol=None)
    (z_k, info_k), (z_t, info_t) = (solve(faulty(), z0, backend=b, **kw) for b in ("triton", "torch"))
    assert info_k["restarts"].tolist() == info_t["restarts"].tolist() == [0, 1, 0]
    torch.testing.assert_close(z_k, z_t, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(info_k["abs_trace"], info_t["abs_trace"], rtol=1e-3, atol=1e-6)


def test_solver_triton_backend_matches_torch():
    from getkern.deq import solve

    gen = torch.Generator().manual_seed(11)
    f2 = contractive_map(3, 35, torch.float32, gen, rho=0.9)
    f = lambda z: f2(z.reshape(3, 35)).reshape(3, 5, 7)  # noqa: E731
    z0 = torch.randn(3, 5, 7, generator=gen)
    kw = dict(solver="anderson", max_iter=8, m=4, tol=None)
    z_k, info_k = solve(f, z0, backend="triton", **kw)
    z_t, info_t = solve(f, z0, backend="torch", **kw)
    torch.testing.assert_close(z_k, z_t, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(info_k["abs_trace"], info_t["abs_trace"], rtol=1e-3, atol=1e-6)
    assert info_t["abs_trace"][-1].max() < 1e-2 * info_t["abs_trace"][0].min(), "the toy problem did not converge"


# ---------------------------------------------------------------- dispatch, validation, AOT specs


def small_state(B=2, m=3, n=5, dtype=torch.float32):
    F, G = torch.zeros(B, m, n, dtype=dtype), torch.zeros(B, m, n, dtype=dtype)
    return torch.zeros(B, n, dtype=dtype), torch.zeros(B, n, dtype=dtype), F, G, torch.zeros(B, m, m)


def test_triton_without_interpreter_on_cpu_is_unavailable(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    fz, z, F, G, gram = small_state()
    with pytest.raises(BackendUnavailable, match="anderson_record"):
        anderson_record(fz, z, F, G, gram, 0, backend="triton")
    with pytest.raises(BackendUnavailable, match="anderson_mix"):
        anderson_mix(
            F, G, torch.zeros(2, 3), 1.0, k=0, res=torch.zeros(2), best=z, best_res=torch.zeros(2), backend="triton"
        )
    anderson_record(fz, z, F, G, gram, 0, backend="auto")  # auto takes the torch path there


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(fz=torch.zeros(2, 6)), "fz must have shape"),
        (dict(z=torch.zeros(2, 5, dtype=torch.float64)), "z must be torch.float32"),
        (dict(G=torch.zeros(2, 3, 6)), "F and G must be"),
        (dict(gram=torch.zeros(2, 3, 3, dtype=torch.float64)), "gram must be float32"),
        (dict(F=torch.zeros(2, 5, 3).transpose(1, 2)), "F must be contiguous"),
        (dict(k=-1), "k must be >= 0"),
    ],
)
def test_record_rejects_bad_input(change, match):
    fz, z, F, G, gram = small_state()
    args = dict(fz=fz, z=z, F=F, G=G, gram=gram, k=0) | change
    with pytest.raises(ValueError, match=match):
        anderson_record(**args, backend="triton")


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(alpha=torch.zeros(2, 4)), "alpha must be float32 of shape"),
        (dict(best=torch.zeros(2, 5, dtype=torch.bfloat16)), "best must be torch.float32"),
        (dict(res=torch.zeros(2, dtype=torch.float64)), "res must be float32"),
        (dict(best_res=torch.zeros(3)), "best_res must be float32 of shape"),
        (dict(restart=torch.zeros(2)), "restart must be bool"),
        (dict(restart=torch.zeros(3, dtype=torch.bool)), "restart must be bool of shape"),
        (dict(tau=float("nan")), "tau must be a finite float"),
        (dict(k=-2), "k must be >= 0"),
    ],
)
def test_mix_rejects_bad_input(change, match):
    _, z, F, G, _ = small_state()
    args = (
        dict(F=F, G=G, alpha=torch.zeros(2, 3), tau=1.0, k=0, res=torch.zeros(2), best=z, best_res=torch.zeros(2))
        | change
    )
    with pytest.raises(ValueError, match=match):
        anderson_mix(**args, backend="triton")


def test_triton_path_rejects_float64():
    fz, z, F, G, gram = small_state(dtype=torch.float64)
    with pytest.raises(BackendUnavailable, match="float64"):
        anderson_record(fz, z, F, G, gram, 0, backend="triton")
    anderson_record(fz, z, F, G, gram, 0, backend="auto")  # auto: the PyTorch path
    anderson_record(fz, z, F, G, gram, 0, backend="torch")


def test_aot_specs_cover_every_dispatched_config():
    specs = list(ops.aot_specs())
    for spec in specs:
        assert list(spec.signature) == list(spec.kernel.arg_names), spec.name
        assert set(spec.constexprs) == {a for a, t in spec.signature.items() if t == "constexpr"}, spec.name
        assert not spec.uses_dot
    record = {
        (s.signature["fz_ptr"], s.constexprs["ROWS"], s.constexprs["BLOCK"])
        for s in specs
        if s.kernel is ops._record_stream_kernel
    }
    mix = {(s.signature["F_ptr"], s.constexprs["DAMPED"]) for s in specs if s.kernel is ops._mix_kernel}
    for ptr in ops._PTR.values():
        assert {(ptr, *ops._stream_config(m)) for m in range(1, 9)} <= record
        assert {(ptr, False), (ptr, True)} <= mix
    assert sum(s.kernel is ops._record_finish_kernel for s in specs) == 1


# ---------------------------------------------------------------- traffic model vs a counted run


@pytest.mark.parametrize("tau", [1.0, 0.7])
def test_traffic_model_matches_counted_run(tau):
    """The docs' byte model vs every lane of every load, store and atomic the interpreted kernels issue."""
    from getkern.profiling.traffic import TritonTrafficCounter

    B, m, n, k, dtype = 2, 3, 1101, 4, torch.bfloat16
    gen = torch.Generator().manual_seed(0)
    F, G, gram = history(B, m, n, k, dtype, gen)
    z, fz = torch.randn(B, n, generator=gen).to(dtype), torch.randn(B, n, generator=gen).to(dtype)
    best, best_res = torch.zeros(B, n, dtype=dtype), torch.tensor([float("inf"), 0.0])  # one improves
    restart = torch.tensor([False, True])  # the other restarts
    with TritonTrafficCounter() as counter:
        res, _ = anderson_record(fz, z, F, G, gram, k, backend="triton")
        alpha = mixing_weights(gram, k)
        anderson_mix(F, G, alpha, tau, k=k, res=res, best=best, best_res=best_res, restart=restart, backend="triton")
    model = ops.triton_traffic(B, m, n, k, dtype, tau, improved=1, restarted=1)
    counted = counter.traffic
    assert (counted.requested_bytes_read, counted.requested_bytes_written, counted.launches) == (
        model.bytes_read,
        model.bytes_written,
        model.launches,
    )
    assert ops.triton_traffic(B, m, n, k, dtype, tau).bytes <= 1.3 * ops.traffic_floor(B, m, n, k, dtype, tau)
