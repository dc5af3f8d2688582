"""The demo's settings (``getkern demo``'s defaults), apart from the demo so the parser imports no torch."""

from __future__ import annotations

from dataclasses import dataclass, field

ADVERSARIAL = {"adversarial_weight": 0.05, "disc_classes": True}
REGRESSION_ONLY: dict = {}


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    teacher: str = "digits"  # shipped teacher; "train" retrains it into the cache
    teacher_steps: int = 6000  # only for teacher="train"
    num_pairs: int = 20_000
    heun_steps: int = 18  # 35 teacher evaluations per pair
    # GET for 8x8x1 digits: patch 2 -> 16 tokens of width 64 (see docs/pipeline.md).
    model: dict = field(
        default_factory=lambda: dict(
            patch_size=2,
            hidden_size=64,
            depth=2,
            num_heads=4,
            mlp_ratio=4.0,
            deq_mlp_ratio=4.0,
            backend="auto",
            solver_backend="auto",
        )
    )
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    ema_decay: float = 0.999
    ema_warmup: bool = True
    train_iters: int = 4  # K unrolled iterations per step (the reference: 6)
    max_steps: int = 4000
    lr_schedule: str = "cosine"  # to 0 at max_steps (the reference: constant)
    # Further TrainConfig fields. By default GET's L1 fixed-point-correction loss plus a small adversarial
    # term from a discriminator on (noise, image, class) (docs/objectives.md): on this budget it takes the
    # GET from about 13-16 to about 6 in the digits Frechet distance. REGRESSION_ONLY is GET's recipe alone.
    train_options: dict = field(default_factory=lambda: dict(ADVERSARIAL))
    eval_samples: int = 600  # the digits metric's maximum (its floor uses 600 held-out digits)
    teacher_eval_steps: tuple = (2, 3, 4, 6, 8, 12, 18)
    get_eval_iters: tuple = (1, 2, 3, 4, 6, 8)
    get_iters: int = 4  # the headline GET setting (= train_iters)
    weights: str = "ema"  # sampled weights, "ema" (as the reference) | "online"; both are scored
    profile: bool = True
    progress: bool = True
