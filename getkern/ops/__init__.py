"""Fused ops of the GET block, each with a Triton kernel and a PyTorch reference path.

Every op takes ``backend="auto"|"triton"|"torch"`` (see :mod:`getkern._backend`). Importing this package
also registers the custom ops' FLOP formulas (:mod:`getkern.ops.flops`).

Modules: ``attention``, ``layernorm``, ``anderson`` (kernels and ops); ``matmul`` (the matmul kernel
family: the plain and the LayerNorm-prologue kernel with their epilogues, launchers, configs, AOT specs
and the input check of the ops built on them); ``mlp``, ``ln_linear``, ``ln_mlp`` (ops on ``matmul``);
``cpu_epilogues`` (oneDNN CPU inference); ``_triton`` (the only import of triton by a kernel module:
``from getkern.ops._triton import jit, tl, triton`` [, ``constexpr``]); ``_aot`` (the code-generation
gate's spec registry and GET sizes).

Skeleton of a public op
-----------------------
Every public op (fused_attention, layer_norm, mlp, layer_norm_linear, add_layer_norm_mlp,
anderson_record, anderson_mix) runs these steps in this order:

1. resolve the backend: ``path = resolve_backend(backend, device, op=..., unsupported=..., slower=...)``,
   with ``unsupported`` naming what no kernel takes (float64, a head dim) and ``slower`` where "auto"
   should prefer torch;
2. reference path: ``if path == "torch": return <the plain PyTorch sequence>`` (what every other path is
   tested against; mlp's CPU inference may take getkern.ops.cpu_epilogues instead);
3. autocast: custom ops are invisible to autocast, so cast as autocast would for the reference sequence
   (or refuse what the fused op cannot express);
4. input check: ``dense(...)`` (one copy of a strided view) and one check whose errors name the
   argument (the matmul-based ops share ``getkern.ops.matmul.check_inputs``);
5. the op: ``torch.ops.getkern.<op>_train`` where autograd needs its saved tensors, else the
   inference op (or the launcher itself for ops without autograd).

Two guards may come before step 1, where skipping them would change what the reference path does: a
check that the tensor step 1 reads is one with a last dimension (``matmul.check_activation``:
layer_norm_linear, add_layer_norm_mlp); and, for ops whose reference path needs validated arguments
too, the whole input check (fused_attention: its head dim picks the backend, and c and u would
broadcast silently; the Anderson passes write their history in place).
"""

from getkern.ops import flops  # noqa: F401
from getkern.ops.attention import fused_attention
from getkern.ops.layernorm import layer_norm
from getkern.ops.mlp import mlp

__all__ = ["fused_attention", "layer_norm", "mlp"]
