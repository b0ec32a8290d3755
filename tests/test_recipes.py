"""The recipe files of config/: each parses as train_obama.py reads it and says what it gives;
options after a file win; the best model's cycle runs from its files alone."""
import glob
import os
import re

import pytest

import checkpoint
import options
from conftest import REPO, TINY, error_lines, run_command

RECIPES = sorted(glob.glob(os.path.join(REPO, "config", "*.args")))


def header(path):
    """The comment lines a recipe file begins with."""
    lines = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            lines.append(line)
    return "".join(lines)


@pytest.mark.parametrize("path", RECIPES, ids=os.path.basename)
def test_every_recipe_parses_and_its_header_says_what_it_gives(path):
    args = options.parse_args(["@" + path])
    assert args.num_epoch >= 1 and args.lr_schedule in ("constant", "step", "cosine", "plateau")
    said = header(path)
    assert said.startswith("# ") and any(word in said for word in ("Gives", "Measured", "tests")), said
    if not path.endswith("tiny.args"):  # the measured recipes: a date, the CPU, where the figures are
        assert re.search(r"2026-\d\d-\d\d", said) and "Xeon" in said and "BENCHMARKS.md" in said, said
    # every flag of the file is one the parser knows (an unknown one would already have failed above)
    with open(path, encoding="utf-8") as f:
        flags = [line.split()[0] for line in f if line.strip() and not line.startswith("#")]
    assert flags and all(flag.startswith(("--", "@")) for flag in flags)


def test_the_short_recipe_is_the_one_measured():
    args = options.parse_args(["@config/short.args"])
    assert (args.stateful, args.seq_len, args.embed_init, args.rnn_backend, args.optimizer, args.learning_rate,
            args.wd, args.clip_gradient, args.dropout, args.lr_schedule, args.lr_final, args.num_epoch) == (
        True, 64, "normal", "fused", "adam", 0.002, 0.0, 5.0, 0.0, "cosine", 0.0, 4)
    assert args.lr_cosine_epochs == 4  # the curve's length: the run's epochs


def test_flags_after_a_recipe_win_and_comments_and_blank_lines_are_skipped(tmp_path):
    recipe = tmp_path / "mine.args"
    recipe.write_text("# a comment\n\n--num-hidden 32   # units\n--stateful\n@config/tiny.args\n--dropout 0.1\n",
                      encoding="utf-8")
    args = options.parse_args(["--num-embed", "4", "@" + str(recipe), "--dropout", "0.3"])
    assert (args.num_hidden, args.stateful, args.dropout, args.num_embed) == (16, True, 0.3, 8)  # tiny.args read last
    args = options.parse_args(["@" + str(recipe), "--num-hidden", "64"])
    assert (args.num_hidden, args.dropout) == (64, 0.1)


def test_a_recipe_is_found_from_any_folder_and_a_missing_one_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert options.parse_args(["@config/long.args"]).num_epoch == 10  # it reads @config/short.args too
    with pytest.raises(SystemExit):
        options.parse_args(["@config/nope.args"])
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "No such file or directory: 'config/nope.args'" in errors[0], errors


def test_the_best_models_cycle_runs_from_its_files_alone(small_corpus, tmp_path):
    """The four phases at the tiny model's size, one epoch each: each starts from the files the
    phase before wrote (no file copied by hand), whose files it only reads."""
    tiny = TINY + ["--data", small_corpus, "--num-epoch", "1"]
    for phase, more in ((1, []), (2, ["--init-epoch", "1"]), (3, []), (4, [])):
        before = {path: open(path, "rb").read() for path in glob.glob(str(tmp_path / "checkpoints" / "*"))}
        done = run_command("train_obama.py", "@config/best-%d.args" % phase, *tiny, *more, cwd=str(tmp_path))
        assert done.returncode == 0, done.stderr
        assert {path: open(path, "rb").read() for path in before} == before
        prefix = str(tmp_path / "checkpoints" / ("best-%d" % phase))
        assert checkpoint.epochs(prefix) == [1]
        if phase > 1:
            assert "Starting from the weights of checkpoints/best-%d-" % (phase - 1) in done.stderr
            assert checkpoint.load_run(prefix)["options"]["init_from"] == str(tmp_path / "checkpoints" /
                                                                              ("best-%d" % (phase - 1)))


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe--num-hidden 32\n", "a recipe file is not UTF-8 text"),
    (b"--num-hidden thirty\n", "argument --num-hidden: expected a whole number, got 'thirty'"),
    (b"num-hidden 32\n", "unrecognized arguments: num-hidden 32"),
    (b"--num-hid 32\n", "unrecognized arguments: --num-hid 32"),  # no abbreviations: a recipe keeps its meaning
])
def test_a_recipe_that_is_not_one_is_one_line(tmp_path, capsys, content, message):
    recipe = tmp_path / "bad.args"
    recipe.write_bytes(content)
    with pytest.raises(SystemExit) as stop:
        options.parse_args(["@" + str(recipe)])
    errors = error_lines(capsys.readouterr().err)
    assert stop.value.code == 2 and len(errors) == 1 and message in errors[0], errors
