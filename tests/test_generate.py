"""generate.py: the generation functions on scripted models, and the command as a user runs it."""
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import generate
from conftest import REPO, assert_one_line_error, run_command
from generate import PrimeError, beam_search, check_prime, generate_text, generate_texts, next_ids, stream_text

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
    # the first distribution follows the prime text "c"; only new characters are matched
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
    with pytest.raises(PrimeError, match="'z'"):
        check_prime("abz", VOCAB)
    with pytest.raises(PrimeError, match="empty"):
        check_prime("", VOCAB)
    assert check_prime("azbé", VOCAB, skip_unknown=True) == "ab"
    assert "'z'" in caplog.text and "'é'" in caplog.text
    with pytest.raises(PrimeError, match="empty"):
        check_prime("zz", VOCAB, skip_unknown=True)


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


def test_generate_reads_the_checkpoint_in_a_fresh_process(trained):
    prefix, _ = trained
    result = run_command("generate.py", "The United States", "--prefix", prefix, "--length", "50")
    assert result.returncode == 0, result.stderr
    text = result.stdout[:-1]  # print's newline
    assert text.startswith("The United States") and len(text) == len("The United States") + 50
    sampled = [run_command("generate.py", "The", "--prefix", prefix, "--length", "40", "--sample", "--seed", "7").stdout
               for _ in range(2)]
    assert sampled[0] == sampled[1] and len(sampled[0]) == len("The") + 40 + 1


def test_generate_bad_inputs_are_one_clear_line(trained, tmp_path):
    prefix, _ = trained
    assert_one_line_error(run_command("generate.py", "Thé", "--prefix", prefix), "not in the vocabulary: 'é'")
    assert_one_line_error(run_command("generate.py", "The", "--prefix", str(tmp_path / "none")), "no checkpoint")
    assert_one_line_error(run_command("generate.py", "The", "--prefix", prefix, "--epoch", "7"), "not found")
    assert_one_line_error(run_command("generate.py", "The", "--prefix", prefix, "--sample", "--temperature", "0"),
                          "--temperature: must be positive")
    broken = str(tmp_path / "broken")
    for suffix in ("-0001.params", "-vocab.json"):
        with open(prefix + suffix, "rb") as src, open(broken + suffix, "wb") as dst:
            dst.write(src.read()[:200] if suffix.endswith("params") else src.read())
    assert_one_line_error(run_command("generate.py", "The", "--prefix", broken), "corrupt or truncated")


def test_generate_options_end_to_end(trained, tmp_path):
    prefix, _ = trained
    three = run_command("generate.py", "The", "--prefix", prefix, "--length", "30", "--num-samples", "3",
                "--sample", "--top-k", "5", "--seed", "2")
    assert three.returncode == 0, three.stderr
    samples = re.findall(r"=== sample (\d) ===\n(.*)\n", three.stdout)
    assert [n for n, _ in samples] == ["1", "2", "3"]
    assert all(text.startswith("The") and len(text) == 33 for _, text in samples)
    assert len({text for _, text in samples}) > 1

    prime = tmp_path / "prime.txt"
    prime.write_text("Thank you.\nThe", encoding="utf-8")
    out = tmp_path / "out.txt"
    written = run_command("generate.py", "--prime-file", str(prime), "--prefix", prefix, "--length", "25", "--output", str(out))
    assert written.returncode == 0 and written.stdout == ""
    assert out.read_text(encoding="utf-8").startswith("Thank you.\nThe")
    streamed = run_command("generate.py", "--prime-file", str(prime), "--prefix", prefix, "--length", "25", "--stream")
    assert streamed.stdout == out.read_text(encoding="utf-8")

    skipped = run_command("generate.py", "Thé", "--prefix", prefix, "--length", "10", "--skip-unknown")
    assert skipped.returncode == 0 and skipped.stdout.startswith("Th") and "'é'" in skipped.stderr
    beam = run_command("generate.py", "The", "--prefix", prefix, "--length", "15", "--beam", "4")
    assert beam.returncode == 0 and len(beam.stdout) == 3 + 15 + 1 and "log-likelihood" in beam.stderr


