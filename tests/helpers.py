"""What several test files share: the float64 accuracy check, tiny models and teachers, and the thread pin.

Imported as ``helpers`` (tests/conftest.py puts this folder on sys.path, so it imports under any
pytest import mode and from the scripts tests start in a subprocess). Library imports sit inside the
helpers, so a test file pulls in only the parts of getkern it uses.
"""

import contextlib
import warnings

import torch


def assert_close_to_f64(name, out, ref64, same_dtype, factor, eps_dtype=None):
    """FlashAttention-style check: ``out``'s max error vs the float64 reference ``ref64`` is at most
    ``factor`` times the error of PyTorch's own same-dtype result ``same_dtype``, plus one ulp of the
    reference's magnitude. The ulp is ``out``'s dtype's unless ``eps_dtype`` names another (the
    Anderson passes accumulate in float32 whatever the state dtype). Non-finite output (an element a
    kernel never wrote, under the NaN poison) fails with its own message."""
    assert torch.isfinite(out).all(), f"{name}: non-finite elements (unwritten?)"
    err = (out.double() - ref64).abs().max().item()
    base = (same_dtype.double() - ref64).abs().max().item()
    ulp = torch.finfo(eps_dtype or out.dtype).eps * ref64.abs().max().item()
    assert err <= factor * base + ulp, f"{name}: error {err:.3g} vs torch {out.dtype} error {base:.3g}"


# GET's defaults at test size: 8x8 images in 2x2 patches (16 tokens of width 32), one block each side
# of the equilibrium, on the PyTorch path (the Triton interpreter is slow). Callers override the rest.
TINY_GET = dict(input_size=8, hidden_size=32, depth=1, num_heads=2, backend="torch")


def tiny_get(seed=0, dtype=torch.float32, std=0.2, bias_std=None, **overrides):
    """A small GET (TINY_GET updated by ``overrides``), seeded, in ``dtype``, in training mode.

    Its decoder projection is zero-initialised, so every output would be zero and every comparison
    would pass: the weight (and the bias, with ``bias_std``) is redrawn from N(0, std^2), after the
    cast so that the draw is in ``dtype``."""
    from getkern import GET

    torch.manual_seed(seed)
    model = GET(**{**TINY_GET, **overrides}).to(dtype)
    torch.nn.init.normal_(model.final_layer.linear.weight, std=std)
    if bias_std is not None:
        torch.nn.init.normal_(model.final_layer.linear.bias, std=bias_std)
    return model


def randomise_outputs(model, std):
    """Redraw the zero-initialised output layers (the decoder projection and, on a guided model, the
    guidance embedding's last layer) from N(0, std^2), weights and biases, from the global generator;
    a fresh model decodes to 0 and ignores the guidance weight."""
    layers = [model.final_layer.linear] + ([model.w_embedder.mlp[-1]] if model.w_embedder is not None else [])
    for layer in layers:
        torch.nn.init.normal_(layer.weight, std=std)
        torch.nn.init.normal_(layer.bias, std=std)
    return model


def tiny_teacher(num_classes=10, meta=None):
    """A seeded one-layer DigitsMLP teacher for 8x8 grayscale digits, its output layer randomised;
    ``meta`` adds to what the pair manifest records about it ({"kind": "test"})."""
    from getkern.teacher import EDMPrecond, Teacher
    from getkern.teacher.digits import DigitsMLP

    torch.manual_seed(0)
    net = DigitsMLP(hidden=16, layers=1, emb_dim=8, num_classes=num_classes)
    torch.nn.init.normal_(net.out.weight, std=0.3)
    return Teacher(EDMPrecond(net).eval(), (1, 8, 8), num_classes, {"kind": "test", **(meta or {})})


# A trainable GET small enough for many training runs per test file, on the PyTorch paths.
TINY_TRAIN_MODEL = dict(
    hidden_size=16, depth=1, num_heads=2, deq_mlp_ratio=2, mlp_ratio=2, backend="torch", solver_backend="torch"
)


def tiny_train_config(pairs, out, **settings):
    """A TrainConfig of TINY_TRAIN_MODEL on ``pairs`` into ``out``: batch 8, lr 1e-3, a checkpoint every
    3 steps, no samples or progress bars; ``settings`` override (iters, max_steps, objectives, ...)."""
    from getkern.distill import TrainConfig

    base = dict(
        pairs=str(pairs),
        out=str(out),
        model=dict(TINY_TRAIN_MODEL),
        batch_size=8,
        lr=1e-3,
        checkpoint_every=3,
        sample_every=0,
        progress=False,
    )
    return TrainConfig(**{**base, **settings})


def random_fid_inception(seed=0):
    """FIDInceptionV3 with random weights whose batch-norm statistics are calibrated on random images,
    so activations stay O(1) through the 94 layers (plain random statistics blow up or vanish)."""
    from getkern.metrics.inception_net import FIDInceptionV3

    torch.manual_seed(seed)
    net = FIDInceptionV3()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average: one batch sets the running statistics to its own
    with torch.no_grad():
        net.train()(torch.rand(2, 3, 299, 299) * 2 - 1)
    return net.eval()


class FakeNvidiaInception(torch.nn.Module):
    """Shaped like NVIDIA's TorchScript port (clean-fid's inception-2015-12-05.pt): forward(img in
    [0, 255], return_features) and a ``layers`` submodule that maps the scaled 299x299 input to pool3
    (here 2048 random features, from the global generator)."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 2048), torch.nn.ReLU()
        )

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return self.layers((img - 128) / 128)


def save_scripted(module, path):
    """torch.jit.script(module).save(path), without torch.jit.script's deprecation notice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(module).save(str(path))


class ZeroFills(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the ATen calls that write zeros (zeros, zeros_like, fill_, zero_) while active: a custom
    op's backward that receives materialised zero gradients for outputs that have none shows here."""

    OPS = ("aten::zeros", "aten::zeros_like", "aten::new_zeros", "aten::fill_", "aten::zero_")

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func._schema.name in self.OPS
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def torch_threads(n):
    """torch's intra-op thread count set to ``n`` inside, restored after (see the policy in conftest.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
