"""GET and ViT: parameter counts, shapes, determinism, lowest-residual selection, faithfulness to an
op-by-op float64 re-derivation of the reference forward, and input errors."""

import copy

import pytest
import torch
from helpers import tiny_get

import getkern
from getkern import GET, ViT
from getkern.models.layers import Block
from getkern.models.reference import reference_get
from getkern.nn import FusedBlock, set_backend

GET_PARAMS = {
    "GET-T/2": 8_558_092,
    "GET-M/2": 19_177_740,
    "GET-S/2": 37_173_260,
    "GET-B/2": 62_207_244,
    "GET-B+/2": 83_481_612,
}
VIT_PARAMS = {"ViT-S/2": 21_402_252, "ViT-B/2": 85_271_820, "ViT-L/2": 302_599_180, "ViT-XL/2": 446_652_300}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


SMALL = dict(in_channels=1, depth=2, deq_mlp_ratio=3)  # on top of helpers.TINY_GET


@pytest.mark.parametrize("name", list(GET_PARAMS))
def test_get_parameter_counts_match_published(name):
    with torch.device("meta"):
        assert n_params(GET.from_config(name)) == GET_PARAMS[name]


def test_get_conditional_counts_and_b_plus_spelling():
    with torch.device("meta"):
        assert n_params(GET.from_config("GET-T/2", cond=True)) == 8_565_772
        assert n_params(GET.from_config("GET-B/2", cond=True)) == 62_230_284
        assert n_params(GET.from_config("GET-B/2+")) == GET_PARAMS["GET-B+/2"]


@pytest.mark.parametrize("name", list(VIT_PARAMS))
def test_vit_parameter_counts_match_published(name):
    with torch.device("meta"):
        assert n_params(ViT.from_config(name)) == VIT_PARAMS[name]


def test_unknown_names_are_rejected_with_the_valid_list():
    with pytest.raises(ValueError, match="GET-T/2"):
        GET.from_config("GET-X/2")
    with pytest.raises(ValueError, match="unknown"):
        GET.from_config("GET-T/3")
    with pytest.raises(ValueError, match="ViT-L/2"):
        ViT.from_config("ViT-H/2")


@pytest.mark.parametrize(
    "name", [f"{f}/2" for f in ("GET-T", "GET-M", "GET-S", "GET-B", "GET-B+")] + ["GET-T/4", "GET-T/8"]
)
@pytest.mark.parametrize("cond", [False, True])
def test_get_output_shapes_for_every_config(name, cond):
    torch.manual_seed(0)
    model = GET.from_config(name, input_size=16, in_channels=3, cond=cond, backend="torch").eval()
    noise = torch.randn(2, 3, 16, 16)
    y = torch.tensor([3, 7]) if cond else None
    with torch.no_grad():
        out, info = model(noise, y, iters=2, return_info=True)
    assert out.shape == (2, 3, 16, 16)
    assert info["abs_trace"].shape[-1] == 2


@pytest.mark.parametrize("name", ["ViT-S/2", "ViT-S/4", "ViT-S/8"])
def test_vit_conditional_forward_works_and_uses_labels(name):
    torch.manual_seed(0)
    model = ViT.from_config(name, input_size=16, in_channels=3, cond=True, depth=2, backend="torch").eval()
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.2)
    noise = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        a = model(noise, torch.tensor([1, 2]))
        b = model(noise, torch.tensor([5, 9]))
    assert a.shape == (2, 3, 16, 16)
    assert not torch.allclose(a, b)


