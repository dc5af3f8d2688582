"""``getkern fid-stats``: Inception reference statistics (.npz with mu, sigma) of a folder of images or
an array file, in the format published FID statistics use, recording the FID protocol that made them.

    getkern fid-stats path/to/images/ --out ref.npz                  # the GET paper's protocol (gan-metrics)
    getkern fid-stats images.npy --out ref.npz --with-features      # also enables KID
    getkern fid-stats images.npy --out ref.npz --fid-protocol clean --inception-weights inception-2015-12-05.pt
"""

from __future__ import annotations

from pathlib import Path

from getkern.commands._common import (
    add_device,
    add_out,
    add_progress,
    check_out_file,
    command_parser,
    nonempty_path,
    positive_int,
    resolve_device,
)
from getkern.errors import UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# getkern.metrics.protocols.PROTOCOLS, repeated here so that building the parser imports no torch.
FID_PROTOCOLS = ("gan-metrics", "clean", "fidelity")


def add_fid_options(p) -> None:
    """--fid-protocol and --inception-weights, shared with `getkern profile`."""
    p.add_argument(
        "--fid-protocol",
        choices=FID_PROTOCOLS,
        default=FID_PROTOCOLS[0],
        help="how images are resized and scaled for Inception (FIDs of different protocols are not "
        "comparable): gan-metrics = the GET paper's (pytorch-gan-metrics: bilinear "
        "F.interpolate, 2x-1), clean = clean-fid's (PIL bicubic), fidelity = torch-fidelity's "
        "(TF1 bilinear)",
    )
    p.add_argument(
        "--inception-weights",
        type=Path,
        metavar="FILE",
        help="Inception weights: pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or a TorchScript "
        "Inception (default: the protocol's file in torch.hub's checkpoints folder, see "
        "docs/metrics.md; nothing is downloaded)",
    )


def add_parser(sub) -> None:
    p = command_parser(
        sub, "fid-stats", __doc__, help="Inception statistics (.npz mu/sigma) of a folder or array of images"
    )
    p.add_argument(
        "input",
        type=nonempty_path,
        help="a folder of images, or .npy/.npz holding uint8 (N, H, W, C) or "
        "(N, C, H, W) images, or floats in [-1, 1] (quantised like samples)",
    )
    add_out(p, "the .npz to write")
    add_fid_options(p)
    p.add_argument("--with-features", action="store_true", help="also store the features (enables KID)")
    p.add_argument("--batch-size", type=positive_int, default=50, help="images per Inception batch")
    add_device(p)
    add_progress(p)
    p.set_defaults(func=run)


def _read_image(path: Path):
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for a damaged or foreign file
        raise UsageError(f"{path} is not a readable image: {e}") from None


def _read_array(path: Path):
    """The array a .npy/.npz holds (never unpickled); any failure to parse it is a UsageError naming it."""
    import numpy as np

    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                key = "images" if "images" in data.files else (data.files[0] if len(data.files) == 1 else None)
                if key is None:
                    raise UsageError(f"{path}: .npz must hold one array or an 'images' array, found {data.files}")
                data = data[key]
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated, garbage, object arrays, zip errors: one message
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(
            f"{path} is not a readable .npy/.npz image array (corrupt, truncated, or holding "
            f"objects, which are never unpickled): {first}"
        ) from None
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "uif":
        raise UsageError(
            f"{path}: images must be uint8 or floats in [-1, 1], got {getattr(data, 'dtype', type(data).__name__)}"
        )
    return data


def load_images(path: Path):
    """uint8 (N, C, H, W) torch tensor with C = 1 or 3 from a folder or an array file."""
    import numpy as np
    import torch

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UsageError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        arrays = [_read_image(p) for p in files]
        if len({a.shape for a in arrays}) != 1:
            raise UsageError(f"images in {path} differ in size: {sorted({a.shape for a in arrays})[:4]}")
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    if not path.is_file():
        raise UsageError(f"{path} does not exist")
    if path.suffix not in (".npy", ".npz"):
        raise UsageError(f"{path}: expected a folder of images or a .npy/.npz array file")
    data = _read_array(path)
    if data.dtype.kind == "u" and data.dtype != np.uint8:
        raise UsageError(f"{path}: images must be uint8 or floats in [-1, 1], got {data.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(data))
    if x.dim() != 4:
        raise UsageError(f"{path}: expected (N, H, W, C) or (N, C, H, W) images, got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.permute(0, 3, 1, 2).contiguous()
    if x.shape[1] not in (1, 3):
        raise UsageError(
            f"{path}: images must have 1 or 3 channels, got shape {tuple(data.shape)} ((N, H, W, C) or (N, C, H, W))"
        )
    if x.is_floating_point():
        if not bool(torch.isfinite(x).all()):
            raise UsageError(f"{path}: the float images contain NaN or Inf")
        from getkern.metrics.preprocess import quantize_to_uint8

        return quantize_to_uint8(x)
    if x.dtype != torch.uint8:
        raise UsageError(f"{path}: images must be uint8 or floats in [-1, 1], got {x.dtype}")
    return x


def run(args) -> int:
    # torch (and numpy, PIL in the readers above) only when the command runs, never for --help
    from getkern.metrics.frechet import feature_statistics
    from getkern.metrics.inception import InceptionFeatures
    from getkern.metrics.stats_file import save_stats

    check_out_file(args.out, inputs=(args.input,) + ((args.inception_weights,) if args.inception_weights else ()))
    device = resolve_device(args.device)
    images = load_images(args.input)
    if images.shape[0] < 2:
        raise UsageError(f"{args.input}: need at least 2 images, got {images.shape[0]}")
    extractor = InceptionFeatures(
        args.inception_weights, protocol=args.fid_protocol, device=device, batch_size=args.batch_size
    )
    features, _ = extractor.from_uint8(images, progress=not args.no_progress)
    mu, sigma = feature_statistics(features)
    save_stats(
        args.out,
        mu,
        sigma,
        features if args.with_features else None,
        protocol=extractor.protocol.name,
        weights=extractor.weights,
    )
    print(
        f"{images.shape[0]} images -> {extractor.dim}-d statistics in {args.out} ({extractor.protocol.name} "
        f"protocol, weights {extractor.path})"
    )
    return 0
