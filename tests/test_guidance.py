"""Guidance distillation: the guided teacher D_w, the null-class digits teacher, guided pairs (w from the
seed), the w conditioning of GET and ViT, the trainer's and the sample command's guidance handling."""

import copy

import pytest
import torch
from helpers import randomise_outputs

import getkern.teacher.digits as digits_mod
from getkern.assets.make_digits_teacher_guided import with_null_class
from getkern.checkpoint import CheckpointError
from getkern.cli import main as cli
from getkern.commands.sample import check_guidance_args
from getkern.data import PairDataset, PairFileError, read_manifest, seed_inputs, write_pairs
from getkern.data.pairs import seed_guidance
from getkern.distill import TrainConfig, Trainer
from getkern.errors import UsageError
from getkern.loading import load
from getkern.models import GET, ViT
from getkern.sampling import sample_get
from getkern.teacher import EDMPrecond, Teacher, guided_denoiser, heun_sample, load_teacher
from getkern.teacher.digits import DigitsMLP, train_digits_teacher

SMALL = dict(input_size=8, in_channels=1, hidden_size=16, num_heads=2, mlp_ratio=2, backend="torch")
GET_SMALL = dict(SMALL, depth=1, deq_depth=2, deq_mlp_ratio=2, solver_backend="torch")
MODEL = dict(
    hidden_size=16, depth=1, num_heads=2, deq_mlp_ratio=2, mlp_ratio=2, backend="torch", solver_backend="torch"
)


def tiny_guided_teacher():
    torch.manual_seed(0)
    net = DigitsMLP(hidden=16, layers=1, emb_dim=8, null_class=True)
    torch.nn.init.normal_(net.out.weight, std=0.3)
    torch.nn.init.normal_(net.class_emb.weight, std=1.0)
    return Teacher(EDMPrecond(net).eval(), (1, 8, 8), 10, {"kind": "test"}, null_label=10)


def randomise(model):
    """Fresh models decode to 0 and ignore w (zero-initialised output layers): make both matter."""
    torch.manual_seed(1)
    return randomise_outputs(model, std=0.5)


# ---------------------------------------------------------------- the guided teacher


def test_guided_denoiser_is_the_formula():
    a, b = torch.randn(11, dtype=torch.float64), torch.randn(11, dtype=torch.float64)
    calls = []

    def D(x, sigma, labels):  # a label-dependent affine denoiser; label 10 is "none"
        calls.append(labels.clone())
        return a[labels].view(-1, 1, 1, 1) * x / (1 + sigma.view(-1, 1, 1, 1)) + b[labels].view(-1, 1, 1, 1)

    x = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    sigma, y, w = (
        torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64),
        torch.tensor([0, 4, 9]),
        torch.tensor([0.0, 1.5, 4.0]),
    )
    got = guided_denoiser(D, w, null_label=10)(x, sigma, y)
    s = sigma.view(-1, 1, 1, 1)
    for i in range(3):  # by hand, one sample at a time
        cond = a[y[i]] * x[i] / (1 + s[i]) + b[y[i]]
        none = a[10] * x[i] / (1 + s[i]) + b[10]
        assert torch.allclose(got[i], (1 + w[i]) * cond - w[i] * none, rtol=1e-14, atol=1e-14)
    assert len(calls) == 1 and calls[0].tolist() == [0, 4, 9, 10, 10, 10]  # one doubled call
    assert torch.equal(guided_denoiser(D, 0.0, 10)(x, sigma, y), D(x, sigma, y))  # w = 0: the conditional one
    with pytest.raises(ValueError, match="guidance must be"):
        guided_denoiser(D, torch.zeros(2), 10)(x, sigma, y)


def test_teacher_sample_with_guidance_is_heun_on_the_guided_denoiser():
    t = tiny_guided_teacher()
    z, y, w = torch.randn(4, 1, 8, 8), torch.tensor([1, 2, 3, 4]), torch.tensor([0.0, 1.0, 2.0, 3.0])
    expect = heun_sample(guided_denoiser(t.denoiser, w, 10), z, y, num_steps=3)
    assert torch.equal(t.sample(z, y, num_steps=3, guidance=w), expect)
    assert not torch.allclose(expect[1:], t.sample(z, y, num_steps=3)[1:])
    # D(x, sigma, None) is the null row
    x, s = torch.randn(2, 1, 8, 8), torch.tensor([1.0, 3.0])
    assert torch.equal(t.denoiser(x, s, None), t.denoiser(x, s, torch.tensor([10, 10])))


