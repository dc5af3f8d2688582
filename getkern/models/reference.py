"""The published GET inference procedure written op for op from its description (see
shared/design/get-reference.md), on a state dict with torch.nn.functional only: no getkern module,
kernel or solver. It is the yardstick for two claims: faithfulness (tests/test_models.py compares
GET with it in float64) and speed (benchmarks/test_cpu_speed_bench.py times GET against it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def reference_block(sd, prefix, x, heads, c=None, u=None):
    """One block, op for op: LN1, qkv (+ c, + u), softmax attention, proj, residual; LN2, MLP, residual."""
    D = x.shape[-1]
    h = F.layer_norm(x, (D,), sd[f"{prefix}.norm1.weight"], sd[f"{prefix}.norm1.bias"], 1e-6)
    qkv = F.linear(h, sd[f"{prefix}.attn.qkv.weight"], sd[f"{prefix}.attn.qkv.bias"])
    if c is not None:
        qkv = qkv + c
    if u is not None:
        qkv = qkv + u
    B, N, _ = qkv.shape
    q, k, v = qkv.reshape(B, N, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
    attn = (q @ k.transpose(-2, -1) / math.sqrt(D // heads)).softmax(-1)
    a = (attn @ v).transpose(1, 2).reshape(B, N, D)
    x = x + F.linear(a, sd[f"{prefix}.attn.proj.weight"], sd[f"{prefix}.attn.proj.bias"])
    h = F.layer_norm(x, (D,), sd[f"{prefix}.norm2.weight"], sd[f"{prefix}.norm2.bias"], 1e-6)
    h = F.gelu(F.linear(h, sd[f"{prefix}.mlp.fc1.weight"], sd[f"{prefix}.mlp.fc1.bias"]))
    return x + F.linear(h, sd[f"{prefix}.mlp.fc2.weight"], sd[f"{prefix}.mlp.fc2.bias"])


def reference_get(sd, noise, y, z0, *, heads, depth, deq_depth, patch, iters):
    """The whole inference: embed, injection blocks, qkv_inj, ``iters`` fixed-point steps keeping each
    sample's lowest-residual f-value, decode. noise (B, C, H, W), y (B,) or None, z0 (B, N, D)."""
    x = F.conv2d(noise, sd["x_embedder.proj.weight"], sd["x_embedder.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2) + sd["pos_embed"]
    c = sd["y_embedder.embedding_table.weight"][y].unsqueeze(1) if y is not None else None
    for i in range(depth):
        x = reference_block(sd, f"blocks.{i}", x, heads, c)
    us = F.linear(x, sd["qkv_inj.weight"]).chunk(deq_depth, dim=-1)
    z, best, lowest = z0, None, None
    for _ in range(iters):
        fz = z
        for j in range(deq_depth):
            fz = reference_block(sd, f"deq_blocks.{j}", fz, heads, c, us[j])
        r = (fz - z).flatten(1).norm(dim=1)
        if best is None:
            best, lowest = fz, r
        else:
            take = r < lowest
            best = torch.where(take[:, None, None], fz, best)
            lowest = torch.where(take, r, lowest)
        z = fz
    D = best.shape[-1]
    out = F.linear(
        F.layer_norm(best, (D,), sd["final_layer.norm_final.weight"], sd["final_layer.norm_final.bias"], 1e-6),
        sd["final_layer.linear.weight"],
        sd["final_layer.linear.bias"],
    )
    B, N, _ = out.shape
    g, C = int(N**0.5), noise.shape[1]
    out = out.reshape(B, g, g, patch, patch, C).permute(0, 5, 1, 3, 2, 4)
    return out.reshape(B, C, g * patch, g * patch)
