"""callbacks.py: the perplexity metric against a direct computation, and the callbacks on
hand-made epochs."""
import math
from collections import namedtuple

import mxnet as mx
import numpy as np
import pytest

import callbacks
import checkpoint

Param = namedtuple("Param", ["epoch", "eval_metric"])


class Perplexity:
    """An eval metric that reports a given validation perplexity."""

    def __init__(self, perplexity):
        self.perplexity = perplexity

    def get_global(self):
        return ["perplexity", "bits-per-char"], [self.perplexity, math.log2(self.perplexity)]


def test_perplexity_metric_matches_a_direct_computation():
    rng = np.random.RandomState(0)
    batch, seq_len, labels = 3, 4, 5
    label = rng.randint(0, labels, size=(batch, seq_len))
    label[0, -1] = label[2, 1] = 0
    pred = rng.dirichlet(np.ones(labels), size=seq_len * batch)  # time-major rows: t * batch + b
    nll = [-math.log(pred[t * batch + b, label[b, t]]) for b in range(batch) for t in range(seq_len) if label[b, t]]
    metric = callbacks.CharPerplexity()
    metric.update([mx.nd.array(label)], [mx.nd.array(pred)])
    names, values = metric.get()
    assert names == ["perplexity", "bits-per-char"]
    assert values[0] == pytest.approx(math.exp(np.mean(nll)), rel=1e-5)
    assert values[1] == pytest.approx(np.mean(nll) / math.log(2), rel=1e-5)
    assert not metric.diverged
    metric.update([mx.nd.array(label)], [mx.nd.array(pred * np.nan)])
    assert metric.diverged


class FakeOptimizer:
    def __init__(self, lr):
        self.optimizer = mx.optimizer.SGD(learning_rate=lr)


def test_plateau_lowers_the_rate_only_when_validation_does_not_improve_and_counts_the_drops():
    optimizer = FakeOptimizer(1.0)
    lower = callbacks.Plateau(optimizer, 0.5)
    rates = []
    for epoch, perplexity in enumerate([10.0, 8.0, 9.0, 8.5, 7.0, 7.0]):
        lower(Param(epoch, Perplexity(perplexity)))
        rates.append(optimizer.optimizer.learning_rate)
    assert rates == [1.0, 1.0, 0.5, 0.25, 0.25, 0.125] and lower.drops == 3


def writer(prefix, fail_at=()):
    """A RunWriter of one-array parameter files, whose optimizer state fails at the epochs `fail_at`."""
    def write_optimizer(target):
        if int(target.split("-")[-2]) in fail_at:
            raise checkpoint.CheckpointError("disk full")
        open(target, "w").close()
    return checkpoint.RunWriter(prefix, None, dict, "unrolled", write_optimizer)


class FakeRow:
    def start(self, epoch):
        self.values = {"epoch": epoch + 1, "train_perplexity": 20.0 - epoch}

    def add_validation(self, eval_metric):
        self.values["val_perplexity"] = eval_metric.get_global()[1][0]


def run_epochs(end, perplexities, first=1):
    """Ends epochs first, first + 1, ... with these validation perplexities."""
    for epoch, perplexity in enumerate(perplexities, start=first):
        end.save_weights(epoch - 1, None, {"w": mx.nd.full((2,), epoch)}, {})
        end.finish(Param(epoch - 1, Perplexity(perplexity)))


def test_an_epoch_is_done_once_all_of_it_is_written_best_copy_and_metrics_row_included(tmp_path):
    prefix = str(tmp_path / "m")
    checkpoint.save_run(prefix, epoch=0, batch=0)  # as a starting run writes it
    run_epochs(callbacks.EpochEnd(writer(prefix), FakeRow()), [10.0, 8.0, 9.0])
    best, _ = checkpoint.load_params(prefix, "best")
    assert best["w"].asnumpy().tolist() == [2, 2]
    record = checkpoint.load_run(prefix)
    assert (record["epoch"], record["best_epoch"]) == (3, 2) and record["best_val_loss"] == pytest.approx(math.log(8.0))
    assert [r["epoch"] for r in checkpoint.read_metrics(prefix)] == ["1", "2", "3"]
    # epoch 4, the best so far, fails at its optimizer state: the record, the best copy and the metrics stay
    # as they were after epoch 3, though the epoch's weights are written
    failing = callbacks.EpochEnd(writer(prefix, fail_at=(4,)), FakeRow(), record["best_val_loss"])
    with pytest.raises(checkpoint.CheckpointError):
        run_epochs(failing, [5.0], first=4)
    assert checkpoint.epochs(prefix) == [1, 2, 3, 4] and checkpoint.load_run(prefix)["epoch"] == 3
    assert checkpoint.load_params(prefix, "best")[0]["w"].asnumpy().tolist() == [2, 2]
    assert len(checkpoint.read_metrics(prefix)) == 3
    # resumed, the run does epoch 4 again: its row once, its chance to be the best kept; a resumed run
    # remembers the best so far (epoch 5 at perplexity 9 is none)
    resumed = callbacks.EpochEnd(writer(prefix), FakeRow(), checkpoint.load_run(prefix)["best_val_loss"], keep=2)
    run_epochs(resumed, [5.0, 9.0], first=4)
    assert checkpoint.load_params(prefix, "best")[0]["w"].asnumpy().tolist() == [4, 4]
    assert [r["epoch"] for r in checkpoint.read_metrics(prefix)] == ["1", "2", "3", "4", "5"]
    assert checkpoint.load_run(prefix)["best_epoch"] == 4 and checkpoint.epochs(prefix) == [4, 5]


def test_keep_newest_removes_older_epochs_and_their_optimizer_states(tmp_path):
    prefix = str(tmp_path / "m")
    for epoch in (1, 2, 3):
        for name in (checkpoint.params_path(prefix, epoch), checkpoint.path("states", prefix, epoch, "fused")):
            open(name, "w").close()
    checkpoint.RunWriter(prefix, None, dict, "fused").keep_newest(1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-0003-fused.states", "m-0003.params"]
