import numpy as np
import pytest

from generate import SeedError, check_seed, generate_text, next_id

VOCAB = {"a": 1, "b": 2, "c": 3}


class ScriptedModel:
    """Returns, for each step, a distribution that puts most weight on a scripted next id."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = []

    def forward(self, input_data, new_seq=False):
        self.calls.append((int(input_data.asnumpy()[0]), new_seq))
        prob = np.full((1, 4), 0.01)
        prob[0, self.script.pop(0) if self.script else 1] = 0.97
        return prob


def test_greedy_feeds_the_seed_then_its_own_output():
    model = ScriptedModel([3, 2, 3, 1])  # the first distribution (after "a") is not used
    assert generate_text(model, VOCAB, "ab", length=3) == "ab" + "bca"
    assert model.calls == [(1, True), (2, False), (2, False), (3, False)]


def test_padding_restarts_the_state_with_the_last_character():
    model = ScriptedModel([2, 0, 3])
    assert generate_text(model, VOCAB, "a", length=2) == "a" + "bc"
    # after "b" the model emits padding: the state restarts from zero on the same input "b"
    assert model.calls == [(1, True), (2, False), (2, True)]


def test_padding_straight_after_a_restart_stops_early():
    model = ScriptedModel([2, 0, 0, 3])
    assert generate_text(model, VOCAB, "a", length=5) == "ab"


def test_sampling_is_repeatable_and_follows_temperature():
    prob = np.array([0.1, 0.2, 0.3, 0.4])
    draws = [next_id(prob, True, 1.0, np.random.RandomState(0)) for _ in range(1)]
    assert draws == [next_id(prob, True, 1.0, np.random.RandomState(0))]
    rng = np.random.RandomState(1)
    counts = np.bincount([next_id(prob, True, 1.0, rng) for _ in range(20000)], minlength=4) / 20000
    np.testing.assert_allclose(counts, prob, atol=0.015)
    cold = np.bincount([next_id(prob, True, 0.25, rng) for _ in range(20000)], minlength=4) / 20000
    expected = prob ** 4 / (prob ** 4).sum()
    np.testing.assert_allclose(cold, expected, atol=0.015)
    assert next_id(prob) == 3


def test_seed_must_be_known_and_non_empty():
    with pytest.raises(SeedError, match="'z'"):
        check_seed("abz", VOCAB)
    with pytest.raises(SeedError, match="empty"):
        check_seed("", VOCAB)