def test_guidance_needs_a_null_class():
    plain = Teacher(EDMPrecond(DigitsMLP(hidden=16, layers=1, emb_dim=8)).eval(), (1, 8, 8), 10, {})
    with pytest.raises(ValueError, match="no null class"):
        plain.sample(torch.randn(1, 1, 8, 8), torch.tensor([0]), num_steps=2, guidance=1.0)
    unc = Teacher(EDMPrecond(DigitsMLP(hidden=16, layers=1, emb_dim=8, num_classes=0)).eval(), (1, 8, 8), 0, {})
    with pytest.raises(ValueError, match="unconditional"):
        unc.guided(1.0)
    with pytest.raises(ValueError, match="null_class"):
        DigitsMLP(num_classes=0, null_class=True)
    with pytest.raises(ValueError, match="null class"):
        train_digits_teacher(steps=1, hidden=16, layers=1, label_dropout=0.1, init=plain.denoiser, progress=False)


def test_shipped_guided_teacher_and_its_init(monkeypatch):
    t = load_teacher("digits-guided")
    assert t.num_classes == 10 and t.null_label == 10 and t.meta["config"]["null_class"] is True
    assert t.meta["training"]["label_dropout"] > 0
    assert load_teacher("digits").null_label is None
    # the fine-tune's starting point: the base teacher plus a null row, same outputs for real classes
    base = EDMPrecond(DigitsMLP(hidden=16, layers=1, emb_dim=8)).eval()
    torch.nn.init.normal_(base.net.out.weight)
    new = with_null_class(base).eval()
    table = new.net.class_emb.weight
    assert table.shape[0] == 11 and torch.allclose(table[10], table[:10].mean(0))
    x, s, y = torch.randn(3, 1, 8, 8), torch.tensor([0.1, 1.0, 10.0]), torch.tensor([0, 5, 9])
    assert torch.equal(new(x, s, y), base(x, s, y))
    # label dropout: about half the labels the network sees are the null class (tiny stand-in data)
    monkeypatch.setattr(
        digits_mod, "load_digits_images", lambda split: (torch.randn(32, 1, 8, 8), torch.randint(10, (32,)))
    )
    seen = []
    new.net.class_emb.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    _, info = train_digits_teacher(steps=4, batch_size=16, label_dropout=0.5, init=new, progress=False)
    labels = torch.cat(seen)
    assert info["label_dropout"] == 0.5 and 0.25 < (labels == 10).float().mean() < 0.75 and labels.max() == 10


# ---------------------------------------------------------------- guided pairs


def test_guided_pairs_regenerate_from_their_seed(tmp_path):
    t = tiny_guided_teacher()
    t64 = copy.deepcopy(t)
    t64.denoiser.double()
    write_pairs(
        t,
        tmp_path / "g",
        num_pairs=7,
        first_seed=50,
        shard_size=4,
        num_steps=2,
        batch_size=3,
        guidance_range=(0.5, 3.0),
        progress=False,
    )
    m = read_manifest(tmp_path / "g")
    assert m["guidance_range"] == [0.5, 3.0] and m["guidance_dtype"] == "float32"
    assert m["sampler"]["network_evaluations"] == 2 * 3 and "guidance" in m["sampler"]
    ds = PairDataset(tmp_path / "g")
    assert ds.guidance_range == (0.5, 3.0)
    ws = ds.guidance()
    assert ws.dtype == torch.float32 and ws.shape == (7,) and ws.min() >= 0.5 and ws.max() <= 3.0 and ws.std() > 0.1
    for i in (0, 4, 6):
        latent, image, label, w = ds[i]
        z, y = seed_inputs(50 + i, (1, 8, 8), 10)
        w_seed = seed_guidance(50 + i, (1, 8, 8), 10, (0.5, 3.0))
        assert torch.equal(latent, z) and int(label) == y and float(w) == pytest.approx(w_seed, rel=1e-7)
        # The stored image (batch of 3) against a float64 regeneration from the seed: batch size, thread
        # count and CPU model change the float32 summation order, so the bound is float32 rounding of the
        # magnitudes involved (images reach ~200 here; 8 network evaluations, each a few eps of |x|).
        exact = t64.sample(
            z[None].double(), torch.tensor([y]), num_steps=2, guidance=torch.tensor([w_seed], dtype=torch.float64)
        )[0]
        tol = 16 * torch.finfo(torch.float32).eps * float(exact.abs().max())
        assert float((image.double() - exact).abs().max()) <= tol
    # same seeds without guidance: same z and labels, no guidance field, 3-tuples
    write_pairs(t, tmp_path / "u", num_pairs=7, first_seed=50, shard_size=4, num_steps=2, progress=False)
    plain = PairDataset(tmp_path / "u")
    assert plain.guidance_range is None and plain.guidance() is None and len(plain[0]) == 3
    assert "guidance_range" not in read_manifest(tmp_path / "u")
    assert torch.equal(plain.tensors()[0], ds.tensors()[0]) and torch.equal(plain.tensors()[2], ds.tensors()[2])
    with pytest.raises(PairFileError, match="guidance_range"):  # another range on the same directory
        write_pairs(
            t,
            tmp_path / "g",
            num_pairs=7,
            first_seed=50,
            shard_size=4,
            num_steps=2,
            guidance_range=(0.0, 3.0),
            progress=False,
        )
    with pytest.raises(ValueError, match="wmin <= wmax"):
        write_pairs(t, tmp_path / "x", num_pairs=2, guidance_range=(3.0, 1.0), progress=False)


