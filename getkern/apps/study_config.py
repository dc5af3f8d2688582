"""The study's settings (``getkern study``'s defaults), apart from the engine so the parser imports no torch.

The grid (getkern/apps/study.py runs it; docs/results/get-vs-vit.md reports it):

- models: the demo's GET (290,436 parameters at 8x8x1, patch 2) and three ViTs with the same patching,
  stem, block, class conditioning and decoder, of about 1x, 2x and 5x its parameters
  (width x depth 64x6: 303,556 = 1.05x; 96x5: 564,676 = 1.94x; 128x7: 1,395,204 = 4.80x);
- recipes: the demo's default (ADVERSARIAL: L1 fixed-point correction + a small adversarial term) and
  GET's regression-only recipe (REGRESSION_ONLY); every other training setting is the demo's;
- budgets: equal wall time (``wall_budget_s`` of training per run, converted into max_steps with each
  model's calibrated seconds per step) and equal training FLOPs (the FLOPs the GET spends in that wall
  budget, converted with each model's FLOPs per step from FlopCounterMode), so the GET's FLOP-budget run
  is its wall-budget run;
- the GET's gradient modes (unrolled, phantom, implicit) at equal wall time with the default recipe;
- ``seeds`` seeds of every run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# label -> ViT settings (patch 2 and the demo's MLP ratio come from the GET); ~1x, 2x, 5x the GET.
VITS = {
    "ViT-1x": dict(hidden_size=64, depth=6, num_heads=4),
    "ViT-2x": dict(hidden_size=96, depth=5, num_heads=4),
    "ViT-5x": dict(hidden_size=128, depth=7, num_heads=4),
}
RECIPES = ("adversarial", "regression")  # ADVERSARIAL, REGRESSION_ONLY of getkern.apps.demo_config
BUDGETS = ("wall", "flops")
GRADS = ("unrolled", "phantom", "implicit")


@dataclass
class StudyConfig:
    """One study. ``StudyConfig()`` is the full grid (about 60 min on 2 CPU cores); ``quick_variant()`` the
    --quick variant (under 10 min). Any DemoConfig field can be overridden through ``demo`` (e.g. a toy
    GET for tests); the ViTs take the GET's patch size and MLP ratio."""

    out: str = "runs/study"
    cache: str = ""  # teacher pairs cache ('' = <out>/cache); the demo's layout
    num_pairs: int = 20_000  # the demo's pair set
    wall_budget_s: float = 60.0  # training seconds per run at equal wall time
    seeds: tuple = (0, 1, 2)
    recipes: tuple = RECIPES
    vits: dict = field(default_factory=lambda: {k: dict(v) for k, v in VITS.items()})
    grads: tuple = GRADS  # the GET's gradient modes, default recipe, equal wall time
    milestones: int = 4  # FD evaluated at 1/m, 2/m, .. 1 of each run's steps (its curve)
    curve_iters: tuple = (2, 4, 8)  # GET iterations scored at the intermediate milestones
    final_iters: tuple = (1, 2, 3, 4, 6, 8)  # ... and at the end (its best is the GET's FD)
    teacher_steps: tuple = (2, 3, 4, 6, 8, 12, 18)  # Heun steps of the teacher in the Pareto plot
    eval_samples: int = 600  # the digits metric's maximum
    calibration_steps: int = 12  # timed training steps per model (in 3 interleaved rounds)
    timing_repeats: int = 3  # sampling time per image: the best of this many passes
    threads: int = 0  # torch threads for the whole study (0: torch's default); fixed
    #                                       in plan.json at calibration, so a resumed run computes the same
    demo: dict = field(default_factory=dict)  # DemoConfig overrides (model, batch_size, heun_steps, ...)
    progress: bool = True
    quick: bool = False  # only labels the outputs

    @classmethod
    def quick_variant(cls, **overrides) -> StudyConfig:
        """The --quick grid: one seed, 20 s per run, 300 evaluation samples, 2 milestones (under 10 min)."""
        return cls(
            **{
                **dict(
                    wall_budget_s=20.0,
                    seeds=(0,),
                    eval_samples=300,
                    milestones=2,
                    calibration_steps=8,
                    quick=True,
                    out="runs/study-quick",
                ),
                **overrides,
            }
        )

    def key_fields(self) -> dict:
        """The settings that determine the results (a study folder refuses other values)."""
        d = dataclasses.asdict(self)
        for name in ("out", "cache", "progress", "timing_repeats"):
            d.pop(name)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
