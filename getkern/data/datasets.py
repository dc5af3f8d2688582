"""Pair datasets: getkern's sharded format and the reference implementation's ``latent/``+``image/`` files.

Both yield ``(latent float32 (C, H, W), image float32 (C, H, W), label int64)`` with label -1 for
unconditional pairs; a guided getkern pair set (written with ``guidance_range``) yields a fourth item,
the pair's guidance weight w (float32 scalar). Both load each file on first use and keep it (the whole
set ends up in memory, as the reference's own loader does: 1M CIFAR-10 pairs are about 25 GB in float32).
Any unreadable, truncated or inconsistent file raises :class:`PairFileError` naming the file; a getkern
shard whose sha256 differs from its manifest's does too (``verify=False`` or GETKERN_VERIFY_PAIRS=0 skips
the hashing). ``identity()`` names a pair set by its content, not its path (what a resumed run compares).
"""

from __future__ import annotations

import bisect
import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file
from torch.utils.data import Dataset

from getkern.data.pairs import PairFileError, plan_fields, read_manifest, shard_keys, verify_default

Item = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class _ShardedPairs(Dataset):
    """Random access over files of known sizes; subclasses define ``_load(i) -> (latent, image, label)``."""

    def __init__(self, files: list[Path], counts: list[int]):
        self.files, self.counts = files, counts
        self.starts = [0]
        for c in counts:
            self.starts.append(self.starts[-1] + c)
        self._cache: dict[int, Item] = {}

    def __len__(self) -> int:
        return self.starts[-1]

    def _shard(self, i: int) -> Item:
        if i not in self._cache:
            self._cache[i] = self._check(i, *self._load(i))
        return self._cache[i]

    def _check(self, i: int, latent: torch.Tensor, image: torch.Tensor, label: torch.Tensor) -> Item:
        n = self.counts[i]
        if latent.shape[0] != n or image.shape[0] != n or label.shape[0] != n or latent.shape != image.shape:
            raise PairFileError(
                f"{self.files[i]}: expected {n} pairs with matching latent/image shapes, "
                f"got latent {tuple(latent.shape)}, image {tuple(image.shape)}, "
                f"labels {tuple(label.shape)}"
            )
        return latent.float(), image.float(), label.long()

    def __getitem__(self, index: int) -> Item:
        if not -len(self) <= index < len(self):
            raise IndexError(f"pair index {index} out of range for {len(self)} pairs")
        index %= len(self)
        i = bisect.bisect_right(self.starts, index) - 1
        latent, image, label = self._shard(i)
        j = index - self.starts[i]
        return latent[j], image[j], label[j]

    def tensors(self) -> Item:
        """Every pair at once: (latents (n, C, H, W), images (n, C, H, W), labels (n,))."""
        parts = [self._shard(i) for i in range(len(self.files))]
        return tuple(torch.cat([p[k] for p in parts]) for k in range(3))


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


class PairDataset(_ShardedPairs):
    """Pairs written by :func:`getkern.data.pairs.write_pairs` (reads ``manifest.json`` first).

    ``guidance_range``: (wmin, wmax) of a guided set, else None (also for sets written before guidance
    existed). Guided sets yield ``(latent, image, label, w)``; :meth:`guidance` gives every w at once.
    """

    def __init__(self, root, verify: bool | None = None):
        self.root = Path(root)
        self.verify = verify_default() if verify is None else verify
        self.manifest = read_manifest(self.root)
        if not self.manifest.get("complete"):
            raise PairFileError(
                f"{self.root / 'manifest.json'}: pair generation did not finish (complete=false); "
                "rerun `getkern pairs` with the same arguments to resume it"
            )
        self.num_classes = int(self.manifest["num_classes"])
        gr = self.manifest.get("guidance_range")
        self.guidance_range = None if gr is None else (float(gr[0]), float(gr[1]))
        shards = self.manifest["shards"]
        super().__init__([self.root / s["file"] for s in shards], [int(s["count"]) for s in shards])
        self.first_seeds = [int(s["first_seed"]) for s in shards]
        self.digests = [s.get("sha256") for s in shards]  # None in sets written before digests
        self._guidance: dict[int, torch.Tensor] = {}

    def identity(self) -> dict:
        """The set's defining fields (teacher without its folder, sampler, shapes, seeds, count) and a digest
        of its shards (names, counts, and each file's sha256, or its size for sets without digests)."""
        fields = plan_fields(self.manifest)
        files = [
            [s["file"], s["count"], d or self.files[i].stat().st_size]
            for i, (s, d) in enumerate(zip(self.manifest["shards"], self.digests))
        ]
        return {**fields, "shards": _digest(files)}

    def __getitem__(self, index: int):
        item = super().__getitem__(index)
        if self.guidance_range is None:
            return item
        index %= len(self)
        i = bisect.bisect_right(self.starts, index) - 1
        return (*item, self._guidance[i][index - self.starts[i]])

    def guidance(self) -> torch.Tensor | None:
        """Every pair's guidance weight w, float32 (n,), in dataset order; None for an unguided set."""
        if self.guidance_range is None:
            return None
        for i in range(len(self.files)):
            self._shard(i)
        return torch.cat([self._guidance[i] for i in range(len(self.files))])

    def _load(self, i: int) -> Item:
        path = self.files[i]
        if not path.is_file():
            raise PairFileError(f"{path} is listed in the manifest but does not exist")
        digest = self.digests[i] if self.verify else None
        try:
            data = path.read_bytes() if digest else None  # read whole anyway: hashing costs one more pass
        except OSError as e:
            raise PairFileError(f"{path} cannot be read: {e}") from None
        if digest and hashlib.sha256(data).hexdigest() != digest:
            raise PairFileError(
                f"{path}: its sha256 differs from the one {self.root / 'manifest.json'} recorded: "
                "the file is corrupt or was replaced; rerun `getkern pairs` with the same "
                "arguments to regenerate it"
            )
        try:
            t = load(data) if digest else load_file(path)
        except (SafetensorError, OSError, ValueError) as e:
            raise PairFileError(f"{path} is not a readable safetensors shard (corrupt or truncated): {e}") from None
        keys = shard_keys(self.guidance_range is not None)
        if set(t) != keys:
            raise PairFileError(f"{path}: expected tensors {', '.join(sorted(keys))}; found {sorted(t)}")
        expect = torch.arange(self.first_seeds[i], self.first_seeds[i] + self.counts[i])
        if not torch.equal(t["seed"], expect):
            raise PairFileError(f"{path}: seeds do not match the manifest's range starting at {self.first_seeds[i]}")
        if "guidance" in t:
            w, (wmin, wmax) = t["guidance"], self.guidance_range
            if w.shape != (self.counts[i],) or not bool(((w >= wmin) & (w <= wmax)).all()):
                raise PairFileError(
                    f"{path}: guidance must be {self.counts[i]} values in the manifest's range [{wmin}, {wmax}]"
                )
            self._guidance[i] = w.float()
        return t["latent"], t["image"], t["label"]