# ---------------------------------------------------------------- the student's w conditioning


@pytest.mark.parametrize("cls", [GET, ViT])
def test_w_conditioning(cls):
    kw = GET_SMALL if cls is GET else dict(SMALL, depth=2)
    torch.manual_seed(0)
    guided = randomise(cls(**kw, cond=True, guidance_range=(0, 4))).eval()
    plain = cls(**kw, cond=True).eval()
    extra = {k: v for k, v in guided.state_dict().items() if k.startswith("w_embedder.")}
    plain.load_state_dict({k: v for k, v in guided.state_dict().items() if k not in extra})
    assert (
        sum(p.numel() for p in guided.parameters()) - sum(p.numel() for p in plain.parameters())
        == sum(v.numel() for v in extra.values())
        > 0
    )
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([2, 5, 7])
    run = (
        (lambda m, **k: m(x, y, iters=3, z0=torch.ones(3, 16, 16), **k))
        if cls is GET
        else (lambda m, **k: m(x, y, **k))
    )
    base = run(plain)
    assert torch.equal(run(guided, guidance=0.0), base)  # w = 0: exactly the unguided conditional model
    w1, w2 = run(guided, guidance=1.0), run(guided, guidance=torch.tensor([4.0, 2.5, 0.0]))
    assert not torch.allclose(w1, base, atol=1e-3) and not torch.allclose(w2[:2], w1[:2], atol=1e-3)
    assert torch.equal(w2[2], base[2])  # per-sample w
    # a fresh guided model ignores w until trained (zero-initialised output layer)
    fresh = cls(**kw, cond=True, guidance_range=(0, 4))
    assert not fresh.w_embedder.mlp[-1].weight.any()


def test_guidance_options_and_errors(tmp_path):
    g = GET(**GET_SMALL, cond=True, guidance_range=(0, 4))
    assert g.config["guidance_range"] == [0.0, 4.0] and "guidance_range" not in GET(**GET_SMALL, cond=True).config
    g.save_pretrained(tmp_path / "m")
    again = GET.from_pretrained(tmp_path / "m")
    assert again.guidance_range == (0.0, 4.0)
    x, y = torch.randn(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="guidance weight w is required"):
        g(x, y, iters=1)
    with pytest.raises(ValueError, match=r"trained range \[0.0, 4.0\]"):
        g(x, y, iters=1, guidance=4.5)
    with pytest.raises(ValueError, match="guidance must be a number or a"):
        g(x, y, iters=1, guidance=torch.ones(3))
    with pytest.raises(ValueError, match="trained range"):
        g(x, y, iters=1, guidance=float("nan"))
    with pytest.raises(ValueError, match="built without guidance"):
        GET(**GET_SMALL, cond=True)(x, y, iters=1, guidance=1.0)
    with pytest.raises(ValueError, match="cond=True"):
        GET(**GET_SMALL, guidance_range=(0, 4))
    with pytest.raises(ValueError, match="guidance must be"):
        sample_get(g, 2, iters=1, guidance=torch.ones(3))


# ---------------------------------------------------------------- training and sampling


@pytest.fixture(scope="module")
def guided_pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpairs")
    write_pairs(
        tiny_guided_teacher(),
        root / "g",
        num_pairs=16,
        shard_size=8,
        num_steps=2,
        guidance_range=(0.0, 2.0),
        progress=False,
    )
    write_pairs(tiny_guided_teacher(), root / "u", num_pairs=16, shard_size=8, num_steps=2, progress=False)
    return root


