"""Figures a person looks at say what is where: the labelled grid figure (titles per panel, row and column
labels), the demo's teacher-vs-GET comparison, the guidance demo's rows of w, and the command that
composes labelled figures from grid PNGs; all at toy size."""

import numpy as np
import pytest
import torch

from getkern.apps import figures
from getkern.apps.figures import labelled_figure, main
from getkern.images import make_grid, save_grid

PNG = b"\x89PNG\r\n\x1a\n"


def _grid(rows, seed, cols=10):
    images = torch.rand(rows * cols, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return make_grid(images, nrow=cols, scale=4)


def _ticks(labels):
    return [t.get_text() for t in labels]


def test_labelled_figure_titles_rows_and_columns():
    import matplotlib.pyplot as plt

    fig = labelled_figure(
        [("teacher", _grid(3, 0)), ("GET", _grid(3, 1))],
        row_labels=["w = 0", "w = 1", "w = 2"],
        col_labels=[str(k) for k in range(10)],
        title="same noise",
    )
    left, right = fig.axes
    assert left.get_title() == "teacher" and right.get_title() == "GET"
    assert _ticks(left.get_yticklabels()) == ["w = 0", "w = 1", "w = 2"] and not right.get_yticks().size
    assert _ticks(right.get_xticklabels()) == [str(k) for k in range(10)]
    # labels sit on the rows of images: 3 rows of 33 pixels (32 + 1 separator) in a 100-pixel grid
    np.testing.assert_allclose(left.get_yticks(), [(k + 0.5) * 100 / 3 - 0.5 for k in range(3)])
    assert left.get_ylim()[0] > left.get_yticks().max()  # imshow: row 0 at the top
    assert fig._suptitle.get_text() == "same noise"
    # panels side by side, the left one left of the right one, neither overlapping
    assert left.get_position().x1 < right.get_position().x0
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one panel"):
        labelled_figure([])


@pytest.fixture
def labelled_calls(monkeypatch) -> dict:
    """What the last save_labelled call was given: panel titles and the keyword arguments."""
    seen = {}
    real = figures.save_labelled

    def spy(path, panels, **kwargs):
        seen.update(titles=[t for t, _ in panels], **kwargs)
        return real(path, panels, **kwargs)

    monkeypatch.setattr(figures, "save_labelled", spy)
    return seen


def test_demo_comparison_is_labelled(tmp_path, labelled_calls):
    from getkern.apps.demo import DemoConfig, _save_comparison

    seen = labelled_calls
    _save_comparison(tmp_path / "cmp.png", _grid(10, 0), _grid(10, 1), DemoConfig(), [f"class {k}" for k in range(10)])
    assert (tmp_path / "cmp.png").read_bytes()[:8] == PNG
    assert seen["titles"][0].startswith("EDM teacher (Heun, ") and seen["titles"][1].startswith("distilled GET")
    assert seen["row_labels"] == [f"class {k}" for k in range(10)] and "same noise" in seen["title"]


def test_guidance_grid_labels_its_rows_of_w(tmp_path, labelled_calls):
    from getkern.apps.guided_demo import save_guidance_grid

    seen = labelled_calls
    save_guidance_grid(tmp_path / "g.png", _grid(3, 2), _grid(3, 3), (0.0, 1.5, 4.0), 35, 4, classes=range(10))
    assert (tmp_path / "g.png").read_bytes()[:8] == PNG
    assert seen["row_labels"] == ["w = 0", "w = 1.5", "w = 4"] and seen["col_labels"] == [str(k) for k in range(10)]
    assert seen["titles"] == ["guided teacher (35 guided evaluations)", "GET (1 evaluation, 4 iterations)"]


def test_compose_command(tmp_path, capsys):
    images = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1
    a = save_grid(images, tmp_path / "a.png", nrow=10, scale=4)
    b = save_grid(-images, tmp_path / "b.png", nrow=10, scale=4)
    out = tmp_path / "fig.png"
    assert (
        main(
            [
                "--out",
                str(out),
                "--cols",
                "2",
                "--panel",
                f"teacher\\n35 evaluations={a}",
                "--panel",
                f"GET={b}",
                "--row-labels",
                "class 0",
                "class 1",
            ]
        )
        == 0
    )
    assert out.read_bytes()[:8] == PNG and "wrote" in capsys.readouterr().out
    # the panels keep their pixels: the grid read back equals the one written
    np.testing.assert_array_equal(figures._read_grid(a), make_grid(images, nrow=10, scale=4))
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--panel", "no-file"])
