"""``getkern train``: distill pairs into a GET (reference recipe by default; resumes from --out).

    getkern train --pairs runs/pairs --out runs/get --model GET-T/2 --max-steps 100000
    torchrun --nproc_per_node 8 -m getkern train --pairs pairs/ --out runs/get-b --model GET-B/2 --amp bf16
    getkern train ... --adversarial-weight 0.1 --disc-input pair --disc-classes      # + a discriminator
    getkern train ... --loss perceptual --perceptual-ensemble 4                       # E-LatentLPIPS-style
"""
from __future__ import annotations

import json


def add_parser(sub) -> None:
    from getkern.deq import GRADS
    from getkern.distill import TrainConfig
    from getkern.distill.objectives import LOSSES
    from getkern.distill.objectives.adversarial import DISC_INPUTS, DISC_LOSSES
    from getkern.distill.objectives.perceptual import PERCEPTUAL_NETS
    from getkern.distill.trainer import LR_SCHEDULES
    d = TrainConfig(pairs="", out="")
    from getkern.commands._common import add_device, add_out, add_progress, command_parser
    p = command_parser(sub, "train", __doc__, help="distill teacher pairs into a GET")
    p.add_argument("--pairs", required=True, help="getkern pair directory or reference root (latent/, image/)")
    add_out(p, "run folder; an existing checkpoint there is resumed")
    p.add_argument("--model", default="GET-T/2", help="a named size (GET-T/2 ..., or ViT-S/2 ... for the "
                   "one-pass baseline) (default: GET-T/2)")
    p.add_argument("--model-args", default="{}", help='JSON GET keyword overrides, e.g. \'{"hidden_size": 64}\'')
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--grad-accum", type=int, default=d.grad_accum)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=d.lr_schedule,
                   help="after warm-up: constant (the reference) or cosine decay to 0 at --max-steps")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--ema-decay", type=float, default=d.ema_decay)
    p.add_argument("--ema-warmup", action="store_true",
                   help="EMA decay min(--ema-decay, (1+s)/(10+s)) at step s (for short runs)")
    p.add_argument("--iters", type=int, default=d.iters, help="unrolled iterations K per step")
    p.add_argument("--fpc-weight", type=float, default=d.fpc_weight)
    p.add_argument("--loss", choices=LOSSES, default=d.loss, help="regression distance (docs/objectives.md)")
    o = p.add_argument_group("objectives (docs/objectives.md)")
    o.add_argument("--regression-weight", type=float, default=d.regression_weight,
                   help="weight of the fixed-point-correction regression term (0: adversarial alone)")
    o.add_argument("--adversarial-weight", type=float, default=d.adversarial_weight,
                   help="weight of the discriminator's generator loss (0: no discriminator)")
    o.add_argument("--disc-input", choices=DISC_INPUTS, default=d.disc_input,
                   help="the discriminator sees (noise, image) pairs or images alone")
    o.add_argument("--disc-classes", action="store_true", help="class projection in the discriminator")
    o.add_argument("--disc-loss", choices=DISC_LOSSES, default=d.disc_loss)
    o.add_argument("--disc-lr", type=float, default=d.disc_lr, help="discriminator Adam lr (betas 0.0, 0.99)")
    o.add_argument("--disc-width", type=int, default=d.disc_width)
    o.add_argument("--perceptual-net", choices=PERCEPTUAL_NETS, default=d.perceptual_net,
                   help="--loss perceptual: the digits classifier, or LPIPS (optional `lpips` package)")
    o.add_argument("--perceptual-ensemble", type=int, default=d.perceptual_ensemble,
                   help="random augmentations per step the perceptual distance is averaged over")
    o.add_argument("--init", default="", help="start the student from a training checkpoint's EMA weights or a "
                   "save_pretrained directory (fine-tuning)")
    o.add_argument("--freeze", nargs="*", default=[], metavar="PREFIX",
                   help="student parameter-name prefixes to leave untrained, e.g. x_embedder y_embedder blocks qkv_inj")
    p.add_argument("--grad", choices=GRADS, default=d.grad)
    p.add_argument("--max-steps", type=int, default=d.max_steps)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--sample-every", type=int, default=d.sample_every, help="0: no grids")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default=d.amp)
    add_device(p)
    add_progress(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from getkern.commands._common import check_out_dir
    from getkern.distill import TrainConfig, Trainer
    model = {"name": args.model, **json.loads(args.model_args)} if args.model else json.loads(args.model_args)
    check_out_dir(args.out)
    config = TrainConfig(pairs=args.pairs, out=str(args.out), model=model, batch_size=args.batch_size,
                         grad_accum=args.grad_accum, lr=args.lr, warmup_steps=args.warmup_steps,
                         lr_schedule=args.lr_schedule, weight_decay=args.weight_decay,
                         ema_decay=args.ema_decay, ema_warmup=args.ema_warmup, iters=args.iters,
                         fpc_weight=args.fpc_weight, loss=args.loss,
                         grad=args.grad, regression_weight=args.regression_weight,
                         adversarial_weight=args.adversarial_weight, disc_input=args.disc_input,
                         disc_classes=args.disc_classes, disc_loss=args.disc_loss, disc_lr=args.disc_lr,
                         disc_width=args.disc_width, perceptual_net=args.perceptual_net,
                         perceptual_ensemble=args.perceptual_ensemble, init=args.init, freeze=list(args.freeze),
                         max_steps=args.max_steps, checkpoint_every=args.checkpoint_every,
                         sample_every=args.sample_every, seed=args.seed, amp=args.amp, device=args.device,
                         progress=not args.no_progress)
    Trainer(config).fit()
    return 0
