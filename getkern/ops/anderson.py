"""The two memory passes of one Anderson iteration (the tiny bordered solve between them is elsewhere).

State layout, per sample b (flattened state of n elements, state dtype fp32/bf16/fp16):
  F: (B, m, n) ring of f-values, G: (B, m, n) ring of residuals g = f(z) - z, slot = k % m;
  gram: (B, m, m) fp32, gram[b, i, j] = <G[b, i], G[b, j]> over the valid slots i, j < min(k + 1, m).
Keeping G beside F (rather than X) is what lets the Gram row come from the same pass that writes g.
All arithmetic uses the stored (state-dtype-rounded) values, accumulated in fp32 (the mix of fp64
states, torch path only, in fp64).

Pass 1, :func:`anderson_record`: write fz, g into slot; fill the Gram row/column of that slot;
  return the per-sample residual norms.
Pass 2, :func:`anderson_mix`: z_next = sum_i alpha_i (F_i - (1 - tau) G_i)  (= tau F_i + (1 - tau) X_i),
  evaluated relative to the newest slot s (sum alpha = 1) as
  F_s - (1 - tau) G_s + sum_i alpha_i (dF_i - (1 - tau) dG_i), dF_i = F_i - F_s, dG_i = G_i - G_s, so
  rounding in alpha scales the differences, not the state (docs/anderson.md, "Precision"); restarted
  samples take z_next = best instead; then update the per-sample best iterate (the f-value with the
  lowest residual so far).

Triton path (docs/anderson.md has the traffic table): three launches per iteration.
  1. ``_record_stream_kernel``, grid (B, chunks of n): reads fz and z once, writes both history
     slots, and per chunk the partial dots of g with every valid G_i plus the partial ||fz||^2 into
     a small fp32 scratch (B, chunks, m + 1).
  2. ``_record_finish_kernel``, grid (B,): sums the partials in a fixed order (deterministic, no
     atomics), writes the Gram row and column and the two residual norms.
  3. ``_mix_kernel``, grid (B, cdiv(n, BLOCK)): reads the valid F_i (and G_i only when tau != 1), writes
     z_next (best, read only for restarted samples, instead of the mix there), and copies F[:, slot]
     into best where the residual improved; the last program of each sample to finish (a per-sample
     arrival ticket) updates best_res, after all have compared with it.
Slots >= min(k + 1, m) are never read by the kernels: they hold no history yet (the torch path reads
them with a zero weight, so the two agree whenever those unused slots are finite).
"""

from __future__ import annotations

import torch

from getkern._backend import resolve_backend
from getkern._traffic import Traffic
from getkern.ops._aot import GET_DIMS, GET_TOKENS, AotSpec, distinct_specializations
from getkern.ops._triton import jit, tl, triton

REL_EPS = 1e-5  # rel residual = ||f(z) - z|| / (||f(z)|| + REL_EPS)
BLOCK = 1024  # state elements per program of the mix kernel (4 warps, 8 per thread)
TILE = 4096  # elements of the record kernel's (history rows x BLOCK) tile
FINISH_ROWS = 64  # chunk partials summed per step of the finish kernel
FINISH_COLS = 16  # partial columns (history slots + ||fz||^2) per step of the finish kernel
NUM_WARPS = 4
_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check_record_args(fz, z, F, G, gram, k):
    if F.dim() != 3 or G.shape != F.shape:
        raise ValueError(f"F and G must be (B, m, n) of one shape, got {tuple(F.shape)} and {tuple(G.shape)}")
    if G.dtype != F.dtype or G.device != F.device:
        raise ValueError(f"G must be {F.dtype} on {F.device} like F, got {G.dtype} on {G.device}")
    B, m, n = F.shape
    for name, t in (("fz", fz), ("z", z)):
        if tuple(t.shape) != (B, n):
            raise ValueError(f"{name} must have shape (B, n) = {(B, n)}, got {tuple(t.shape)}")
        if t.dtype != F.dtype or t.device != F.device:
            raise ValueError(f"{name} must be {F.dtype} on {F.device} like the history, got {t.dtype} on {t.device}")
    if gram.shape != (B, m, m) or gram.dtype != torch.float32 or gram.device != F.device:
        raise ValueError(
            f"gram must be float32 of shape {(B, m, m)} on {F.device}, "
            f"got {gram.dtype} {tuple(gram.shape)} on {gram.device}"
        )
    for name, t in (("fz", fz), ("z", z), ("F", F), ("G", G), ("gram", gram)):
        if not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous")
    if k < 0:
        raise ValueError(f"iteration index k must be >= 0, got {k}")