def test_trainer_passes_w_and_checks_the_student(guided_pairs, tmp_path):
    base = dict(
        out=str(tmp_path / "run"),
        batch_size=8,
        iters=2,
        lr=1e-3,
        max_steps=2,
        checkpoint_every=2,
        sample_every=2,
        progress=False,
    )
    trainer = Trainer(TrainConfig(pairs=str(guided_pairs / "g"), model=dict(MODEL), **base))
    assert trainer.model.guidance_range == (0.0, 2.0)
    seen = []
    trainer.model.w_embedder.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    trainer.fit()
    idx = trainer.batch_indices(0)
    assert torch.equal(seen[0], trainer.guidance[idx])  # the pairs' own w, in batch order
    assert trainer.model.w_embedder.mlp[-1].weight.abs().sum() > 0  # w is trained
    model = load(tmp_path / "run" / "checkpoint.pt", backend="torch")
    assert model.guidance_range == (0.0, 2.0)
    with pytest.raises(ValueError, match="needs a guidance_range covering"):
        Trainer(TrainConfig(pairs=str(guided_pairs / "g"), model=dict(MODEL, guidance_range=None), **base))
    with pytest.raises(ValueError, match="needs a guidance_range covering"):
        Trainer(TrainConfig(pairs=str(guided_pairs / "g"), model=dict(MODEL, guidance_range=[0.5, 2.0]), **base))
    with pytest.raises(ValueError, match="carry no guidance"):
        Trainer(TrainConfig(pairs=str(guided_pairs / "u"), model=dict(MODEL, guidance_range=[0, 2]), **base))
    # resuming the guided run with unguided pairs is refused
    with pytest.raises((CheckpointError, ValueError)):
        Trainer(TrainConfig(pairs=str(guided_pairs / "u"), model=dict(MODEL), **base)).fit()


def test_sample_command_guidance(tmp_path, capsys):
    g = randomise(GET(**GET_SMALL, cond=True, guidance_range=(0, 4)))
    g.save_pretrained(tmp_path / "g")
    cli(
        [
            "sample",
            "--checkpoint",
            str(tmp_path / "g"),
            "--out",
            str(tmp_path / "s"),
            "--iters",
            "1",
            "--per-class",
            "2",
            "--guidance",
            "0",
            "3.5",
            "--backend",
            "torch",
        ]
    )
    import numpy as np

    a = np.load(tmp_path / "s" / "samples-fixed_point-iters1-w0.npz")
    b = np.load(tmp_path / "s" / "samples-fixed_point-iters1-w3.5.npz")
    assert (tmp_path / "s" / "samples-fixed_point-iters1-w3.5.png").is_file()
    assert (
        a["images"].shape == (20, 1, 8, 8)
        and (b["guidance"] == 3.5).all()
        and not np.allclose(a["images"], b["images"])
    )
    with pytest.raises(UsageError, match=r"--guidance 5 outside the model's trained range \[0, 4\]"):
        check_guidance_args(g, [1.0, 5.0])
    with pytest.raises(UsageError, match="pass --guidance"):
        check_guidance_args(g, None)
    with pytest.raises(UsageError, match="trained without guidance"):
        check_guidance_args(GET(**GET_SMALL, cond=True), [1.0])
    with pytest.raises(UsageError, match="unconditional"):
        check_guidance_args(GET(**GET_SMALL), [1.0])
    assert check_guidance_args(GET(**GET_SMALL), None) == [None]


def test_pairs_command_refuses_a_teacher_without_null_class(tmp_path, capsys):
    assert (
        cli(["pairs", "--teacher", "digits", "--guidance-range", "0", "4", "--out", str(tmp_path), "--num-pairs", "1"])
        == 2
    )
    assert "getkern pairs: error: --guidance-range cannot be used with --teacher digits" in capsys.readouterr().err
    assert (
        cli(
            [
                "pairs",
                "--teacher",
                "digits-guided",
                "--guidance-range",
                "4",
                "0",
                "--out",
                str(tmp_path),
                "--num-pairs",
                "1",
            ]
        )
        == 2
    )
    assert "getkern pairs: error: --guidance-range must be finite" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()


def test_guided_demo_toy(tmp_path, monkeypatch, guided_pairs):
    """The guidance-distillation run on the embedded default, at toy size: table rows per w, grid, cache."""
    import getkern.apps.demo as demo
    from getkern.apps.guided_demo import format_table, run_guided_demo

    real = demo.DemoConfig
    monkeypatch.setattr(
        demo,
        "DemoConfig",
        lambda progress=True: real(
            num_pairs=16,
            heun_steps=2,
            model=dict(MODEL),
            batch_size=8,
            max_steps=2,
            train_iters=2,
            get_iters=2,
            eval_samples=20,
            progress=False,
        ),
    )
    s = run_guided_demo(tmp_path, pairs=str(guided_pairs / "g"), eval_w=(0.0, 2.0), progress=False)
    assert [(r["model"], r["w"]) for r in s["rows"]] == [("teacher", 0.0), ("get", 0.0), ("teacher", 2.0), ("get", 2.0)]
    assert s["training_steps"] == 2 and not s["get_reused"] and (tmp_path / "guidance_grid.png").is_file()
    assert "| 2 |" in format_table(s) and (tmp_path / "table.md").read_text() == format_table(s)
    assert run_guided_demo(tmp_path, pairs=str(guided_pairs / "g"), eval_w=(0.0,), progress=False)["get_reused"]
    with pytest.raises(ValueError, match="guided pairs"):
        run_guided_demo(tmp_path, pairs=str(guided_pairs / "u"), progress=False)
