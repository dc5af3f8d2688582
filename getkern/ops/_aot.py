"""Registry of ahead-of-time compile specs for every Triton kernel (read by getkern.tools.gpu_check).

Each module in getkern/ops that defines Triton kernels also defines ``aot_specs()``, yielding one
:class:`AotSpec` per configuration the dispatcher can choose at GET sizes. The gate discovers these
functions by importing every module of getkern.ops, so a new kernel is covered without a second list.

A spec is compiled as the JIT compiles it at launch: :func:`jit_launch` runs Triton's own argument
specialisation (the binder ``JITFunction.run`` calls at every launch, then ``JITFunction._pack_args``)
on the spec's ``values`` (the int arguments the dispatcher passes at the GET size the spec stands for)
and 16-byte-aligned stand-ins for the pointers (torch allocations are aligned). It gives
``tt.divisibility = 16`` to aligned pointers and to ints divisible by 16, turns ints equal to 1 into
constants (except arguments the kernel lists in ``do_not_specialize``), and returns the signature,
constexprs, attrs and options the JIT hands to ``triton.compile``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

# Token counts of GET / ViT at 32x32 inputs, patch 2, 4, 8: (32 / patch)^2. Multiples of 16, so the row
# count M = batch x tokens of every activation is one too, whatever the batch.
GET_TOKENS = (256, 64, 16)
GET_BATCH = 128  # the batch of the roofline model (docs/gpu.md); any batch specialises alike
# Hidden sizes of the GET and ViT configs (getkern/models/configs.py) and the small test/demo models,
# and every MLP ratio they use.
GET_DIMS = (64, 128, 256, 384, 512, 768, 1024, 1152)
GET_MLP_RATIOS = (4, 6, 8, 12)


@dataclass(frozen=True)
class AotSpec:
    name: str  # e.g. "attention_fwd[hd=64,bf16]"
    kernel: Any  # the @triton.jit function
    signature: dict[str, str]  # triton.compiler.ASTSource signature, e.g. {"Q": "*bf16", "N": "i32"}
    constexprs: dict[str, Any] = field(default_factory=dict)
    num_warps: int = 4
    num_stages: int = 3
    uses_dot: bool = False  # has tl.dot: must compile to mma.sync (sm_80) / wgmma (sm_90)
    archs: tuple[int, ...] = (80, 90)  # compute capabilities this configuration is chosen for
    # The int arguments the dispatcher passes at the GET size this spec stands for, e.g. {"M": 32768,
    # "N": 3072, "K": 768}: the JIT specialises on them (see jit_launch). Every int argument needs one.
    values: dict[str, int] = field(default_factory=dict)


_TORCH_DTYPES = {
    "fp16": "float16",
    "bf16": "bfloat16",
    "fp32": "float32",
    "fp64": "float64",
    "i8": "int8",
    "i16": "int16",
    "i32": "int32",
    "i64": "int64",
    "u8": "uint8",
    "i1": "bool",
}


@functools.cache
def _backend_and_binder(kernel, cc: int):
    """(backend, the JITFunction, its argument binder): Triton's backend for sm_<cc> and the binder built
    as the JIT builds it for a device (JITFunction.create_binder), for a target given here (no GPU
    needed). Under TRITON_INTERPRET=1 the kernel is an InterpretedFunction: the JITFunction is made from
    the same function and @triton.jit options (do_not_specialize...)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    if not isinstance(kernel, JITFunction):
        kernel = JITFunction(kernel.fn, **kernel.kwargs)
    backend = make_backend(GPUTarget("cuda", cc, 32))
    return backend, kernel, create_function_from_signature(kernel.signature, kernel.params, backend)