def test_generate_option_mistakes_are_one_clear_line(trained, tmp_path):
    prefix, _ = trained
    assert_one_line_error(run_command("generate.py", "--prefix", prefix), "either a PRIME text or --prime-file")
    assert_one_line_error(run_command("generate.py", "The", "--beam", "2", "--sample"), "--beam finds the one most likely")
    assert_one_line_error(run_command("generate.py", "The", "--stream", "--num-samples", "2"), "--stream prints one sample")
    assert_one_line_error(run_command("generate.py", "--prime-file", str(tmp_path / "missing.txt"), "--prefix", prefix),
                          "cannot read the prime file")
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    for device in ("/dev/zero", fifo):  # endless, or blocking for ever
        assert_one_line_error(run_command("generate.py", "--prime-file", device, "--prefix", prefix),
                              "the prime file %s is not a regular file" % device)
    (tmp_path / "long.txt").write_text("The " * (1 << 18) + "!")
    assert_one_line_error(run_command("generate.py", "--prime-file", str(tmp_path / "long.txt"), "--prefix", prefix),
                          "the prime file .* is larger than the 1 MB this reads")
    assert_one_line_error(run_command("generate.py", "The", "--prefix", prefix, "--output", str(tmp_path / "no" / "dir.txt")),
                          "cannot write the output .*: No such file or directory")


def test_generate_length_zero_prints_the_seed_only(trained):
    prefix, _ = trained
    result = run_command("generate.py", "The", "--prefix", prefix, "--length", "0")
    assert result.returncode == 0 and result.stdout == "The\n", result.stderr


def test_generate_finds_an_unwritable_output_before_generating(trained, tmp_path):
    prefix, _ = trained
    result = run_command("generate.py", "The", "--prefix", prefix, "--output", str(tmp_path))  # a folder
    assert_one_line_error(result, "cannot write the output .*: Is a directory")
    assert "Loaded" not in result.stderr and os.listdir(tmp_path) == []


def test_generate_more_samples_than_one_batch_holds_in_parts(trained, monkeypatch, capsys):
    import generate
    prefix, _ = trained
    monkeypatch.setattr(generate, "MAX_STREAMS", 4)
    assert generate.main(["The", "--prefix", prefix, "--length", "12", "--num-samples", "10", "--sample",
                          "--seed", "3"]) == 0
    samples = re.findall(r"=== sample (\d+) ===\n(.*)\n", capsys.readouterr().out)
    assert [int(n) for n, _ in samples] == list(range(1, 11))
    # a sample may end early where the model emits padding twice (see iter_steps)
    assert all(text.startswith("The") and len(text) <= 15 for _, text in samples)
    assert len({text for _, text in samples}) > 4  # the parts do not repeat each other


@pytest.mark.parametrize("argv, message", [
    (["--temperature", "nan"], "--temperature: must be a finite number"),
    (["--seed", "99999999999"], "--seed: must be between 0 and"),
    (["--prefix", " "], "--prefix: must name a path"),
    (["--length", "-5"], "--length: must not be negative"),
    (["--beam", "100000"], "--beam takes at most"),
])
def test_generate_refuses_numbers_that_make_no_sense(argv, message, capsys):
    import generate
    with pytest.raises(SystemExit) as stop:
        generate.parse_args(["The"] + argv)
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert stop.value.code == 2 and len(errors) == 1 and re.search(message, errors[0]), errors


def test_ctrl_c_in_generate_is_quiet_and_leaves_no_file(trained, tmp_path):
    prefix, _ = trained
    out = tmp_path / "speech.txt"
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "generate.py"), "The", "--prefix", prefix,
                             "--length", "10000000", "--output", str(out)],
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        for line in proc.stderr:  # interrupt once it generates
            if "Loaded" in line:
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()  # never left generating for hours where the signal did not stop it
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["-0001.params", "-vocab.json", "-run.json", "link", "hard link"])
def test_generate_never_writes_over_a_file_of_the_checkpoint(trained_copy, tmp_path, name):
    prefix = trained_copy
    os.symlink(prefix + "-0001.params", tmp_path / "link")
    os.link(prefix + "-0001.params", tmp_path / "hard link")
    output = prefix + name if name.startswith("-") else str(tmp_path / name)
    before = {p: open(p, "rb").read() for p in map(str, (tmp_path / "run").iterdir())}
    assert_one_line_error(run_command("generate.py", "The ", "--prefix", prefix, "--length", "5", "--output", output),
                          "--output .* is one of the files of the checkpoint it reads")
    assert {p: open(p, "rb").read() for p in map(str, (tmp_path / "run").iterdir())} == before


def test_generate_refuses_a_vocabulary_numbered_otherwise_than_training_does(trained_copy):
    vocab = json.load(open(trained_copy + "-vocab.json", encoding="utf-8"))
    shifted = {char: number + 1 for char, number in vocab.items()}  # the prime text would be fed as other characters
    with open(trained_copy + "-vocab.json", "w", encoding="utf-8") as f:
        json.dump(shifted, f)
    assert_one_line_error(run_command("generate.py", "The", "--prefix", trained_copy),
                          "numbers its %d characters otherwise than 1 to %d" % (len(vocab), len(vocab)))