def _check_mix_args(F, G, alpha, tau, k, res, best, best_res, restart):
    if F.dim() != 3 or G.shape != F.shape or G.dtype != F.dtype or G.device != F.device:
        raise ValueError(
            f"F and G must be (B, m, n) of one shape, dtype and device, got "
            f"{F.dtype} {tuple(F.shape)} and {G.dtype} {tuple(G.shape)}"
        )
    B, m, n = F.shape
    if alpha.shape != (B, m) or alpha.dtype != torch.float32 or alpha.device != F.device:
        raise ValueError(
            f"alpha must be float32 of shape {(B, m)} on {F.device}, "
            f"got {alpha.dtype} {tuple(alpha.shape)} on {alpha.device}"
        )
    if best.shape != (B, n) or best.dtype != F.dtype or best.device != F.device:
        raise ValueError(
            f"best must be {F.dtype} of shape {(B, n)} on {F.device}, "
            f"got {best.dtype} {tuple(best.shape)} on {best.device}"
        )
    for name, t in (("res", res), ("best_res", best_res)):
        if t.shape != (B,) or t.dtype != torch.float32 or t.device != F.device:
            raise ValueError(
                f"{name} must be float32 of shape ({B},) on {F.device}, got {t.dtype} {tuple(t.shape)} on {t.device}"
            )
    if restart is not None and (restart.shape != (B,) or restart.dtype != torch.bool or restart.device != F.device):
        raise ValueError(
            f"restart must be bool of shape ({B},) on {F.device}, "
            f"got {restart.dtype} {tuple(restart.shape)} on {restart.device}"
        )
    for name, t in (
        ("F", F),
        ("G", G),
        ("alpha", alpha),
        ("best", best),
        ("res", res),
        ("best_res", best_res),
        ("restart", restart),
    ):
        if t is not None and not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous")
    if not isinstance(tau, (int, float)) or not tau == tau or abs(tau) == float("inf"):
        raise ValueError(f"tau must be a finite float, got {tau!r}")
    if k < 0:
        raise ValueError(f"iteration index k must be >= 0, got {k}")