def _torch_load_pairs(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged file fails anywhere in the unpickler (IndexError, ...)
        first = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        raise PairFileError(
            f"{path} is not a readable torch pair file (corrupt, truncated or not weights-only): {first}"
        ) from None


class ReferencePairDataset(_ShardedPairs):
    """The reference implementation's pairs: ``<root>/latent/*.pkl`` and ``<root>/image/*.pkl``.

    Files are torch.save archives named by their last seed and ordered by that number. Unconditional
    latent files hold a float32 tensor (n, C, H, W); conditional ones hold ``[latents, one-hot labels
    (n, num_classes)]``; labels become int64 class indices. Each file is read once to learn its size.
    """

    def __init__(self, root):
        self.root = Path(root)
        latent_dir, image_dir = self.root / "latent", self.root / "image"
        for d in (latent_dir, image_dir):
            if not d.is_dir():
                raise PairFileError(f"{d} does not exist (expected the reference's latent/ and image/ folders)")
        key = lambda p: int(p.stem) if p.stem.isdigit() else -1  # noqa: E731
        latents = sorted(latent_dir.glob("*.pkl"), key=key)
        images = sorted(image_dir.glob("*.pkl"), key=key)
        for p in latents + images:
            if not p.stem.isdigit():
                raise PairFileError(f"{p}: reference pair files are named by their last seed (digits only)")
        if not latents:
            raise PairFileError(f"{latent_dir} holds no *.pkl files")
        if [p.name for p in latents] != [p.name for p in images]:
            raise PairFileError(f"{latent_dir} and {image_dir} do not hold the same file names")
        self.image_files = images
        self.num_classes = 0  # set from the one-hot width when the files are conditional
        super().__init__(latents, [0] * len(latents))
        for i in range(len(latents)):  # file sizes are only known from the files themselves
            latent, image, label = self._load(i)
            self.counts[i] = latent.shape[0]
            self.starts[i + 1] = self.starts[i] + self.counts[i]
            self._cache[i] = self._check(i, latent, image, label)

    def identity(self) -> dict:
        """The pair count, classes and a digest of the files' names and sizes (the reference's files carry
        no digests)."""
        files = [[p.parent.name, p.name, p.stat().st_size] for p in [*self.files, *self.image_files]]
        return {"format": "reference", "num_pairs": len(self), "num_classes": self.num_classes, "files": _digest(files)}

    def _load(self, i: int) -> Item:
        latent_obj = _torch_load_pairs(self.files[i])
        image = _torch_load_pairs(self.image_files[i])
        if isinstance(latent_obj, (list, tuple)):
            if len(latent_obj) != 2 or not all(isinstance(t, torch.Tensor) for t in latent_obj):
                raise PairFileError(f"{self.files[i]}: a conditional latent file holds [latents, one-hot labels]")
            latent, onehot = latent_obj
            if onehot.dim() != 2 or onehot.shape[0] != latent.shape[0]:
                raise PairFileError(
                    f"{self.files[i]}: labels must be one-hot (n, num_classes), got {tuple(onehot.shape)}"
                )
            self.num_classes = onehot.shape[1]
            label = onehot.argmax(dim=1)
        elif isinstance(latent_obj, torch.Tensor):
            latent, label = latent_obj, torch.full((latent_obj.shape[0],), -1, dtype=torch.int64)
        else:
            raise PairFileError(
                f"{self.files[i]}: expected a tensor or [tensor, tensor], got {type(latent_obj).__name__}"
            )
        if not isinstance(image, torch.Tensor):
            raise PairFileError(f"{self.image_files[i]}: expected a tensor, got {type(image).__name__}")
        if latent.dim() != 4:
            raise PairFileError(f"{self.files[i]}: latents must be (n, C, H, W), got {tuple(latent.shape)}")
        return latent, image, label
