"""Distillation of teacher pairs into a GET: the Trainer (reference recipe by default), checkpoints,
torchrun/DDP integration and sample grids."""
from getkern.distill.trainer import TrainConfig, Trainer, fpc_loss, load_ema_model, load_train_checkpoint

__all__ = ["TrainConfig", "Trainer", "fpc_loss", "load_ema_model", "load_train_checkpoint"]
