"""Training objectives beyond the L1 regression: augmentation ensemble, perceptual distance, adversarial
losses and discriminator, their checkpoint state, the ViT baseline, freezing, and bad options."""

import math

import pytest
import torch
from helpers import TINY_TRAIN_MODEL, tiny_teacher, tiny_train_config

from getkern.checkpoint import CheckpointError
from getkern.data import write_pairs
from getkern.distill import Trainer
from getkern.distill.objectives import Objective
from getkern.distill.objectives.adversarial import Discriminator, discriminator_loss, generator_loss
from getkern.distill.objectives.augment import AugmentParams, AugmentSpec, apply_params, sample_params
from getkern.distill.objectives.finetune import freeze_parameters
from getkern.distill.objectives.perceptual import DigitsFeatureLayers, PerceptualDistance, layer_distance
from getkern.metrics.digits_classifier import load_digits_classifier

MODEL = TINY_TRAIN_MODEL
VIT = dict(arch="vit", hidden_size=16, depth=2, num_heads=2, mlp_ratio=2, backend="torch")
ADV = dict(adversarial_weight=0.5, disc_input="pair", disc_classes=True, disc_width=4)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    write_pairs(tiny_teacher(), root, num_pairs=24, shard_size=12, num_steps=2, progress=False)
    return root


def config(pairs, out, **kw):
    return tiny_train_config(pairs, out, **{"iters": 2, "max_steps": 6, "perceptual_ensemble": 2, **kw})


def digits(n, seed):
    return torch.rand((n, 1, 8, 8), generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---------------------------------------------------------------- augmentation ensemble


def test_augmentations_are_identical_for_both_images_and_differ_between_members():
    a, b = digits(5, 0), digits(5, 1)
    g = torch.Generator().manual_seed(3)
    m1, m2 = (sample_params(AugmentSpec(cutout_prob=1.0), 5, 8, 8, g) for _ in range(2))
    both = apply_params(torch.stack([a, b, a.clone()]), m1)
    assert torch.equal(both[0], both[2])  # same image, same member: same result
    assert torch.equal(both[0], apply_params(a, m1)) and torch.equal(both[1], apply_params(b, m1))
    assert not torch.allclose(apply_params(a, m1), apply_params(a, m2))  # members differ
    assert not torch.allclose(apply_params(a, m1), a)
    # the same (seed, step) draws the same transforms; a micro-batch gets its rows of the global draw
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    p, q = sample_params(AugmentSpec(), 5, 8, 8, g1), sample_params(AugmentSpec(), 5, 8, 8, g2)
    assert torch.equal(p.theta, q.theta) and torch.equal(p.cutout, q.cutout)
    assert torch.equal(apply_params(a[2:4], p.select(slice(2, 4))), apply_params(a, p)[2:4])


def test_augmentation_geometry_against_hand_computed_shift_and_cutout():
    x = digits(1, 2)
    pixel = 2 / 8  # one pixel in affine_grid coordinates
    shift = AugmentParams(torch.tensor([[[1.0, 0.0, pixel], [0.0, 1.0, 0.0]]]), torch.zeros(1, 8, 8, dtype=torch.bool))
    out = apply_params(x, shift)  # output(i, j) = input(i, j + 1): content moves left, background enters
    assert torch.allclose(out[..., :7], x[..., 1:], atol=1e-6) and torch.allclose(out[..., 7], torch.tensor(-1.0))
    ident = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 2:5, 3:6] = True
    cut = apply_params(x, AugmentParams(ident, mask))
    assert torch.allclose(cut[0, 0][~mask[0]], x[0, 0][~mask[0]], atol=1e-6) and (cut[0, 0][mask[0]] == -1).all()


# ---------------------------------------------------------------- perceptual distance


def test_digits_feature_layers_are_the_classifiers():
    clf = load_digits_classifier()
    x = digits(4, 3)
    feats = DigitsFeatureLayers(clf)(x)
    assert [tuple(f.shape[1:]) for f in feats] == [(32, 8, 8), (32, 8, 8), (64, 4, 4), (64, 4, 4), (64, 1, 1)]
    assert torch.allclose(feats[-1].flatten(1), clf.features(x), atol=1e-6)


def test_perceptual_distance_zero_for_identical_positive_otherwise_and_gradient_reaches_only_the_student():
    dist = PerceptualDistance("digits")
    t = digits(6, 4)
    g = torch.Generator().manual_seed(0)
    ensemble = [sample_params(AugmentSpec(), 6, 8, 8, g) for _ in range(3)]
    (same,) = dist([t.clone()], t, ensemble)
    assert float(same) == 0.0
    s = (t + 0.3 * digits(6, 5)).requires_grad_(True)
    near, far = dist([s, digits(6, 6)], t, ensemble)
    assert 0 < float(near.detach()) < float(far.detach())
    near.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert all(p.grad is None for p in dist.parameters())
    assert float(layer_distance(dist.features(t), dist.features(t))[0]) == 0.0


