"""One training step of GET (each gradient mode) or ViT, shared by the memory benchmark in-process and
in a fresh subprocess (for the CPU peak-RSS measure). Run as a script it prints one JSON line."""
from __future__ import annotations

import functools
import json
import sys

import torch

from getkern import GET, ViT
from getkern.tools.memory import peak_step_memory, saved_activation_bytes


@functools.lru_cache(maxsize=1)
def build(name: str, image_size: int, device: str) -> torch.nn.Module:
    """Cached: a training step without an optimizer leaves the weights as they were."""
    torch.manual_seed(0)
    cls = GET if name.startswith("GET") else ViT
    model = cls.from_config(name, input_size=image_size).to(device).train()
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.02)
    return model


def training_step(model, noise, target, grad: str | None, iters: int | None):
    """Forward with a graph and the loss; returns the loss (call .backward() on it)."""
    if isinstance(model, ViT):
        return (model(noise) - target).abs().mean()
    outs = model(noise, iters=iters, grad=grad, return_iterates=True, tol=None)
    K = len(outs)  # fixed-point correction, weights 0.8^(K-1-k), as the reference trains
    return sum(0.8 ** (K - 1 - k) * (o - target).abs().mean() for k, o in enumerate(outs))


def inputs(model, batch: int, device: str):
    g = torch.Generator().manual_seed(1)
    shape = (batch, 3, model.input_size, model.input_size)
    return torch.randn(shape, generator=g).to(device), torch.randn(shape, generator=g).to(device)


def saved_bytes(model, batch, grad, iters, device) -> int:
    noise, target = inputs(model, batch, device)
    nbytes, loss = saved_activation_bytes(lambda: training_step(model, noise, target, grad, iters), exclude=model)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return nbytes


def peak_bytes(spec: dict) -> int:
    """Peak memory growth of one training step; meaningful on CPU only in a fresh process."""
    model = build(spec["model"], spec["image_size"], spec["device"])
    noise, target = inputs(model, spec["batch"], spec["device"])

    def step():
        training_step(model, noise, target, spec["grad"], spec["iters"]).backward()

    return peak_step_memory(step, torch.device(spec["device"]))


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else torch.get_num_threads())
    print(json.dumps({"peak_bytes": peak_bytes(json.loads(sys.argv[1]))}))