def test_same_noise_and_z0_give_identical_output_and_z0_matters():
    model = tiny_get(**SMALL).eval()
    noise = torch.randn(3, 1, 8, 8)
    z0 = torch.randn(3, 16, 32)
    with torch.no_grad():
        a = model(noise, z0=z0)
        b = model(noise, z0=z0.clone())
        c = model(noise, z0=torch.randn(3, 16, 32))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_generator_makes_sampling_deterministic():
    model = tiny_get(**SMALL).eval()
    noise = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        a = model(noise, generator=torch.Generator().manual_seed(5))
        b = model(noise, generator=torch.Generator().manual_seed(5))
        c = model(noise, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_answer_is_the_per_sample_lowest_residual_f_value():
    # Large random weights make the map non-contractive, so the lowest residual is not the last one.
    model = tiny_get(3, **SMALL).eval()
    with torch.no_grad():
        for p in model.deq_blocks.parameters():
            p.mul_(4.0)
    noise, z0 = torch.randn(4, 1, 8, 8), torch.randn(4, 16, 32)
    with torch.no_grad():
        out, info = model(noise, z0=z0, iters=7, return_info=True)
        c, u = model.inject(noise)
        f = model.equilibrium_fn(c, u)
        x, values, residuals = z0, [], []
        for _ in range(7):
            fx = f(x)
            values.append(fx)
            residuals.append((fx - x).flatten(1).norm(dim=1))
            x = fx
    residuals = torch.stack(residuals)  # (iters, B)
    best = residuals.argmin(dim=0)
    assert (best != 6).any(), "test needs a sample whose best iterate is not the last one"
    expected = model.decode(torch.stack([values[k][b] for b, k in enumerate(best.tolist())]))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(info["abs_trace"], residuals, rtol=1e-6, atol=1e-5)


def test_return_iterates_gives_every_decoded_iterate_with_gradients():
    model = tiny_get(**SMALL)
    noise = torch.randn(2, 1, 8, 8)
    outs = model(noise, iters=4, return_iterates=True)
    assert len(outs) == 4 and all(o.shape == (2, 1, 8, 8) for o in outs)
    loss = sum(0.8 ** (3 - k) * o.abs().mean() for k, o in enumerate(outs))
    loss.backward()
    assert model.deq_blocks[0].attn.qkv.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- faithfulness to the reference


@pytest.mark.parametrize("cond", [False, True])
def test_get_matches_an_op_by_op_float64_reference(cond):
    model = tiny_get(dtype=torch.float64, **dict(SMALL, in_channels=3, input_size=12, cond=cond)).eval()
    sd = model.state_dict()
    noise = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    z0 = torch.randn(3, 36, 32, dtype=torch.float64)
    y = torch.tensor([0, 4, 9]) if cond else None
    with torch.no_grad():
        ours = model(noise, y, z0=z0, iters=5)
        ref = reference_get(sd, noise, y, z0, heads=2, depth=2, deq_depth=3, patch=2, iters=5)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_positional_embedding_is_the_mae_sincos_layout():
    model = tiny_get(**SMALL).eval()
    pos = model.pos_embed[0]  # (16, 32): grid 4x4, token t = row * 4 + col
    D, grid = 32, 4
    omega = 1.0 / 10000 ** (torch.arange(D // 4, dtype=torch.float64) / (D / 4))
    for t in (0, 5, 14):
        row, col = divmod(t, grid)
        expected = torch.cat(
            [torch.sin(col * omega), torch.cos(col * omega), torch.sin(row * omega), torch.cos(row * omega)]
        ).float()
        torch.testing.assert_close(pos[t], expected)
    assert not model.pos_embed.requires_grad


# ---------------------------------------------------------------- input errors


@pytest.mark.parametrize(
    "noise, match",
    [
        (torch.randn(2, 1, 9, 8), r"shape \(B, 1, 8, 8\)"),
        (torch.randn(2, 3, 8, 8), r"shape \(B, 1, 8, 8\)"),
        (torch.randn(1, 8, 8), r"shape"),
        (torch.randn(2, 1, 8, 8, dtype=torch.float64), "dtype"),
        (torch.full((2, 1, 8, 8), float("nan")), "NaN"),
        (torch.empty(2, 1, 8, 8, device="meta"), "meta"),
    ],
)
def test_bad_noise_is_rejected_naming_the_problem(noise, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tiny_get(**SMALL).eval()(noise)


def test_label_errors():
    noise = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="unconditional"):
        tiny_get(**SMALL).eval()(noise, torch.tensor([1, 2]))
    cond = tiny_get(**SMALL, cond=True).eval()
    with pytest.raises(ValueError, match="labels y are required"):
        cond(noise)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        cond(noise, torch.tensor([1, 10]))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        cond(noise, torch.tensor([-1, 3]))
    with pytest.raises(ValueError, match="integer labels"):
        cond(noise, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="integer labels"):
        cond(noise, torch.tensor([1, 2, 3]))


def test_iters_and_z0_errors():
    model, noise = tiny_get(**SMALL).eval(), torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="iters"):
        model(noise, iters=0)
    with pytest.raises(ValueError, match="z0 must have shape"):
        model(noise, z0=torch.randn(2, 15, 32))


def test_set_backend_reaches_every_block_and_rejects_unknown_names():
    model = tiny_get(**SMALL).eval()
    model.set_backend("auto")
    assert {m.backend for m in model.modules() if hasattr(m, "backend")} == {"auto"}
    with pytest.raises(ValueError, match="backend"):
        model.set_backend("cuda")
    assert getkern.__version__


def _blocks(model):
    return [*model.blocks, *getattr(model, "deq_blocks", [])]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grad", [True, False])
def test_plain_block_is_bitwise_the_fused_block_on_the_torch_backend(dtype, grad):
    """Block.forward, the paper's x + attn(LN1(x)) then x + mlp(LN2(x)), is bit for bit what the fused
    block's per-module path (x + a fused with LN2, x added in fc2's epilogue) computes on the torch
    backend: the output and every gradient (inputs, injection, parameters)."""
    torch.manual_seed(0)
    plain = Block(32, 2, 3.0, backend="torch").to(dtype)
    with torch.no_grad():
        for p in plain.parameters():  # LN affine away from (1, 0), biases away from 0
            p.add_(0.1 * torch.randn_like(p))
    fused = FusedBlock(copy.deepcopy(plain))
    results = []
    for block in (plain, fused):
        g = torch.Generator().manual_seed(1)
        x, c, u = (
            torch.randn(shape, generator=g, dtype=dtype, requires_grad=grad)
            for shape in ((2, 5, 32), (2, 1, 96), (2, 5, 96))
        )
        with torch.set_grad_enabled(grad):
            out = block(x, c, u)
        if not grad:
            results.append([out])
            continue
        out.square().sum().backward()
        results.append([out, x.grad, c.grad, u.grad, *(p.grad for p in block.parameters())])
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_set_backend_swaps_fused_blocks_around_the_same_parameters():
    model = tiny_get(**SMALL).eval()  # backend="torch": the plain blocks
    assert all(type(b) is Block for b in _blocks(model))
    params, keys, text = list(model.parameters()), list(model.state_dict()), str(model)
    for backend, kind in (("auto", FusedBlock), ("triton", FusedBlock), ("torch", Block), ("auto", FusedBlock)):
        assert model.set_backend(backend) is model
        assert all(type(b) is kind and not b.training for b in _blocks(model))
        now = list(model.parameters())
        assert len(now) == len(params) and all(p is q for p, q in zip(now, params))  # nothing copied
        assert list(model.state_dict()) == keys
        assert str(model) == (text if kind is Block else text.replace("Block(", "FusedBlock("))
    assert type(set_backend(FusedBlock(Block(32, 2, 2.0)), "torch")) is Block  # a block alone: returned swapped
    assert type(set_backend(Block(32, 2, 2.0, backend="torch"), "auto")) is FusedBlock


def test_models_built_on_auto_run_the_fused_blocks():
    """The default backend ("auto") builds the fused blocks, so the default speed is the fused path's."""
    for model in (
        GET(input_size=8, hidden_size=32, depth=1, deq_depth=1, num_heads=2),
        ViT(input_size=8, hidden_size=32, depth=1, num_heads=2),
    ):
        assert all(type(b) is FusedBlock for b in _blocks(model))
    model = GET(input_size=8, hidden_size=32, depth=1, deq_depth=1, num_heads=2, backend="torch")
    assert all(type(b) is Block for b in _blocks(model))
