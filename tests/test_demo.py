"""`convkit demo`: the worked examples' numbers, checked against hand-worked values."""

import io

import numpy as np
import scipy.ndimage as ndi
from click.testing import CliRunner
from PIL import Image

from convkit.cli import main
from convkit.demo import CROSS, run_demo

PHOTO = np.random.default_rng(0).integers(0, 256, size=(30, 40, 3)).astype(np.uint8)


def _sections():
    return {s.figure_name: s for s in run_demo(PHOTO)}


def test_demo_prints_the_tutorials_numbers():
    sections = _sections()
    edges = sections["demo_edges.png"].lines
    assert edges == [
        "            flat: horizontal_edge 0, vertical_edge 0",
        " horizontal edge: horizontal_edge 800, vertical_edge 0",
        "   vertical edge: horizontal_edge 0, vertical_edge 800",
    ]
    valid = sections["demo_valid.png"].lines
    assert valid[valid.index("output") + 1 :][:2] == ["  [ 6   8]", "  [12  14]"]
    mean = sections["demo_mean.png"].lines
    assert mean[-2].endswith("= 1190")
    assert mean[-1] == "mean = 1190 / 9 = 132.2222 -> rounded 132"


def test_line_detectors_match_scipy_and_relu_removes_the_negatives():
    lines = _sections()["demo_cross.png"].lines
    vertical = np.array([[-1, 2, -1]] * 3)
    expected = ndi.correlate(CROSS.astype(int), vertical)[1:-1, 1:-1]  # valid part
    at = lines.index("vertical_line: response")
    printed = np.array(
        [[int(v) for v in row.strip(" []").split()] for row in lines[at + 1 : at + 4]]
    )
    np.testing.assert_array_equal(printed, expected)
    at = lines.index("vertical_line: after ReLU")
    printed = np.array(
        [[int(v) for v in row.strip(" []").split()] for row in lines[at + 1 : at + 4]]
    )
    np.testing.assert_array_equal(printed, np.maximum(expected, 0))


def test_the_demo_animates_the_cross_and_the_3x3_matrix():
    sections = _sections()
    outputs = {o.name: o for s in sections.values() for o in s.outputs()}
    assert [name for name in outputs if name.endswith(".gif")] == [
        "demo_valid_slide.gif", "demo_cross_slide.gif",
    ]  # fmt: skip
    frames = {"demo_valid_slide.gif": 4, "demo_cross_slide.gif": 9}  # the valid outputs
    for name, count in frames.items():
        with Image.open(io.BytesIO(outputs[name].encode())) as gif:
            assert gif.n_frames == count
    cross = sections["demo_cross.png"].animation
    assert [cross.sum_text(i) for i in (0, 1)] == ["= -2  ->  relu: 0", "= 4  ->  relu: 4"]
    valid = sections["demo_valid.png"].animation
    assert [valid.sum_text(i).split("  ->")[0] for i in range(4)] == ["= 6", "= 8", "= 12", "= 14"]


def test_demo_command_writes_every_figure(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "demo_bank.png", "demo_cross.png", "demo_cross_slide.gif", "demo_edges.png",
        "demo_mean.png", "demo_valid.png", "demo_valid_slide.gif",
    ]  # fmt: skip
    assert "horizontal edge: horizontal_edge 800, vertical_edge 0" in result.output
    assert "rounded 132" in result.output
