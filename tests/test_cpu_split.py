"""The trainer's CPU split (getkern/distill/cpu_split.py): a micro-batch as one part per thread gives the
unsplit step's losses and weights to float rounding, with a stateful objective (the discriminator) too,
deterministically, and only where the rows are independent; ThreadSplit's gradients against float64."""

import pytest
import torch
from helpers import tiny_teacher, tiny_train_config, torch_threads

from getkern.data import write_pairs
from getkern.distill import Trainer
from getkern.distill.cpu_split import ThreadSplit


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    write_pairs(tiny_teacher(), root, num_pairs=24, shard_size=10, num_steps=2, progress=False)
    return root


def _fit(pairs, out, **settings):
    with torch_threads(2):
        trainer = Trainer(tiny_train_config(pairs, out, iters=3, max_steps=3, **settings))
        return trainer, [r["loss"] for r in trainer.fit()]


def _first_step_gradients(pairs, out, **settings):
    """Every gradient of one training step (student and discriminator), before any optimiser uses it:
    weights after Adam steps would not compare (an element whose gradient is near 0 moves by +-lr)."""
    with torch_threads(2):
        trainer = Trainer(tiny_train_config(pairs, out, iters=3, **settings))
        trainer.scaler.step = lambda optimizer: None  # no optimiser step
        trainer.objective.step = lambda: None  # the discriminator's update (and zeroing) too
        trainer.train_step()
    adversarial = trainer.objective.adversarial
    disc = [] if adversarial is None else [p.grad for p in adversarial.disc.parameters()]
    return trainer, [p.grad for p in trainer.model.parameters()] + disc


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # no optimiser step
@pytest.mark.parametrize(
    "objective", [{}, {"adversarial_weight": 0.05, "disc_classes": True}], ids=["fpc", "adversarial"]
)
def test_split_matches_the_unsplit_step(pairs, tmp_path, objective):
    split, split_grads = _first_step_gradients(pairs, tmp_path / "split", cpu_split="threads", **objective)
    plain, plain_grads = _first_step_gradients(pairs, tmp_path / "plain", **objective)
    assert split.split is not None and split.split.parts == 2 and plain.split is None
    assert len(split_grads) == len(plain_grads) > 0
    assert sum(g is not None for g in plain_grads) > 0
    for a, b in zip(split_grads, plain_grads):
        if b is None:  # a parameter this step does not reach (the same one on both)
            assert a is None
            continue
        # Matmuls of fewer rows sum in another order: float32 rounding of sums of a few hundred terms.
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
    _, split_losses = _fit(pairs, tmp_path / "split3", cpu_split="threads", **objective)
    _, plain_losses = _fit(pairs, tmp_path / "plain3", **objective)
    assert split_losses == pytest.approx(plain_losses, rel=1e-5)


def test_split_is_deterministic(pairs, tmp_path):
    a, la = _fit(pairs, tmp_path / "a", cpu_split="threads")
    b, lb = _fit(pairs, tmp_path / "b", cpu_split="threads")
    assert la == lb
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


def test_split_only_where_it_applies(pairs, tmp_path):
    with torch_threads(2):
        threads = dict(cpu_split="threads")
        assert (
            Trainer(tiny_train_config(pairs, tmp_path / "p", grad="phantom", **threads)).split is None
        )  # batch-wide stop
        assert Trainer(tiny_train_config(pairs, tmp_path / "o")).split is None  # off by default
    with torch_threads(1):
        assert Trainer(tiny_train_config(pairs, tmp_path / "t", **threads)).split is None


def test_thread_split_gradients_match_float64():
    """Gradients through the outputs (one of them needs none) and straight from a parameter, on 3
    uneven parts of 7 rows, against float64 autograd on the whole batch; the caller's thread count kept."""
    g = torch.Generator().manual_seed(0)
    w64, b64, x64 = (
        torch.randn(5, 3, generator=g, dtype=torch.float64),
        torch.randn(5, generator=g, dtype=torch.float64),
        torch.randn(7, 3, generator=g, dtype=torch.float64),
    )

    def run(w, b, x, split):
        w, b = w.clone().requires_grad_(True), b.clone().requires_grad_(True)

        def forward(rows):
            h = torch.tanh(x[rows] @ w.t() + b)
            return [h, h.square(), x[rows]]  # the last needs no gradient

        def loss_fn(outs):
            return outs[0].sum() + 0.5 * outs[1].mean() + outs[2].sum() + w.square().sum()

        if split:
            with torch_threads(2):
                loss = ThreadSplit(3).step(forward, loss_fn, 7, [w, b], scale=0.5)
                assert torch.get_num_threads() == 2
        else:
            loss = loss_fn(forward(slice(0, 7)))
            (0.5 * loss).backward()
        return loss, w.grad, b.grad

    got = run(w64.float(), b64.float(), x64.float(), split=True)
    ref = run(w64, b64, x64, split=False)
    for a, r in zip(got, ref):
        torch.testing.assert_close(a.double(), r, rtol=1e-6, atol=1e-6)
