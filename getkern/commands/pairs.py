"""``getkern pairs``: generate noise/image pairs from a teacher (resumable; shard by rank under torchrun).

Examples:
    getkern pairs --teacher digits --out runs/pairs --num-pairs 20000
    getkern pairs --teacher digits-guided --guidance-range 0 4 --out runs/guided --num-pairs 20000
    torchrun --nproc_per_node 8 -m getkern pairs --teacher edm.pkl --trust-pickle --edm-root edm/ --out pairs/ --num-pairs 1000000
"""

from __future__ import annotations

from getkern.commands._common import (
    add_device,
    add_out,
    add_progress,
    check_out_dir,
    command_parser,
    finite_float,
    int_range,
    positive_int,
    resolve_device,
    seed,
)
from getkern.errors import UsageError


def add_parser(sub) -> None:
    p = command_parser(sub, "pairs", __doc__, help="generate noise/image pairs from an EDM teacher")
    p.add_argument(
        "--teacher",
        default="digits",
        help="'digits' or 'digits-guided' (shipped; the second has a null class for guidance), "
        "a teacher folder, or an EDM network .pkl",
    )
    add_out(p, "pair folder (manifest.json + shards); an unfinished one is completed")
    p.add_argument("--num-pairs", type=positive_int, required=True, help="pairs in the finished set")
    p.add_argument("--first-seed", type=seed, default=0, help="pair i uses seed first_seed + i")
    p.add_argument("--shard-size", type=positive_int, default=1000, help="pairs per shard file")
    p.add_argument(
        "--steps",
        type=int_range(2, note="Heun steps from sigma_max to sigma_min"),
        default=18,
        help="Heun steps (2*steps-1 network evaluations)",
    )
    p.add_argument("--batch-size", type=positive_int, default=500, help="pairs per teacher batch")
    p.add_argument(
        "--guidance-range",
        type=finite_float,
        nargs=2,
        metavar=("WMIN", "WMAX"),
        default=None,
        help="guidance distillation: each pair's classifier-free guidance weight w ~ U[WMIN, WMAX], "
        "drawn from its seed (needs a teacher with a null class, e.g. digits-guided)",
    )
    add_device(p)
    p.add_argument("--trust-pickle", action="store_true", help="allow loading an EDM pickle (runs its code)")
    p.add_argument("--edm-root", default=None, help="a clone of NVlabs/edm (for EDM pickles)")
    add_progress(p)
    p.set_defaults(func=run)


FLAGS = {
    "num_pairs": "--num-pairs",
    "first_seed": "--first-seed",
    "shard_size": "--shard-size",
    "num_steps": "--steps",
    "batch_size": "--batch-size",
}


def run(args) -> int:
    # torch only when the command runs, never for --help
    from getkern.data import write_pairs
    from getkern.data.pairs import check_pair_arguments
    from getkern.distributed import init_distributed
    from getkern.models.inputs import check_guidance_range
    from getkern.teacher import load_teacher

    check_pair_arguments(
        num_pairs=args.num_pairs,
        first_seed=args.first_seed,
        shard_size=args.shard_size,
        num_steps=args.steps,
        batch_size=args.batch_size,
        names=FLAGS,
    )  # before loading a teacher
    check_out_dir(args.out)
    resolve_device(args.device)  # a UsageError naming --device before anything is loaded
    device = init_distributed(args.device).device
    teacher = load_teacher(args.teacher, trust_pickle=args.trust_pickle, edm_root=args.edm_root, device=device)
    if args.guidance_range is not None:
        check_guidance_range(args.guidance_range, "--guidance-range")
        try:
            teacher.guided(0.0)
        except ValueError as e:
            raise UsageError(f"--guidance-range cannot be used with --teacher {args.teacher}: {e}") from None
    manifest = write_pairs(
        teacher,
        args.out,
        num_pairs=args.num_pairs,
        first_seed=args.first_seed,
        shard_size=args.shard_size,
        num_steps=args.steps,
        batch_size=args.batch_size,
        guidance_range=args.guidance_range,
        progress=not args.no_progress,
    )
    print(f"pairs ready: {manifest}")
    return 0
