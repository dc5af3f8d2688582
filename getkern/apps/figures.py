"""Labelled figures of several image grids side by side: a title above each panel and labels for its rows
(and columns), so that a person sees what is where (the demo's teacher-vs-GET comparison, the guidance
demo's rows of w). The grids themselves come from :func:`getkern.images.make_grid`.

Compose a labelled figure from grid PNGs already written (how docs/objectives_samples.png is made):

    python -m getkern.apps.figures --out fig.png --cols 2 \
        --panel "EDM teacher (35 evaluations)=runs/demo/samples_teacher.png" \
        --panel "GET (1 evaluation)=runs/demo/samples_get.png" --row-labels "class 0" ... "class 9"

matplotlib (getkern[demo]) is imported only when a figure is drawn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from getkern.checkpoint import atomic_write


def labelled_figure(
    panels,
    *,
    row_labels=None,
    col_labels=None,
    title: str | None = None,
    ncols: int | None = None,
    pixels_per_inch: float = 100.0,
):
    """A matplotlib figure of uint8 grids ``panels`` = [(title, array (H, W) or (H, W, 3)), ...], laid out in
    ``ncols`` columns (default: all in one row), each shown pixel for pixel (nearest neighbour) with its
    title above; ``row_labels`` on the left of each row of panels and ``col_labels`` under each panel,
    spaced evenly over the grid's rows / columns of images (as :func:`getkern.images.make_grid` lays them out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("labelled_figure needs at least one panel")
    ncols = ncols or len(panels)
    nrows = -(-len(panels) // ncols)
    height = max(g.shape[0] for _, g in panels)
    width = max(g.shape[1] for _, g in panels)
    longest = max((len(str(t)) for t in row_labels or []), default=0)
    left = 0.15 + 0.07 * longest  # inches for the row labels
    top = 0.12 + 0.17 * max(str(t).count("\n") + 1 for t, _ in panels) + (0.25 if title else 0)
    bottom = 0.3 if col_labels else 0.1
    cell_w, cell_h = width / pixels_per_inch, height / pixels_per_inch
    fig_w = left + ncols * cell_w + (ncols - 1) * 0.15 + 0.1
    fig_h = top + nrows * (cell_h + bottom) + (nrows - 1) * 0.1
    fig = plt.figure(figsize=(fig_w, fig_h))
    for i, (name, grid) in enumerate(panels):
        r, c = divmod(i, ncols)
        x0 = left + c * (cell_w + 0.15)
        y0 = fig_h - top - r * (cell_h + bottom + 0.1) - cell_h
        ax = fig.add_axes([x0 / fig_w, y0 / fig_h, cell_w / fig_w, cell_h / fig_h])
        ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.tick_params(length=0, labelsize=7)
        for spine in ax.spines.values():
            spine.set_visible(False)
        h, w = grid.shape[:2]
        if row_labels and c == 0:
            ax.set_yticks([(k + 0.5) * h / len(row_labels) - 0.5 for k in range(len(row_labels))], list(row_labels))
        else:
            ax.set_yticks([])
        if col_labels:
            ax.set_xticks([(k + 0.5) * w / len(col_labels) - 0.5 for k in range(len(col_labels))], list(col_labels))
        else:
            ax.set_xticks([])
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.12 / fig_h, va="top")
    return fig


def save_labelled(path, panels, **kwargs) -> Path:
    """Write :func:`labelled_figure` to a PNG file (atomically) and return its path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig = labelled_figure(panels, **kwargs)
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)
    return path


def _read_grid(path: Path) -> np.ndarray:
    import matplotlib.image

    image = matplotlib.image.imread(path)  # PNG: float in [0, 1]; grey grids are saved as RGB(A)
    if image.dtype != np.uint8:
        image = (image * 255).round().astype(np.uint8)
    if image.ndim == 3:
        image = image[..., :3]
        if (image == image[..., :1]).all():
            image = image[..., 0]
    return image


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="labelled figure of grid PNGs (see the module docstring)")
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    p.add_argument(
        "--panel",
        action="append",
        required=True,
        metavar="TITLE=PNG",
        help="a panel: its title ('\\n' for a line break), '=', a grid PNG; repeat in order",
    )
    p.add_argument("--cols", type=int, default=None, help="panels per row (default: all in one row)")
    p.add_argument("--row-labels", nargs="+", default=None, help="labels of the grids' rows of images")
    p.add_argument("--col-labels", nargs="+", default=None, help="labels of the grids' columns of images")
    p.add_argument("--title", default=None, help="a title above everything")
    args = p.parse_args(argv)
    panels = []
    for spec in args.panel:
        name, sep, file = spec.rpartition("=")
        if not sep or not name:
            p.error(f"--panel {spec!r}: expected TITLE=PNG")
        if not Path(file).is_file():
            p.error(f"--panel {spec!r}: {file} does not exist")
        panels.append((name.replace("\\n", "\n"), _read_grid(Path(file))))
    save_labelled(
        args.out, panels, row_labels=args.row_labels, col_labels=args.col_labels, title=args.title, ncols=args.cols
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
