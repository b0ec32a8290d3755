"""Draws a training run's learning curves, `<prefix>-metrics.csv`, to `<prefix>-curves.png`.

    python plot_curves.py --prefix checkpoints/obama

It needs matplotlib (pip install matplotlib), which training itself does not.
"""

import cli

if __name__ == "__main__":
    cli.exit_quietly_on_interrupt()  # from the first import on, also while MXNet loads

import argparse  # noqa: E402

import checkpoint  # noqa: E402
import files  # noqa: E402


def plot_curves(prefix):
    """Draws the training and validation bits per character of each epoch; returns the PNG's path."""
    rows = checkpoint.read_metrics(prefix)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise checkpoint.CheckpointError("plotting needs matplotlib (pip install matplotlib)")
    fig, ax = plt.subplots(figsize=(7, 4))
    for column, label in (("train_bits_per_char", "training"), ("val_bits_per_char", "validation")):
        points = [(int(r["epoch"]), float(r[column])) for r in rows if r.get(column)]  # an older file may lack it
        if points:
            ax.plot(*zip(*points), marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits per character")
    ax.legend()
    out = checkpoint.path("curves", prefix)
    files.atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description="Draw <prefix>-metrics.csv to <prefix>-curves.png.")
    cli.add_checkpoint_options(p)
    args = p.parse_args(argv)
    try:
        print("Wrote %s" % plot_curves(args.prefix))
    except cli.Refused as err:
        return cli.fail("plot_curves.py", err)
    return 0


if __name__ == "__main__":
    cli.run(main)