# ---------------------------------------------------------------- adversarial losses


@pytest.mark.parametrize("kind", ["hinge", "nonsaturating"])
def test_adversarial_loss_signs(kind):
    sep, mixed = torch.tensor([3.0, 2.0]), torch.tensor([-3.0, -2.0])
    assert discriminator_loss(kind, sep, -sep) < discriminator_loss(kind, mixed, -mixed)  # separating is better
    if kind == "hinge":
        assert float(discriminator_loss(kind, sep, -sep)) == 0.0
        assert float(discriminator_loss(kind, torch.zeros(2), torch.zeros(2))) == 2.0
    else:
        assert math.isclose(
            float(discriminator_loss(kind, torch.zeros(2), torch.zeros(2))), 2 * math.log(2), rel_tol=1e-6
        )
    fake = torch.tensor([0.5, -1.0], requires_grad=True)
    generator_loss(kind, fake).backward()
    assert (fake.grad < 0).all()  # descending the generator loss raises the fakes' scores


@pytest.mark.parametrize("kind", ["hinge", "nonsaturating"])
def test_discriminator_learns_to_separate_and_the_generator_gradient_moves_fakes_up(kind):
    """Toy problem: real digits are bright on the left, fakes bright on the right."""
    torch.manual_seed(0)
    real, fake = -torch.ones(16, 1, 8, 8), -torch.ones(16, 1, 8, 8)
    real[..., :4], fake[..., 4:] = 1.0, 1.0
    real, fake = real + 0.1 * digits(16, 1), fake + 0.1 * digits(16, 2)
    d = Discriminator(1, 8, width=4)
    opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.0, 0.99))
    losses = []
    for _ in range(30):
        loss = discriminator_loss(kind, d(real), d(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    d.eval()
    assert d(real).mean() > d(fake).mean()
    x = fake.clone().requires_grad_(True)
    generator_loss(kind, d(x)).backward()
    moved = (x - 0.5 * x.grad / x.grad.abs().max()).detach()
    assert d(moved).mean() > d(fake).mean()


def test_objective_trains_the_discriminator_only_on_its_own_loss():
    c = config(".", ".", **ADV)
    obj = Objective(c, image_shape=(1, 8, 8), num_classes=10)
    student = digits(4, 8).requires_grad_(True)
    teacher, noise, labels = digits(4, 9), torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    loss = obj.loss([student * 0.5, student], teacher, noise, labels, step=0)
    d_grads = [p.grad.clone() for p in obj.adversarial.disc.parameters()]
    loss.backward()  # the student's loss leaves the discriminator's gradients as they were
    assert all(torch.equal(p.grad, g) for p, g in zip(obj.adversarial.disc.parameters(), d_grads))
    assert student.grad.abs().sum() > 0
    before = [p.detach().clone() for p in obj.adversarial.disc.parameters()]
    obj.step()
    assert any(not torch.equal(p, b) for p, b in zip(obj.adversarial.disc.parameters(), before))
    assert all(p.grad is None for p in obj.adversarial.disc.parameters())
    assert set(obj.stats()) == {"d_loss", "d_real", "d_fake"}


# ---------------------------------------------------------------- in the Trainer


def test_resume_with_discriminator_and_perceptual_loss_equals_the_uninterrupted_run(pairs, tmp_path):
    opts = dict(ADV, loss="perceptual")
    Trainer(config(pairs, tmp_path / "resumed", max_steps=3, **opts)).fit()  # checkpoint at step 3
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert state["objective"]["adversarial"]["optimizer"]["state"]  # Adam moments are saved
    resumed = Trainer(config(pairs, tmp_path / "resumed", **opts))
    rest = resumed.fit()
    straight = Trainer(config(pairs, tmp_path / "straight", **opts))
    full = straight.fit()
    assert [r["step"] for r in rest] == [4, 5, 6]
    assert [(r["loss"], r["d_loss"]) for r in rest] == [(r["loss"], r["d_loss"]) for r in full[3:]]  # bitwise
    for (k, a), b in zip(
        resumed.objective.adversarial.disc.state_dict().items(),
        straight.objective.adversarial.disc.state_dict().values(),
    ):
        assert torch.equal(a, b), k
    with pytest.raises(CheckpointError, match="adversarial_weight"):
        Trainer(config(pairs, tmp_path / "straight", max_steps=7, **{**opts, "adversarial_weight": 0.2})).fit()
    with pytest.raises(CheckpointError, match="loss"):
        Trainer(config(pairs, tmp_path / "straight", max_steps=7, **{**opts, "loss": "l1"})).fit()


def test_grad_accumulation_with_objectives_matches_one_big_batch(pairs, tmp_path):
    opts = dict(ADV, loss="perceptual", max_steps=2)
    a = Trainer(config(pairs, tmp_path / "a", **opts))
    b = Trainer(config(pairs, tmp_path / "b", grad_accum=2, **opts))
    assert [r["loss"] for r in a.fit()] == pytest.approx([r["loss"] for r in b.fit()], rel=1e-5)
    for p, q in zip(a.objective.adversarial.disc.parameters(), b.objective.adversarial.disc.parameters()):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-6)


def test_vit_baseline_trains_adversarially_with_frozen_embedding(pairs, tmp_path):
    tr = Trainer(
        config(
            pairs,
            tmp_path,
            model=dict(VIT),
            max_steps=2,
            regression_weight=0.0,
            adversarial_weight=1.0,
            disc_input="image",
            disc_loss="nonsaturating",
            disc_width=4,
            freeze=["x_embedder", "blocks.0"],
        )
    )
    tr.model.final_layer.linear.weight.data.normal_(std=0.1)  # a zero decoder would hide the blocks' gradients
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    recs = tr.fit()
    assert type(tr.model).__name__ == "ViT" and all(math.isfinite(r["loss"]) for r in recs)
    changed = {n for n, p in tr.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and not any(n.startswith(("x_embedder", "blocks.0.")) for n in changed)
    assert any(n.startswith("blocks.1.") for n in changed)
    from getkern.distill import load_ema_model

    assert type(load_ema_model(tmp_path / "checkpoint.pt")).__name__ == "ViT"


def test_cli_fine_tunes_from_a_checkpoint_with_the_injection_frozen(pairs, tmp_path):
    """Zheng & Yang's setting: a trained student, injection frozen, adversarial loss alone."""
    import json

    from getkern.cli import main as cli

    base = Trainer(config(pairs, tmp_path / "base", max_steps=2))
    base.fit()
    injection = ["x_embedder", "y_embedder", "blocks", "qkv_inj"]
    assert (
        cli(
            [
                "train",
                "--pairs",
                str(pairs),
                "--out",
                str(tmp_path / "ft"),
                "--model",
                "",
                "--model-args",
                json.dumps(MODEL),
                "--batch-size",
                "8",
                "--iters",
                "2",
                "--max-steps",
                "2",
                "--sample-every",
                "0",
                "--no-progress",
                "--init",
                str(tmp_path / "base" / "checkpoint.pt"),
                "--freeze",
                *injection,
                "--regression-weight",
                "0",
                "--adversarial-weight",
                "1",
                "--disc-width",
                "4",
            ]
        )
        == 0
    )
    ft = torch.load(tmp_path / "ft" / "checkpoint.pt", weights_only=True)
    assert json.loads(ft["config"])["freeze"] == injection and ft["objective"]["adversarial"]["discriminator"]
    init = base.ema.state_dict()
    for k, v in ft["model"].items():
        if k.startswith(tuple(injection)):
            assert torch.equal(v, init[k]), k  # frozen at the initial weights
    assert any(not torch.equal(v, init[k]) for k, v in ft["model"].items() if not k.startswith(tuple(injection)))
    with pytest.raises(CheckpointError, match="init: .*does not fit GET"):
        Trainer(
            config(
                pairs,
                tmp_path / "bad",
                model={**MODEL, "hidden_size": 8},
                init=str(tmp_path / "base" / "checkpoint.pt"),
            )
        )


# ---------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(loss="lpips2"), "loss must be one of"),
        (dict(adversarial_weight=-0.1), "adversarial_weight"),
        (dict(regression_weight=float("nan")), "regression_weight"),
        (dict(regression_weight=0.0), "nothing to train"),
        (dict(adversarial_weight=1.0, disc_input="noise"), "disc_input"),
        (dict(adversarial_weight=1.0, disc_loss="wgan"), "disc_loss"),
        (dict(disc_lr=0.0), "disc_lr"),
        (dict(perceptual_net="vgg"), "perceptual_net"),
        (dict(loss="perceptual", perceptual_ensemble=0), "perceptual_ensemble"),
        (dict(freeze="blocks"), "freeze"),
    ],
)
def test_bad_objective_options_name_the_option(kw, match):
    with pytest.raises(ValueError, match=match):
        Objective(config(".", ".", **kw), image_shape=(1, 8, 8), num_classes=10)


def test_class_projection_needs_labels():
    with pytest.raises(ValueError, match="disc_classes=True .* unconditional"):
        Objective(config(".", ".", **ADV), image_shape=(1, 8, 8), num_classes=0)


def test_unknown_freeze_prefix_and_freezing_everything(pairs, tmp_path):
    with pytest.raises(ValueError, match="freeze: 'encoder' names no parameter"):
        Trainer(config(pairs, tmp_path, freeze=["encoder"]))
    with pytest.raises(ValueError, match="freezes every trainable parameter"):
        freeze_parameters(torch.nn.Linear(2, 2), ["weight", "bias"])


def test_lpips_without_the_package_is_a_clear_error():
    try:  # lpips is optional: only its absence is tested here
        import lpips  # noqa: F401

        pytest.skip("lpips is installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="perceptual_net='lpips' needs the optional `lpips` package"):
        Objective(config(".", ".", loss="perceptual", perceptual_net="lpips"), image_shape=(1, 8, 8), num_classes=10)
