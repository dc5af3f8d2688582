"""EDM teacher: schedule, preconditioning, Heun sampler against closed forms, shipped digits teacher."""

import math

import pytest
import torch

from getkern.checkpoint import CheckpointError
from getkern.teacher import (
    SHIPPED_DIGITS_TEACHER,
    EDMPrecond,
    heun_sample,
    load_teacher,
    network_evaluations,
    sigma_steps,
)
from getkern.teacher.digits import DigitsMLP, load_teacher_dir, save_teacher
from getkern.teacher.edm import edm_loss
from getkern.teacher.edm_pickle import load_edm_pickle


def test_sigma_steps_match_the_formula_in_float64():
    n, smin, smax, rho = 7, 0.002, 80.0, 7.0
    t = sigma_steps(n)
    expect = [(smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho for i in range(n)] + [
        0.0
    ]
    assert t.dtype == torch.float64 and t.shape == (n + 1,)
    assert torch.allclose(t, torch.tensor(expect, dtype=torch.float64), rtol=1e-15, atol=0)
    assert t[0] == smax and abs(t[n - 1] - smin) < 1e-15 and t[n] == 0
    with pytest.raises(ValueError, match="num_steps"):
        sigma_steps(1)


class _Recorder(torch.nn.Module):
    """Raw network F that records its inputs and returns a fixed function of them."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x_in, c_noise, labels):
        self.seen = (x_in.clone(), c_noise.clone())
        return torch.sin(3 * x_in) + c_noise.view(-1, 1, 1, 1)


def test_precond_is_the_four_equations():
    net = _Recorder().double()
    D = EDMPrecond(net, sigma_data=0.5)
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    s = torch.tensor([0.01, 1.0, 60.0], dtype=torch.float64)
    out = D(x, s)
    sd, sv = 0.5, s.view(-1, 1, 1, 1)
    c_in = 1 / torch.sqrt(sv**2 + sd**2)
    c_noise = torch.log(s) / 4
    expect = sd**2 / (sv**2 + sd**2) * x + sv * sd / torch.sqrt(sv**2 + sd**2) * (
        torch.sin(3 * c_in * x) + c_noise.view(-1, 1, 1, 1)
    )
    assert torch.allclose(net.seen[0], c_in * x, rtol=1e-14) and torch.allclose(net.seen[1], c_noise, rtol=1e-14)
    assert torch.allclose(out, expect, rtol=1e-13, atol=1e-13)


def _gaussian_denoiser(sd):
    """The ideal denoiser for data ~ N(0, sd^2 I): D(x, s) = x sd^2 / (s^2 + sd^2)."""
    calls = []

    def D(x, sigma, labels):
        calls.append(x.dtype)
        s = sigma.view(-1, 1, 1, 1)
        return x * sd**2 / (s**2 + sd**2)

    return D, calls


def test_heun_matches_the_exact_ode_solution_at_second_order():
    # Probability-flow ODE for Gaussian data: x(s) = x(smax) sqrt((s^2 + sd^2) / (smax^2 + sd^2)).
    sd = 0.7
    z = torch.randn(4, 1, 3, 3, dtype=torch.float64)
    exact = z * 80.0 * sd / math.sqrt(80.0**2 + sd**2)
    errors = []
    for n in (18, 36, 72):
        D, calls = _gaussian_denoiser(sd)
        x = heun_sample(D, z.float(), num_steps=n)
        assert x.dtype == torch.float64 and len(calls) == network_evaluations(n) == 2 * n - 1
        assert all(dt == torch.float64 for dt in calls)
        errors.append((x - exact).abs().max().item())
    assert errors[0] < 0.06 * exact.abs().max().item()
    # second order: doubling the steps divides the error by about 4 (measured 4.5, 4.2)
    assert 3.5 < errors[0] / errors[1] < 5.0 and 3.5 < errors[1] / errors[2] < 5.0


def test_edm_loss_weights_each_sigma():
    torch.manual_seed(0)
    net = _Recorder()
    D = EDMPrecond(net)
    y = torch.rand(5, 1, 2, 2)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    loss = edm_loss(D, y, generator=g1)
    sigma = (torch.randn(5, generator=g2) * 1.2 - 1.2).exp()
    n = torch.randn(y.shape, generator=g2)
    w = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    expect = (w.view(-1, 1, 1, 1) * (D(y + n * sigma.view(-1, 1, 1, 1), sigma) - y) ** 2).mean()
    assert torch.allclose(loss, expect, rtol=1e-6)


def test_shipped_teacher_draws_the_requested_digits():
    from getkern.metrics.digits_classifier import load_digits_classifier

    teacher = load_teacher("digits")
    assert teacher.num_classes == 10 and teacher.image_shape == (1, 8, 8)
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(100, 1, 8, 8, generator=g), torch.arange(100) % 10
    x = teacher.sample(z, y)
    assert x.dtype == torch.float64 and x.shape == (100, 1, 8, 8) and torch.isfinite(x).all()
    clf = load_digits_classifier().eval()
    with torch.no_grad():
        acc = (clf(x.float().clamp(-1, 1)).argmax(1) == y).float().mean().item()
    assert acc > 0.9, f"classifier agrees with the requested class on only {acc:.0%} of teacher samples"


def test_teacher_round_trip_and_corrupt_file(tmp_path):
    torch.manual_seed(0)
    net = DigitsMLP(hidden=16, layers=1)
    torch.nn.init.normal_(net.out.weight)
    save_teacher(EDMPrecond(net), tmp_path / "t")
    loaded, meta = load_teacher_dir(tmp_path / "t")
    x, s, y = torch.randn(2, 1, 8, 8), torch.tensor([0.5, 3.0]), torch.tensor([1, 7])
    assert torch.equal(loaded(x, s, y), EDMPrecond(net)(x, s, y))
    (tmp_path / "t" / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_teacher_dir(tmp_path / "t")
    assert (SHIPPED_DIGITS_TEACHER / "config.json").is_file()


def test_edm_pickle_needs_explicit_trust(tmp_path):
    p = tmp_path / "edm.pkl"
    p.write_bytes(b"not used")
    with pytest.raises(CheckpointError, match="trust_pickle"):
        load_edm_pickle(p)
    with pytest.raises(CheckpointError, match="dnnlib"):
        load_edm_pickle(p, trust_pickle=True)
