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


GOOD = "epoch,train_perplexity,val_perplexity\r\n1,20.5,19.0\r\n2,15.0,14.5\r\n"


@pytest.mark.parametrize("content, message", [
    (GOOD[:-9] + "3,12.0,12.5\r\n", "line 3 has 4 fields, the header 3"),  # a row cut short, the next glued on
    ("date,loss\r\n2026-12-01,3.5\r\n", r"its header is not this project's \(date,loss\)"),
    (GOOD.replace("2,15.0", "two,15.0"), "line 3 holds something other than numbers"),
    (GOOD.replace("1,20.5", "3,20.5"), "line 3: the epochs do not go up"),
    (b"\x89PNG\r\n\x1a\n\x00\xff".decode("latin-1"), "it is not UTF-8 CSV text"),
])
def test_a_metrics_file_that_is_not_ours_is_one_line(tmp_path, content, message):
    prefix = str(tmp_path / "m")
    with open(prefix + "-metrics.csv", "w", encoding="latin-1", newline="") as f:
        f.write(content)
    assert_one_line_error(run_command("plot_curves.py", "--prefix", prefix),
                          "m-metrics.csv is not a metrics file of this project \\(%s\\)" % message)


def test_an_older_file_with_fewer_columns_is_read(tmp_path):
    prefix = str(tmp_path / "m")
    with open(prefix + "-metrics.csv", "w", encoding="utf-8", newline="") as f:
        f.write(GOOD)
    import checkpoint
    rows = checkpoint.read_metrics(prefix)
    assert [(r["epoch"], r["val_perplexity"]) for r in rows] == [("1", "19.0"), ("2", "14.5")]
    checkpoint.save_metrics_row(prefix, dict(epoch=2, train_perplexity=14.0, val_perplexity=13.0, seconds=5))
    with open(prefix + "-metrics.csv", encoding="utf-8", newline="") as f:  # epoch 2 done again: its row replaced
        assert f.read() == "epoch,train_perplexity,val_perplexity\r\n1,20.5,19.0\r\n2,14.0,13.0\r\n"
