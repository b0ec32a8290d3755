"""plot_curves.py, the command that draws a run's metrics."""
import pytest

import plot_curves
from conftest import TINY, assert_one_line_error, run_command


def test_no_metrics_is_a_clear_error(tmp_path):
    assert_one_line_error(run_command("plot_curves.py", "--prefix", str(tmp_path / "m")), "no .*-metrics.csv; train first")


def test_draws_the_learning_curves(small_corpus, tmp_path):
    pytest.importorskip("matplotlib")
    prefix = str(tmp_path / "m")
    assert run_command("train_obama.py", *TINY, "--data", small_corpus, "--prefix", prefix,
                       "--num-epoch", "2").returncode == 0
    assert plot_curves.main(["--prefix", prefix]) == 0
    with open(prefix + "-curves.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
