"""Turn a pytest-benchmark JSON into the markdown tables and plot of docs/benchmarks.md.

    pytest benchmarks/ --benchmark-only --benchmark-json bench.json
    python benchmarks/report.py bench.json --plot docs/benchmarks_inference.png > tables.md

Every ratio is between rows of the same JSON, i.e. measured in one run. The run's summary (the lines
conftest.py printed at the end, saved under "getkern_summary") comes first; counted-only answers
(kernel traffic without a GPU, memory ratios) live only there, since nothing was timed for them.
Groups are the questions the benchmarks ask (benchmark.group); JSON files written before the groups
were renamed ("inference", "head-to-head", "training-memory") read the same.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

INFERENCE = ("inference per image", "inference")
HEAD_TO_HEAD = ("GET-B/2 (6 iterations) vs ViT-L/2", "head-to-head")
TRAINING_MEMORY = ("training memory per image", "training-memory")


def in_group(row: dict, prefixes: tuple[str, ...]) -> bool:
    g = row["group"]
    return (
        any(g == p or g.startswith(p + " ") or g.startswith(p + ":") for p in prefixes)
        and g != "training-memory-ratios"
    )


def per_image_seconds(row: dict) -> float:
    return row["stats"]["median"] / row["extra_info"]["batch"]


def inference_tables(rows: list[dict]) -> list[tuple[str, str]]:
    """One table per inference group (one per dtype on a GPU)."""
    groups = defaultdict(list)
    for r in rows:
        if in_group(r, INFERENCE):
            groups[r["group"]].append(r)
    out = []
    for group, grows in groups.items():
        vit_l = next((r for r in grows if r["extra_info"]["model"] == "ViT-L/2"), None)
        t_ref = per_image_seconds(vit_l) if vit_l else None
        lines = [
            "| model | solver | iters | ms/image | images/s | GFLOP/image | ns/kFLOP | time vs ViT-L/2 |",
            "|---|---|---|---|---|---|---|---|",
        ]

        def key(r):
            return (r["extra_info"]["model"], r["extra_info"]["solver"] or "", r["extra_info"]["iters"] or 0)

        for r in sorted(grows, key=key):
            e, t = r["extra_info"], per_image_seconds(r)
            gflop = e["flops_per_image"] / 1e9
            ratio = f"{t / t_ref:.2f}x" if t_ref else "-"
            lines.append(
                f"| {e['model']} | {e['solver'] or '-'} | {e['iters'] or '-'} | {1e3 * t:.1f} | "
                f"{1 / t:.2f} | {gflop:.1f} | {1e3 * t / gflop:.2f} | {ratio} |"
            )
        e = grows[0]["extra_info"]
        size = e.get("image_size", 32)
        where = f"batch {e['batch']}, {size}x{size}, {e.get('clock', 'wall clock')}"
        out.append((f"{group} ({where})", "\n".join(lines)))
    return out


def extra_info_table(rows: list[dict], prefixes: tuple[str, ...], columns: list[str]) -> str:
    rows = [r for r in rows if in_group(r, prefixes)]
    if not rows:
        return ""

    def fmt(v):
        if isinstance(v, float):
            return f"{v / 2**20:.1f} MiB" if v > 1e5 else f"{v:.3g}"
        return "-" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " | step s |", "|" + "---|" * (len(columns) + 1)]
    for r in rows:
        e = r["extra_info"]
        lines.append("| " + " | ".join(fmt(e.get(c)) for c in columns) + f" | {r['stats']['median']:.2f} |")
    return "\n".join(lines)


def memory_ratios(rows: list[dict]) -> dict:
    """{f"{grad}_{kind}": {vs_unrolled6, vs_vit_l, flatness_12_over_2}} from the training-memory rows."""
    legacy = next((r for r in rows if r["group"] == "training-memory-ratios"), None)
    if legacy:
        return legacy["extra_info"]
    per = {}
    for r in rows:
        if in_group(r, TRAINING_MEMORY):
            e = r["extra_info"]
            per[(e["model"], e["grad"], e["iters"])] = {
                "retained": e["retained_bytes_per_image"],
                "saved": e["saved_bytes_per_image"],
            }
    base, vit_l = per.get(("GET-B/2", "unrolled", 6)), per.get(("ViT-L/2", None, None))
    ratios = {}
    if base is None or vit_l is None:
        return ratios
    for grad in ("phantom", "implicit"):
        if not all(("GET-B/2", grad, i) in per for i in (2, 6, 12)):
            continue
        for kind in ("retained", "saved"):
            v = [per[("GET-B/2", grad, i)][kind] for i in (2, 6, 12)]
            ratios[f"{grad}_{kind}"] = dict(
                vs_unrolled6=v[1] / base[kind], vs_vit_l=v[1] / vit_l[kind], flatness_12_over_2=v[2] / v[0]
            )
    return ratios


def plot_inference(rows: list[dict], path: str, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in dict.fromkeys(r["group"] for r in rows if in_group(r, INFERENCE))]
    if not groups:
        return
    group = next((g for g in groups if "fp32" in g), groups[0])  # one dtype a plot: fp32 if there
    series = defaultdict(list)
    vits = []
    for r in rows:
        if r["group"] != group:
            continue
        e = r["extra_info"]
        if e["iters"] is None:
            vits.append((e["model"], per_image_seconds(r)))
        else:
            series[(e["model"], e["solver"])].append((e["iters"], per_image_seconds(r)))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {m: f"C{i}" for i, m in enumerate(sorted({m for m, _ in series}))}  # one colour a model
    for (model, solver), pts in sorted(series.items()):
        pts.sort()
        ax.plot(
            [p[0] for p in pts],
            [1e3 * p[1] for p in pts],
            marker="o",
            color=colors[model],
            linestyle="-" if solver == "fixed_point" else "--",
            label=f"{model} {solver}",
        )
    for model, t in vits:
        ax.axhline(1e3 * t, color="gray", linewidth=0.8)
        ax.annotate(model, (8.05, 1e3 * t), fontsize=7, va="center")
    ax.set_xlabel("solver iterations (f-evaluations)")
    ax.set_ylabel("ms per image")
    ax.set_yscale("log")
    dtype = group.split(":")[0].removeprefix("inference per image").strip() or "fp32"
    ax.set_title(f"GET vs unrolled ViTs, inference ({device}, {dtype}, measured in one run)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json")
    p.add_argument("--plot", help="write the inference plot (PNG) here")
    args = p.parse_args(argv)
    data = json.load(open(args.json))
    rows = data["benchmarks"]
    for r in rows:
        r["group"] = r["group"] or "ungrouped"
    m = data["machine_info"]
    print(
        f"Machine: {m.get('cpu', {}).get('brand_raw', m.get('processor'))}, "
        f"{m.get('torch_threads')} torch threads, torch {m.get('torch')}, GPU: {m.get('cuda')}"
        + (f", fp32 matmuls: {m['fp32_matmul']}" if m.get("fp32_matmul") else "")
        + "\n"
    )
    summary = data.get("getkern_summary", {}).get("lines", [])
    if summary:
        print("### Summary (one line per question)\n")
        print("\n".join(f"- {line}" for line in summary) + "\n")
    tables = inference_tables(rows)
    tables += [
        (
            "GET-B/2 vs ViT-L/2, timed interleaved",
            extra_info_table(
                rows,
                HEAD_TO_HEAD,
                [
                    "dtype",
                    "batch",
                    "get_s_per_image",
                    "vit_l_s_per_image",
                    "time_ratio_get_over_vit_l",
                    "flop_ratio_get_over_vit_l",
                ],
            ),
        ),
        (
            "Training memory per image",
            extra_info_table(
                rows,
                TRAINING_MEMORY,
                [
                    "model",
                    "grad",
                    "iters",
                    "image_size",
                    "retained_bytes_per_image",
                    "saved_bytes_per_image",
                    "peak_bytes_per_image",
                ],
            ),
        ),
    ]
    for title, table in tables:
        if table:
            print(f"### {title}\n\n{table}\n")
    ratios = memory_ratios(rows)
    if ratios:
        print(
            "### Training memory ratios (activation bytes retained / saved for backward)\n\n"
            "| grad, measure | vs unrolled-6 | vs ViT-L/2 | 12 vs 2 iterations |\n|---|---|---|---|"
        )
        for grad, v in ratios.items():
            print(f"| {grad} | {v['vs_unrolled6']:.3f} | {v['vs_vit_l']:.3f} | {v['flatness_12_over_2']:.3f} |")
        print()
    known = INFERENCE + HEAD_TO_HEAD + TRAINING_MEMORY
    others = sorted({r["group"] for r in rows if not in_group(r, known) and r["group"] != "training-memory-ratios"})
    for group in others:
        print(f"### {group}\n")
        for r in (r for r in rows if r["group"] == group):
            print(f"- `{r['name']}`: median {r['stats']['median'] * 1e3:.3f} ms; {json.dumps(r['extra_info'])}")
        print()
    if args.plot:
        plot_inference(rows, args.plot, "GPU: " + m["cuda"] if m.get("cuda") else "CPU")


if __name__ == "__main__":
    main()
