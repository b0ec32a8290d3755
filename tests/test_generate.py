import itertools

import numpy as np
import pytest

from generate import SeedError, beam_search, check_seed, generate_text, generate_texts, next_ids, stream_text

VOCAB = {"a": 1, "b": 2, "c": 3}


class ScriptedModel:
    """Each call returns, for every stream, a distribution peaked on the next scripted id."""

    def __init__(self, *scripts):
        self.scripts = [list(s) for s in scripts]
        self.batch_size = len(scripts)
        self.calls, self.restarts = [], []

    def forward(self, input_data, new_seq=False):
        self.calls.append((list(np.asarray(input_data, dtype=int)), new_seq))
        prob = np.full((self.batch_size, 4), 0.01)
        for stream, script in enumerate(self.scripts):
            prob[stream, script.pop(0) if script else 1] = 0.97
        return prob

    def restart_streams(self, streams):
        self.restarts.append(list(streams))


def test_greedy_feeds_the_seed_then_its_own_output():
    model = ScriptedModel([3, 2, 3, 1])  # the first distribution (after "a") is not used
    assert generate_text(model, VOCAB, "ab", length=3) == "ab" + "bca"
    assert model.calls == [([1], True), ([2], False), ([2], False), ([3], False)]


def test_padding_restarts_only_that_stream_on_its_last_character():
    model = ScriptedModel([2, 0, 3], [3, 1, 2])
    assert generate_texts(model, VOCAB, "a", length=2) == ["abc", "aca"]
    # stream 0 emitted padding after "b": it restarts and is fed "b" again; stream 1 goes on
    assert model.restarts == [[0]]
    assert model.calls == [([1, 1], True), ([2, 3], False), ([2, 1], False)]


def test_padding_straight_after_a_restart_ends_the_stream():
    model = ScriptedModel([2, 0, 0, 3], [1, 1, 1, 1, 1, 1])
    assert generate_texts(model, VOCAB, "a", length=5) == ["ab", "aaaaaa"]


def test_stop_at_ends_a_sample_after_the_string():
    model = ScriptedModel([1, 2, 3, 1, 2, 3, 1], [3, 3, 3, 3, 3, 3, 3])
    # the first distribution follows the seed "c"; only new characters are matched
    assert generate_texts(model, VOCAB, "c", length=6, stop_at="ca") == ["cabca", "ccccccc"]


def test_stream_text_yields_characters_one_at_a_time():
    model = ScriptedModel([2, 3, 0, 1, 2])
    assert list(stream_text(model, VOCAB, "a", length=3)) == ["b", "c", "a"]


def test_sampling_follows_temperature_and_top_k_and_is_repeatable():
    prob = np.array([[0.1, 0.2, 0.3, 0.4]] * 20000)
    assert list(next_ids(prob[:50], True, 1.0, 0, np.random.RandomState(3))) == \
        list(next_ids(prob[:50], True, 1.0, 0, np.random.RandomState(3)))
    rng = np.random.RandomState(1)
    freq = np.bincount(next_ids(prob, True, 1.0, 0, rng), minlength=4) / len(prob)
    np.testing.assert_allclose(freq, prob[0], atol=0.015)
    cold = np.bincount(next_ids(prob, True, 0.25, 0, rng), minlength=4) / len(prob)
    np.testing.assert_allclose(cold, prob[0] ** 4 / (prob[0] ** 4).sum(), atol=0.015)
    top2 = np.bincount(next_ids(prob, True, 1.0, 2, rng), minlength=4) / len(prob)
    np.testing.assert_allclose(top2, [0, 0, 3 / 7, 4 / 7], atol=0.015)
    assert list(next_ids(np.array([[0.1, 0.5, 0.4], [0.6, 0.1, 0.3]]))) == [1, 0]


def test_seed_must_be_known_and_non_empty(caplog):
    with pytest.raises(SeedError, match="'z'"):
        check_seed("abz", VOCAB)
    with pytest.raises(SeedError, match="empty"):
        check_seed("", VOCAB)
    assert check_seed("azbé", VOCAB, skip_unknown=True) == "ab"
    assert "'z'" in caplog.text and "'é'" in caplog.text
    with pytest.raises(SeedError, match="empty"):
        check_seed("zz", VOCAB, skip_unknown=True)


class ParityModel:
    """A model whose next-character distribution depends on the last character and on the parity
    of the sum of all characters so far (its state), to test that beam search carries states."""

    TABLE = np.random.RandomState(0).dirichlet(np.ones(4), size=(4, 2))

    def __init__(self, batch_size):
        self.batch_size = batch_size
        self.total = np.zeros(batch_size, dtype=int)

    def forward(self, input_data, new_seq=False):
        ids = np.asarray(input_data, dtype=int)
        self.total = (0 if new_seq else self.total) + ids
        return self.TABLE[ids, self.total % 2]

    def get_states(self):
        return self.total[None, :].copy(), self.total[None, :].copy()

    def set_states(self, h, c):
        self.total = h[0].copy()


def test_beam_search_finds_the_most_likely_continuation():
    def log_likelihood(seed_total, last, text):
        total, score = seed_total, 0.0
        for char in text:
            score += np.log(ParityModel.TABLE[last, total % 2][VOCAB[char]])
            last = VOCAB[char]
            total += last
        return score

    seed = "ab"
    best = max(("".join(t) for t in itertools.product("abc", repeat=4)),
               key=lambda t: log_likelihood(3, 2, t))
    text, score = beam_search(ParityModel(27), VOCAB, seed, length=4)
    assert text == seed + best
    assert score == pytest.approx(log_likelihood(3, 2, best))
