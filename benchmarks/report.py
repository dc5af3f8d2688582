"""Turn a pytest-benchmark JSON into the markdown tables and plot of docs/benchmarks.md.

    pytest benchmarks/ --benchmark-only --benchmark-json bench.json
    python benchmarks/report.py bench.json --plot docs/benchmarks_inference.png > tables.md

Every ratio is between rows of the same JSON, i.e. measured in one run.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict


def per_image_seconds(row: dict) -> float:
    return row["stats"]["median"] / row["extra_info"]["batch"]


def inference_table(rows: list[dict]) -> str:
    rows = [r for r in rows if r["group"] == "inference"]
    if not rows:
        return ""
    vit_l = next((r for r in rows if r["extra_info"]["model"] == "ViT-L/2"), None)
    t_ref = per_image_seconds(vit_l) if vit_l else None
    lines = ["| model | solver | iters | ms/image | images/s | GFLOP/image | ns/kFLOP | time vs ViT-L/2 |",
             "|---|---|---|---|---|---|---|---|"]
    key = lambda r: (r["extra_info"]["model"], r["extra_info"]["solver"] or "", r["extra_info"]["iters"] or 0)  # noqa
    for r in sorted(rows, key=key):
        e, t = r["extra_info"], per_image_seconds(r)
        gflop = e["flops_per_image"] / 1e9
        ratio = f"{t / t_ref:.2f}x" if t_ref else "-"
        lines.append(f"| {e['model']} | {e['solver'] or '-'} | {e['iters'] or '-'} | {1e3 * t:.1f} | "
                     f"{1 / t:.2f} | {gflop:.1f} | {1e3 * t / gflop:.2f} | {ratio} |")
    return "\n".join(lines)


def extra_info_table(rows: list[dict], group: str, columns: list[str]) -> str:
    rows = [r for r in rows if r["group"] == group]
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


def plot_inference(rows: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = defaultdict(list)
    vits = []
    for r in rows:
        if r["group"] != "inference":
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
        ax.plot([p[0] for p in pts], [1e3 * p[1] for p in pts], marker="o", color=colors[model],
                linestyle="-" if solver == "fixed_point" else "--", label=f"{model} {solver}")
    for model, t in vits:
        ax.axhline(1e3 * t, color="gray", linewidth=0.8)
        ax.annotate(model, (8.05, 1e3 * t), fontsize=7, va="center")
    ax.set_xlabel("solver iterations (f-evaluations)")
    ax.set_ylabel("ms per image")
    ax.set_yscale("log")
    ax.set_title("GET vs unrolled ViTs, inference (CPU, measured in one run)")
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
    print(f"Machine: {m.get('cpu', {}).get('brand_raw', m.get('processor'))}, "
          f"{m.get('torch_threads')} torch threads, torch {m.get('torch')}, GPU: {m.get('cuda')}\n")
    for title, table in [
        ("Inference", inference_table(rows)),
        ("GET-B/2 vs ViT-L/2", extra_info_table(rows, "head-to-head", [
            "batch", "get_s_per_image", "vit_l_s_per_image", "time_ratio_get_over_vit_l",
            "flop_ratio_get_over_vit_l"])),
        ("Training memory per image", extra_info_table(rows, "training-memory", [
            "model", "grad", "iters", "image_size", "retained_bytes_per_image", "saved_bytes_per_image",
            "peak_bytes_per_image"])),
    ]:
        if table:
            print(f"### {title}\n\n{table}\n")
    ratios = [r for r in rows if r["group"] == "training-memory-ratios"]
    for r in ratios:
        print("### Training memory ratios (activation bytes retained / saved for backward)\n\n"
              "| grad, measure | vs unrolled-6 | vs ViT-L/2 | 12 vs 2 iterations |\n|---|---|---|---|")
        for grad, v in r["extra_info"].items():
            print(f"| {grad} | {v['vs_unrolled6']:.3f} | {v['vs_vit_l']:.3f} | {v['flatness_12_over_2']:.3f} |")
        print()
    others = sorted({r["group"] for r in rows} - {"inference", "head-to-head", "training-memory",
                                                   "training-memory-ratios"})
    for group in others:
        print(f"### {group}\n")
        for r in (r for r in rows if r["group"] == group):
            print(f"- `{r['name']}`: median {r['stats']['median'] * 1e3:.3f} ms; {json.dumps(r['extra_info'])}")
        print()
    if args.plot:
        plot_inference(rows, args.plot)


if __name__ == "__main__":
    main()