def jit_launch(spec: AotSpec, cc: int = 90) -> tuple[dict, dict, dict, dict]:
    """(signature, constexprs, attrs, options) that the JIT passes to ``ASTSource`` and
    ``triton.compile`` when the dispatcher launches ``spec.kernel`` on an sm_<cc> GPU at the spec's GET
    size: Triton's binder and ``_pack_args`` applied to the spec's constexprs, its int ``values``, a
    float for float arguments and, for pointers, ``triton.runtime.jit.MockTensor`` (the stand-in of
    ``kernel.warmup``; address 0, i.e. aligned). Raises ValueError where the JIT's signature disagrees
    with the spec's or an int argument has no value."""
    from triton.runtime.jit import MockTensor

    backend, jit_fn, binder = _backend_and_binder(spec.kernel, cc)
    args = {}
    for name in spec.kernel.arg_names:
        ty = spec.signature.get(name, "constexpr")
        if name in spec.constexprs:
            args[name] = spec.constexprs[name]
        elif ty.startswith("*"):
            args[name] = MockTensor(getattr(torch, _TORCH_DTYPES[ty[1:]]))
        elif ty.startswith(("i", "u")):
            if name not in spec.values:
                raise ValueError(f"{spec.name}: no value for the int argument {name!r} (AotSpec.values)")
            args[name] = int(spec.values[name])
        elif ty.startswith(("fp", "bf")):
            args[name] = 0.5
        else:
            raise ValueError(f"{spec.name}: argument {name!r} of type {ty!r} is neither constexpr nor given")
    kwargs = {**args, "num_warps": spec.num_warps, "num_stages": spec.num_stages}
    bound, specialization, options = binder(**kwargs)
    options, signature, constexprs, attrs = jit_fn._pack_args(backend, kwargs, bound, specialization, options)
    for name, ty in signature.items():
        declared = spec.signature.get(name, "constexpr")
        if ty != declared and not (ty == "constexpr" and declared.startswith(("i", "u"))):
            raise ValueError(f"{spec.name}: the JIT types {name!r} as {ty}, the spec as {declared}")
    return signature, constexprs, attrs, dict(options.__dict__)


def specialization_key(spec: AotSpec, cc: int = 90) -> tuple:
    """What the JIT's specialisation of ``spec`` makes of it, independent of the triton version's
    spelling of attrs: (argument, type, attrs, constant value) per argument, in the kernel's order."""
    signature, constexprs, attrs, _ = jit_launch(spec, cc)
    names = spec.kernel.arg_names
    attr_of = {names[path[0]]: tuple(tuple(a) for a in value) for path, value in attrs.items() if value}
    return tuple(
        (name, ty, attr_of.get(name, ()), repr(constexprs.get((i,))) if ty == "constexpr" else "")
        for i, (name, ty) in enumerate(signature.items())
    )


def _int_class(spec: AotSpec, name: str, key: tuple) -> str:
    entry = next(e for e in key if e[0] == name)
    if entry[1] == "constexpr":
        return f"{name}={entry[3]}"
    return f"{name}%16=0" if ("tt.divisibility", 16) in entry[2] else f"{name}%16>0"


def distinct_specializations(specs: Iterable[AotSpec]) -> Iterator[AotSpec]:
    """One spec per distinct (name, JIT specialisation) of ``specs``, where a name may come once per
    GET size (with that size's ``values``). A name whose sizes specialise differently yields one spec per
    variant, its name tagged with how the differing int arguments specialise ("H%16=0" / "H%16>0",
    "m=1"): the JIT compiles each variant as a binary of its own, and so does the gate."""
    variants: dict[str, dict[tuple, AotSpec]] = {}
    for spec in specs:
        variants.setdefault(spec.name, {}).setdefault(specialization_key(spec, spec.archs[0]), spec)
    for name, by_key in variants.items():
        if len(by_key) == 1:
            yield from by_key.values()
            continue
        ints = [n for n, ty in next(iter(by_key.values())).signature.items() if ty.startswith(("i", "u"))]
        differ = [n for n in ints if len({_int_class(s, n, k) for k, s in by_key.items()}) > 1]
        for key, spec in by_key.items():
            tag = ",".join(_int_class(spec, n, key) for n in differ)
            new_name = f"{name[:-1]},{tag}]" if name.endswith("]") else f"{name}[{tag}]"
            yield dataclasses.replace(spec, name=new_name)
