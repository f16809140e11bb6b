"""`convkit bench`: cells for every size x kernel x backend, naive extrapolated when large."""

import json
import sys

import pytest
from click.testing import CliRunner

import convkit.bench as bench
from convkit.cli import main
from convkit.kernels import get_kernel


def test_every_cell_is_timed_and_large_naive_cells_are_extrapolated(monkeypatch):
    monkeypatch.setattr(bench, "SLOW_BUDGET_SECONDS", 0.01)  # naive: 4 ms at 32², 16 at 64²
    kernels = [get_kernel("sharpen"), get_kernel("box:5")]
    cells = bench.run_bench([32, 64], kernels, ["naive", "filter2d"], repeat=2)
    assert [(c.size, c.kernel, c.backend) for c in cells] == [
        (32, "sharpen", "naive"), (32, "sharpen", "filter2d"),
        (32, "box:5", "naive"), (32, "box:5", "filter2d"),
        (64, "sharpen", "naive"), (64, "sharpen", "filter2d"),
        (64, "box:5", "naive"), (64, "box:5", "filter2d"),
    ]  # fmt: skip
    extrapolated = [c for c in cells if c.extrapolated]
    assert [(c.size, c.backend) for c in extrapolated] == [(64, "naive"), (64, "naive")]
    measured = {c.kernel: c for c in cells if c.backend == "naive" and c.size == 32}
    for cell in extrapolated:  # 4x the pixels, 4x the measured cost per pixel
        assert cell.median_ms == pytest.approx(measured[cell.kernel].median_ms * 4)
    assert all(c.runs == 2 for c in cells if c.backend == "filter2d")


def test_ratios_are_to_the_fastest_measured_cell():
    cells = [
        bench.BenchCell(8, "k", (3, 3), "a", 1, 2.0, 2.0),
        bench.BenchCell(8, "k", (3, 3), "b", 1, 6.0, 6.0),
        bench.BenchCell(8, "k", (3, 3), "naive", 0, 1.0, 1.0, extrapolated=True),
    ]
    assert bench.fastest_ratios(cells) == {
        (8, "k", "a"): 1.0,
        (8, "k", "b"): 3.0,
        (8, "k", "naive"): 0.5,
    }


def test_bench_command_writes_its_report(tmp_path):
    report = tmp_path / "bench.json"
    args = ["--sizes", "32", "--kernels", "sharpen,gaussian:5", "--backends", "filter2d,numpy"]
    result = CliRunner().invoke(main, ["bench", *args, "--repeat", "1", "--report", str(report)])
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())["rows"]
    assert [(r["kernel"], r["backend"]) for r in rows] == [
        ("sharpen", "filter2d"), ("sharpen", "numpy"),
        ("gaussian:5", "filter2d"), ("gaussian:5", "numpy"),
    ]  # fmt: skip


def test_plot_without_matplotlib_is_refused_before_the_timing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    report = tmp_path / "bench.json"
    args = ["--sizes", "32", "--report", str(report), "--plot", str(tmp_path / "p.png")]
    result = CliRunner().invoke(main, ["bench", *args])
    assert result.exit_code == 2
    assert result.output == 'Error: --plot needs matplotlib: pip install "convkit[plot]"\n'
    assert not report.exists() and not (tmp_path / "p.png").exists()


def test_report_and_plot_cannot_share_a_path(tmp_path):
    path = tmp_path / "same.json"
    result = CliRunner().invoke(main, ["bench", "--report", str(path), "--plot", str(path)])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: the plot {path} would replace the output {path}")


@pytest.mark.parametrize(("args", "message"), [
    (["--sizes", "a,b"], "give whole numbers"),
    (["--sizes", "0"], "sizes go from 1 to 16384"),
    (["--kernels", "sobelx"], "did you mean sobel_x"),
    (["--backends", "cuda"], "unknown backend 'cuda'"),
])  # fmt: skip
def test_bench_bad_options(args, message):
    result = CliRunner().invoke(main, ["bench", "--sizes", "16", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_plot_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs the optional matplotlib")
    import cv2

    cells = bench.run_bench([16, 32], [get_kernel("sharpen"), get_kernel("box:9")], ["filter2d"], 1)
    bench.plot_bench(cells, tmp_path / "plot.png")
    assert cv2.imread(str(tmp_path / "plot.png")).shape[:2] == (500, 800)


def test_calibrate_stores_this_machines_model_where_auto_reads_it(tmp_path, monkeypatch):
    """`bench --calibrate` (on a tiny grid here): the file lands in CONVKIT_CACHE_DIR and
    auto's cost model is read from it."""
    import functools

    from convkit import calibration

    monkeypatch.setenv("CONVKIT_CACHE_DIR", str(tmp_path))
    small = functools.partial(calibration.calibrate, sizes=(96,), kernels=((3, 3), (9, 9)),
                              repeat=1)  # fmt: skip
    monkeypatch.setattr(calibration, "calibrate", small)
    result = CliRunner().invoke(main, ["bench", "--calibrate"])
    assert result.exit_code == 0, result.output
    stored = calibration.calibration_path()
    assert stored.parent == tmp_path and stored.is_file()
    assert f"auto now uses {stored}" in result.output
    assert calibration.read_calibration(stored) is not None
