"""TF1-style bilinear resize against hand-computed examples and an independent grid_sample oracle;
uint8 quantisation and the Inception input scaling (each protocol's against its package:
test_metrics_protocols.py)."""

import torch
import torch.nn.functional as F

from getkern.metrics.preprocess import inception_input, quantize_to_uint8
from getkern.metrics.resize import tf_bilinear_resize


def test_upsample_hand_example():
    # TF1 (align_corners=False, no half-pixel): output i samples source i * 2/4 = 0, 0.5, 1, 1.5 (-> clamped)
    x = torch.tensor([[0.0, 4.0], [8.0, 12.0]]).view(1, 1, 2, 2)
    row = lambda a, b: [a, (a + b) / 2, b, b]  # noqa: E731
    top, bottom = row(0.0, 4.0), row(8.0, 12.0)
    mid = [(t + b) / 2 for t, b in zip(top, bottom)]
    expected = torch.tensor([top, mid, bottom, bottom]).view(1, 1, 4, 4)
    torch.testing.assert_close(tf_bilinear_resize(x, 4), expected, rtol=0, atol=0)


def test_downsample_hand_example():
    # 4 -> 3: sources 0, 4/3, 8/3  ->  v0, v1 + (v2 - v1)/3, v2 + 2(v3 - v2)/3
    v = torch.tensor([1.0, 4.0, 10.0, 22.0], dtype=torch.float64)
    out = tf_bilinear_resize(v.view(1, 1, 1, 4), (1, 3))
    torch.testing.assert_close(out.view(3), torch.tensor([1.0, 6.0, 18.0], dtype=torch.float64))


def _grid_sample_tf1(x, out_h, out_w):
    # fid-helper-pytorch's / StyleGAN's formulation: affine_grid shifted by 1/in - 1/out, border padding
    n, c, h, w = x.shape
    theta = torch.tensor([[1.0, 0, 1 / w - 1 / out_w], [0, 1.0, 1 / h - 1 / out_h]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, out_h, out_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def test_matches_grid_sample_oracle_and_half_pixel_option():
    g = torch.Generator().manual_seed(0)
    for (h, w), (oh, ow) in [((7, 5), (31, 12)), ((13, 17), (5, 9)), ((8, 8), (299, 299))]:
        x = torch.rand(2, 3, h, w, generator=g, dtype=torch.float64) * 255
        torch.testing.assert_close(tf_bilinear_resize(x, (oh, ow)), _grid_sample_tf1(x, oh, ow))
        torch.testing.assert_close(
            tf_bilinear_resize(x, (oh, ow), half_pixel_centers=True),
            F.interpolate(x, (oh, ow), mode="bilinear", align_corners=False),
        )


def test_quantize_and_inception_input():
    s = torch.tensor([-1.0, -0.999, 0.0, 0.5, 0.99, 1.0, 3.0, -5.0]).view(1, 1, 2, 4)
    q = quantize_to_uint8(s).view(-1).tolist()
    assert q == [0, 0, 128, 191, 254, 255, 255, 0]  # (x*127.5+128) truncated, clipped
    image = torch.tensor([[[[0, 255], [128, 64]]]], dtype=torch.uint8)
    x = inception_input(image, size=3, protocol="fidelity")  # TF1 resize, (x - 128) / 128
    assert x.shape == (1, 3, 3, 3) and x.dtype == torch.float32
    assert x[0, 0, 0, 0] == -1.0 and x[0, 0, 0, 2] == 127 / 128 and torch.equal(x[:, 0], x[:, 2])
    x = inception_input(image, size=3)  # the default, gan-metrics: F.interpolate of x / 255, then 2x - 1
    assert x[0, 0, 0, 0] == -1.0 and x[0, 0, 0, 2] == 1.0
    expected = (
        F.interpolate(image.float().div(255).expand(-1, 3, -1, -1), (3, 3), mode="bilinear", align_corners=False) * 2
        - 1
    )
    assert torch.equal(x, expected)


def test_float32_coordinates():
    # torch-fidelity's arithmetic: float32 source coordinates; agrees with the float64 ones to rounding
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 2, 331, 300, generator=g) * 255
    exact = tf_bilinear_resize(x.double(), 299).float()
    f32 = tf_bilinear_resize(x, 299, float32_coordinates=True)
    assert 0 < (f32 - exact).abs().max() < 0.05 and f32.dtype == torch.float32