def anderson_record(
    fz: torch.Tensor,
    z: torch.Tensor,
    F: torch.Tensor,
    G: torch.Tensor,
    gram: torch.Tensor,
    k: int,
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pass 1 of iteration k. Writes F[:, k % m] = fz, G[:, k % m] = fz - z and the Gram row/column
    of that slot (in place). Returns (abs_res, rel_res), each (B,) float32."""
    _check_record_args(fz, z, F, G, gram, k)
    unsupported = None if F.dtype in _TRITON_DTYPES else f"state dtype {F.dtype}"
    path = resolve_backend(backend, F.device, op="anderson_record", unsupported=unsupported)
    if path == "torch":
        return _record_torch(fz, z, F, G, gram, k)
    return _record_triton(fz, z, F, G, gram, k)


def anderson_mix(
    F: torch.Tensor,
    G: torch.Tensor,
    alpha: torch.Tensor,
    tau: float,
    *,
    k: int,
    res: torch.Tensor,
    best: torch.Tensor,
    best_res: torch.Tensor,
    restart: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Pass 2 of iteration k. alpha: (B, m) float32 summing to 1, zero on unused slots (its entry on
    the newest slot k % m is implied by the others and not read). Returns z_next (B, n) in the state
    dtype: the mix, or where ``restart`` (B,) bool is set the best iterate as it was before this call
    (the safeguard's plain step from it). Where res < best_res: best <- F[:, k % m] and best_res <- res
    (in place; a NaN residual never replaces the best iterate)."""
    _check_mix_args(F, G, alpha, tau, k, res, best, best_res, restart)
    unsupported = None if F.dtype in _TRITON_DTYPES else f"state dtype {F.dtype}"
    path = resolve_backend(backend, F.device, op="anderson_mix", unsupported=unsupported)
    if path == "torch":
        return _mix_torch(F, G, alpha, tau, k, res, best, best_res, restart)
    return _mix_triton(F, G, alpha, tau, k, res, best, best_res, restart)


# ---------------------------------------------------------------- PyTorch reference


def _record_torch(fz, z, F, G, gram, k):
    m = F.shape[1]
    slot, valid = k % m, min(k + 1, m)
    F[:, slot].copy_(fz)
    G[:, slot].copy_(fz - z)
    g = G[:, slot].float()  # (B, n)
    row = torch.bmm(G[:, :valid].float(), g.unsqueeze(2)).squeeze(2)  # (B, valid)
    gram[:, slot, :valid] = row
    gram[:, :valid, slot] = row
    abs_res = g.norm(dim=1)
    rel_res = abs_res / (F[:, slot].float().norm(dim=1) + REL_EPS)
    return abs_res, rel_res


def _mix_torch(F, G, alpha, tau, k, res, best, best_res, restart):
    slot = k % F.shape[1]
    acc = torch.float64 if F.dtype == torch.float64 else torch.float32
    a = alpha.to(acc).unsqueeze(1)
    # Relative to the newest slot: its own weight multiplies F_s - F_s = 0, so alpha's rounding (its
    # sum is 1 only to fp32 precision) moves z by a fraction of the differences, never of z itself.
    f_slot = F[:, slot].to(acc)
    mixed = f_slot + torch.bmm(a, F - f_slot.unsqueeze(1)).squeeze(1)  # (B, n), promoted to acc
    if tau != 1.0:
        g_slot = G[:, slot].to(acc)
        mixed -= (1.0 - tau) * (g_slot + torch.bmm(a, G - g_slot.unsqueeze(1)).squeeze(1))
    if restart is not None:
        mixed = torch.where(restart.unsqueeze(1), best.to(acc), mixed)
    improved = res < best_res
    best.copy_(torch.where(improved.unsqueeze(1), F[:, slot], best))
    best_res.copy_(torch.where(improved, res, best_res))
    return mixed.to(F.dtype)


# ---------------------------------------------------------------- Triton kernels
# bf16/fp16 values are upcast to fp32 right after every load (the interpreter computes wrongly on
# bf16 otherwise); g is rounded to the state dtype before it enters any dot, as the torch path does.

# Ring positions change every iteration: not specialising on them (Triton would on the value 1 and on
# multiples of 16) keeps one compiled kernel per configuration in aot_specs(). n stays specialised,
# so 16-divisible sizes get 16-byte loads.
_RUNTIME_INTS = ("m", "slot", "valid", "nchunks")


@jit
def _round_to(x, dtype: tl.constexpr):
    """fp32 -> state dtype, rounding to nearest even. bf16 is rounded with integer ops (what the
    hardware conversion does): the interpreter's own fp32 -> bf16 cast truncates."""
    if dtype == tl.bfloat16:
        u = x.to(tl.uint32, bitcast=True)
        hi = tl.where(x != x, (u >> 16) | 0x40, (u + 0x7FFF + ((u >> 16) & 1)) >> 16)  # NaN stays NaN
        return hi.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    return x.to(dtype)


@jit(do_not_specialize=_RUNTIME_INTS)
def _record_stream_kernel(
    fz_ptr, z_ptr, F_ptr, G_ptr, part_ptr, n, m, slot, valid, ROWS: tl.constexpr, BLOCK: tl.constexpr
):
    b = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    nchunks = tl.num_programs(1)
    offs = chunk * BLOCK + tl.arange(0, BLOCK)
    inside = offs < n
    fz = tl.load(fz_ptr + b * n + offs, mask=inside, other=0.0)
    z = tl.load(z_ptr + b * n + offs, mask=inside, other=0.0)
    g = _round_to(fz.to(tl.float32) - z.to(tl.float32), F_ptr.dtype.element_ty)
    hist = b * m * n  # start of sample b's ring
    tl.store(F_ptr + hist + slot * n + offs, fz, mask=inside)
    tl.store(G_ptr + hist + slot * n + offs, g, mask=inside)
    g32 = g.to(tl.float32)[None, :]
    fz32 = fz.to(tl.float32)[None, :]
    # One tile, one reduction: rows 0..m-1 are the history slots, row m yields ||fz||^2.
    rows = tl.arange(0, ROWS)[:, None]
    stored = (rows < valid) & (rows != slot) & inside[None, :]  # the new g is in registers already
    tile = tl.load(G_ptr + hist + rows * n + offs[None, :], mask=stored, other=0.0).to(tl.float32)
    tile = tl.where(rows == slot, g32, tl.where(rows == m, fz32, tile))
    sums = tl.sum(tile * tl.where(rows == m, fz32, g32), axis=1)  # <G_i, g> for i < valid; ||fz||^2
    r = tl.arange(0, ROWS)
    tl.store(part_ptr + (b * nchunks + chunk) * (m + 1) + r, sums, mask=(r < valid) | (r == m))


@jit(do_not_specialize=_RUNTIME_INTS)
def _record_finish_kernel(
    part_ptr, gram_ptr, abs_ptr, rel_ptr, nchunks, m, slot, valid, rel_eps, ROWS: tl.constexpr, COLS: tl.constexpr
):
    b = tl.program_id(0).to(tl.int64)
    part = part_ptr + b * nchunks * (m + 1)
    gram = gram_ptr + b * m * m
    rows = tl.arange(0, ROWS)
    gg = 0.0
    ff = 0.0
    for c0 in range(0, m + 1, COLS):
        cols = c0 + tl.arange(0, COLS)
        used = (cols < valid) | (cols == m)  # Gram dots of valid slots, ||fz||^2
        acc = tl.zeros([COLS], dtype=tl.float32)
        for r0 in range(0, nchunks, ROWS):  # fixed order: deterministic sums
            r = r0 + rows
            tile = tl.load(
                part + r[:, None] * (m + 1) + cols[None, :], mask=(r[:, None] < nchunks) & used[None, :], other=0.0
            )
            acc += tl.sum(tile, axis=0)
        in_row = cols < valid
        tl.store(gram + slot * m + cols, acc, mask=in_row)
        tl.store(gram + cols * m + slot, acc, mask=in_row)
        gg += tl.sum(tl.where(cols == slot, acc, 0.0), axis=0)
        ff += tl.sum(tl.where(cols == m, acc, 0.0), axis=0)
    abs_res = tl.sqrt(gg)
    tl.store(abs_ptr + b, abs_res)
    tl.store(rel_ptr + b, abs_res / (tl.sqrt(ff) + rel_eps))


@jit(do_not_specialize=_RUNTIME_INTS)
def _mix_kernel(
    F_ptr,
    G_ptr,
    alpha_ptr,
    res_ptr,
    best_ptr,
    best_res_ptr,
    restart_ptr,
    ticket_ptr,
    out_ptr,
    n,
    m,
    slot,
    valid,
    one_minus_tau,
    DAMPED: tl.constexpr,
    BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    offs = chunk * BLOCK + tl.arange(0, BLOCK)
    inside = offs < n
    hist = b * m * n
    # Relative to the newest slot, as the torch path: z = F_s + sum_{i != s} alpha_i (F_i - F_s).
    f_slot = tl.load(F_ptr + hist + slot * n + offs, mask=inside, other=0.0).to(tl.float32)
    mixed = tl.zeros([BLOCK], dtype=tl.float32)
    mixed_g = tl.zeros([BLOCK], dtype=tl.float32)
    g_slot = tl.zeros([BLOCK], dtype=tl.float32)
    if DAMPED:
        g_slot = tl.load(G_ptr + hist + slot * n + offs, mask=inside, other=0.0).to(tl.float32)
    for i in range(valid):
        if i != slot:
            a = tl.load(alpha_ptr + b * m + i)
            fi = tl.load(F_ptr + hist + i * n + offs, mask=inside, other=0.0).to(tl.float32)
            mixed += a * (fi - f_slot)
            if DAMPED:
                gi = tl.load(G_ptr + hist + i * n + offs, mask=inside, other=0.0).to(tl.float32)
                mixed_g += a * (gi - g_slot)
    mixed += f_slot
    if DAMPED:
        mixed -= one_minus_tau * (g_slot + mixed_g)

    res = tl.load(res_ptr + b)
    best_res = tl.load(best_res_ptr + b)
    improved = res < best_res  # False for a NaN residual
    # (compared at full width: the interpreter cannot AND a scalar mask into a vector one)
    restart = (tl.zeros([BLOCK], dtype=tl.int32) + tl.load(restart_ptr + b).to(tl.int32)) != 0
    # A restarted sample steps to its best f-value, read here before this program may overwrite it.
    best_old = tl.load(best_ptr + b * n + offs, mask=inside & restart, other=0.0).to(tl.float32)
    mixed = tl.where(restart, best_old, mixed)
    tl.store(out_ptr + b * n + offs, _round_to(mixed, out_ptr.dtype.element_ty), mask=inside)
    copy = inside & (tl.zeros([BLOCK], dtype=tl.float32) + res < best_res)
    tl.store(best_ptr + b * n + offs, f_slot.to(best_ptr.dtype.element_ty), mask=copy)
    # best_res may only change after every program of sample b has read it: the last to arrive
    # writes it and re-arms the per-sample ticket for the next launch.
    tl.debug_barrier()
    ticket = tl.atomic_add(ticket_ptr + b, 1)
    last = ticket == tl.num_programs(1) - 1
    tl.store(best_res_ptr + b, tl.where(improved, res, best_res), mask=last)
    tl.store(ticket_ptr + b, 0, mask=last)


# ---------------------------------------------------------------- launchers


def _stream_config(m: int) -> tuple[int, int]:
    """(ROWS, BLOCK) of the record stream kernel: a (m + 1 rounded up to a power of two) x BLOCK tile
    of 4096 elements, 32 fp32 registers per thread at 4 warps, whatever the history size."""
    rows = triton.next_power_of_2(m + 1)
    return rows, max(TILE // rows, 128)


def _record_triton(fz, z, F, G, gram, k):
    B, m, n = F.shape
    slot, valid = k % m, min(k + 1, m)
    rows, block = _stream_config(m)
    nchunks = triton.cdiv(n, block)
    partials = torch.empty((B, nchunks, m + 1), dtype=torch.float32, device=F.device)
    abs_res = torch.empty(B, dtype=torch.float32, device=F.device)
    rel_res = torch.empty(B, dtype=torch.float32, device=F.device)
    _record_stream_kernel[(B, nchunks)](
        fz, z, F, G, partials, n, m, slot, valid, ROWS=rows, BLOCK=block, num_warps=NUM_WARPS
    )
    _record_finish_kernel[(B,)](
        partials,
        gram,
        abs_res,
        rel_res,
        nchunks,
        m,
        slot,
        valid,
        REL_EPS,
        ROWS=FINISH_ROWS,
        COLS=FINISH_COLS,
        num_warps=NUM_WARPS,
    )
    return abs_res, rel_res


_tickets: dict[tuple, torch.Tensor] = {}


def _ticket_buffer(device: torch.device, B: int) -> torch.Tensor:
    """Per-sample int32 arrival counters of the mix kernel, all zero between launches (the last
    program re-arms them). One buffer per device and stream, grown when a larger batch comes."""
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    key = (device.type, device.index, stream)
    buf = _tickets.get(key)
    if buf is None or buf.numel() < B:
        buf = torch.zeros(max(B, 64), dtype=torch.int32, device=device)
        _tickets[key] = buf
    return buf


def _mix_triton(F, G, alpha, tau, k, res, best, best_res, restart):
    B, m, n = F.shape
    out = torch.empty((B, n), dtype=F.dtype, device=F.device)
    tickets = _ticket_buffer(F.device, B)
    if restart is None:
        restart = torch.zeros(B, dtype=torch.bool, device=F.device)
    _mix_kernel[(B, triton.cdiv(n, BLOCK))](
        F,
        G,
        alpha,
        res,
        best,
        best_res,
        restart.view(torch.int8),
        tickets,
        out,
        n,
        m,
        k % m,
        min(k + 1, m),
        1.0 - tau,
        DAMPED=tau != 1.0,
        BLOCK=BLOCK,
        num_warps=NUM_WARPS,
    )
    return out


# ---------------------------------------------------------------- device-memory traffic (docs/anderson.md)


def traffic_floor(B: int, m: int, n: int, k: int, dtype: torch.dtype, tau: float = 1.0) -> int:
    """Least device-memory bytes of iteration k for any implementation of this contract, every
    sample improving its best: read fz and z, write them to the rings, read the other valid G_i for
    the Gram row, then (after the solve, so in a second pass) read every valid F_i (and G_i if
    tau != 1), write z_next and the best iterate. (2v + 5) n elements per sample, v = min(k+1, m)."""
    v = min(k + 1, m)
    elements = 2 + 2 + (v - 1) + v * (1 if tau == 1.0 else 2) + 1 + 1
    return B * n * elements * torch.finfo(dtype).bits // 8


def triton_traffic(
    B: int,
    m: int,
    n: int,
    k: int,
    dtype: torch.dtype,
    tau: float = 1.0,
    improved: int | None = None,
    restarted: int = 0,
) -> Traffic:
    """Bytes and launches of the three kernels for iteration k, counting every lane of every load and
    store they issue (no cache reuse assumed), with ``improved`` samples (default: all) copying their
    best iterate and ``restarted`` samples reading it instead of mixing. Checked against an
    instrumented interpreter run in tests/test_ops_anderson.py."""
    s = torch.finfo(dtype).bits // 8
    v, improved = min(k + 1, m), B if improved is None else improved
    chunks_record = -(-n // _stream_config(m)[1])
    chunks_mix = -(-n // BLOCK)
    partials = B * chunks_record * (v + 1) * 4  # fp32 scratch, both ways
    read = B * n * s * (2 + (v - 1)) + partials  # record: fz, z, other G_i
    written = B * n * s * 2 + partials + B * (2 * v + 2) * 4  # F, G slots; Gram row+col, norms
    hist = v * (1 if tau == 1.0 else 2)
    read += B * n * s * hist + B * chunks_mix * (v - 1 + 2 + 1) * 4  # mix: F_i (G_i); alpha, res, ticket
    read += B * chunks_mix + restarted * n * s  # restart flags; best where set
    written += B * n * s + improved * n * s + B * chunks_mix * 4 + B * 2 * 4  # z_next, best; tickets, best_res
    return Traffic(bytes_read=read, bytes_written=written, launches=3)


# ---------------------------------------------------------------- ahead-of-time compile specs

_PTR = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16"}


def aot_specs():
    """Every kernel configuration the launchers above choose for history sizes m = 1..8: the record
    stream kernel per state dtype and tile shape, the mix kernel per state dtype, damped or not, and
    the finish kernel once (it only sees fp32). Values: every ring position (slot, valid) of every m,
    at the state sizes n = tokens x D of GET (m, slot, valid and nchunks are not specialised on)."""
    sizes = [t * D for t in GET_TOKENS for D in GET_DIMS]
    launches = [(n, 8, 0, 1) for n in sizes] + [
        (sizes[0], m, k % m, min(k + 1, m)) for m in range(1, 9) for k in range(m + 1)
    ]
    specs = []
    for dtype, ptr in _PTR.items():
        name = str(dtype).removeprefix("torch.")
        for n, m, slot, valid in launches:
            rows, block = _stream_config(m)
            specs.append(
                AotSpec(
                    name=f"anderson_record_stream[{name},rows={rows},block={block}]",
                    kernel=_record_stream_kernel,
                    signature={
                        "fz_ptr": ptr,
                        "z_ptr": ptr,
                        "F_ptr": ptr,
                        "G_ptr": ptr,
                        "part_ptr": "*fp32",
                        "n": "i32",
                        "m": "i32",
                        "slot": "i32",
                        "valid": "i32",
                        "ROWS": "constexpr",
                        "BLOCK": "constexpr",
                    },
                    constexprs={"ROWS": rows, "BLOCK": block},
                    num_warps=NUM_WARPS,
                    values={"n": n, "m": m, "slot": slot, "valid": valid},
                )
            )
        for damped in (False, True):
            specs += [
                AotSpec(
                    name=f"anderson_mix[{name},damped={damped}]",
                    kernel=_mix_kernel,
                    signature={
                        "F_ptr": ptr,
                        "G_ptr": ptr,
                        "alpha_ptr": "*fp32",
                        "res_ptr": "*fp32",
                        "best_ptr": ptr,
                        "best_res_ptr": "*fp32",
                        "restart_ptr": "*i8",
                        "ticket_ptr": "*i32",
                        "out_ptr": ptr,
                        "n": "i32",
                        "m": "i32",
                        "slot": "i32",
                        "valid": "i32",
                        "one_minus_tau": "fp32",
                        "DAMPED": "constexpr",
                        "BLOCK": "constexpr",
                    },
                    constexprs={"DAMPED": damped, "BLOCK": BLOCK},
                    num_warps=NUM_WARPS,
                    values={"n": n, "m": m, "slot": slot, "valid": valid},
                )
                for n, m, slot, valid in launches
            ]
    specs += [
        AotSpec(
            name="anderson_record_finish",
            kernel=_record_finish_kernel,
            signature={
                "part_ptr": "*fp32",
                "gram_ptr": "*fp32",
                "abs_ptr": "*fp32",
                "rel_ptr": "*fp32",
                "nchunks": "i32",
                "m": "i32",
                "slot": "i32",
                "valid": "i32",
                "rel_eps": "fp32",
                "ROWS": "constexpr",
                "COLS": "constexpr",
            },
            constexprs={"ROWS": FINISH_ROWS, "COLS": FINISH_COLS},
            num_warps=NUM_WARPS,
            values={"nchunks": triton.cdiv(n, _stream_config(m)[1]), "m": m, "slot": slot, "valid": valid},
        )
        for n, m, slot, valid in launches
    ]
    yield from distinct_specializations(specs)
