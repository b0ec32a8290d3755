"""cli.py: the argument types refuse what makes no sense; given_options tells typed from default."""
import argparse

import pytest

import cli


@pytest.mark.parametrize("convert, text, message", [
    (cli.positive_int, "0", "at least 1"),
    (cli.positive_int, "two", "expected a whole number"),
    (cli.finite_float, "nan", "finite"),
    (cli.finite_float, "-inf", "finite"),
    (cli.positive_float, "0", "positive"),
    (cli.non_negative_float, "-1e-9", "not be negative"),
    (cli.fraction, "1", r"\[0, 1\)"),
    (cli.random_seed, "4294967296", "between 0 and 4294967295"),
    (cli.epoch_number, "0", "count from 1"),
    (cli.epoch_number, "last", 'epoch number or "best"'),
    (cli.int_list, "10,x", "separated by commas"),
    (cli.prefix_path, "  ", "must name a path"),
])
def test_types_refuse_nonsense(convert, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        convert(text)


def test_types_accept_sense():
    assert cli.int_list("10, 20 30") == [10, 20, 30]
    assert cli.random_seed("4294967295") == 2 ** 32 - 1
    assert cli.epoch_number("best") == "best" and cli.epoch_number("7") == 7
    assert cli.fraction("0") == 0.0 and cli.positive_float("1e-3") == 0.001


def test_given_options_are_those_typed():
    p = argparse.ArgumentParser()
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--wd", type=float, default=0.0001)
    p.add_argument("--resume", action="store_true")
    assert cli.given_options(p, ["--resume", "--learning-rate=0.01"]) == {"resume", "learning_rate"}
    assert p.parse_args([]).wd == 0.0001  # the defaults are back
