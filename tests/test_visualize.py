"""visualize.py: the traced states and gates against the numpy LSTM, the text's properties and the
cells found for them, the command, and the page in a real browser."""
import os

import mxnet as mx
import numpy as np
import pytest

import browser
import reference
import visualize
from conftest import assert_one_line_error, run_command
from rnn_model import LSTMInferenceModel

LAYERS, VOCAB, HIDDEN, EMBED = 2, 10, 6, 4


def test_the_trace_is_the_numpy_lstms_states_probabilities_and_gates():
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=30)
    model = LSTMInferenceModel(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, {k: mx.nd.array(v) for k, v in params.items()})
    ids = [3, 1, 4, 1, 5, 9, 2, 6]
    trace = visualize.trace_text(model, params, ids)
    states = reference.zero_states(LAYERS, 1, HIDDEN)
    for t, char_id in enumerate(ids):
        before = [(c.copy(), h.copy()) for c, h in states]
        np.testing.assert_allclose(trace.probs[t], reference.step(params, [char_id], states)[0], rtol=1e-4, atol=1e-6)
        for layer, (c, h) in enumerate(states):
            np.testing.assert_allclose(trace.c[layer, t], c[0], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(trace.h[layer, t], h[0], rtol=1e-4, atol=1e-5)
            # the gates from the tutorial's equations, on the numpy LSTM's own states
            below = params["embed_weight"][char_id] if layer == 0 else states[layer - 1][1][0]
            z = (params["l%d_i2h_weight" % layer] @ below + params["l%d_i2h_bias" % layer]
                 + params["l%d_h2h_weight" % layer] @ before[layer][1][0] + params["l%d_h2h_bias" % layer])
            for name, block in (("input", 0), ("forget", 2), ("output", 3)):
                np.testing.assert_allclose(trace.gates[name][layer, t], reference.sigmoid(
                    z[block * HIDDEN:(block + 1) * HIDDEN]), rtol=1e-4, atol=1e-5)
    # and they are the gates that made the states: h = o * tanh(c)
    np.testing.assert_allclose(trace.h, trace.gates["output"] * np.tanh(trace.c), rtol=1e-4, atol=1e-5)


def test_properties_of_a_hand_written_text():
    props = visualize.text_properties('Hi "yo" (a b). Ok\nNo')
    #                                    H i _ " y o " _ ( a _ b ) . _ O k \n N o
    assert props["position in the line"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 0, 1, 2]
    assert props["inside double quotes"].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert props["inside parentheses"].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert props["position in the word"].tolist() == [1, 2, 0, 0, 1, 2, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 2, 0, 1, 2]
    assert props["start of a sentence"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert props["position in the sentence"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0, 1, 2, 3, 4,
                                                          5, 6]
    assert props["uppercase"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0]
    assert not visualize.text_properties("one running text").get("position in the line").any()


def test_the_cell_that_tracks_a_property_comes_first():
    rng = np.random.RandomState(0)
    activations = rng.uniform(-1, 1, size=(2, 200, 8))
    line = np.arange(200) % 40
    activations[1, :, 5] = -np.tanh(line / 20.0)  # a cell that counts along the line, negatively
    found = visualize.top_cells(activations, {"position in the line": line, "never": np.ones(200)}, k=3)
    assert list(found) == ["position in the line"]  # a property that never varies has no cell
    layer, unit, r = found["position in the line"][0]
    assert (layer, unit) == (1, 5) and r < -0.95
    assert all(abs(other) < 0.3 for _, _, other in found["position in the line"][1:])


def test_gate_saturation_counts_the_steps_past_each_threshold():
    gates = {"forget": np.array([[[0.05, 0.5], [0.95, 0.5], [0.95, 0.99], [0.5, 0.5]]])}  # 1 layer, 4 steps, 2 cells
    left, right = visualize.gate_saturation(gates)["forget"]
    assert left.tolist() == [[0.25, 0.0]] and right.tolist() == [[0.5, 0.25]]


def test_the_command_writes_one_self_contained_page(trained, tmp_path):
    prefix, _ = trained
    out = tmp_path / "cells.html"
    result = run_command("visualize.py", "--prefix", prefix, "--text", 'The "United" States', "--out", str(out))
    assert result.returncode == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    assert r'The \"United\" States' in page and "<svg" in page  # the text, inside the page's JSON
    assert "http://" not in page and "https://" not in page and "src=" not in page and "<link" not in page
    assert os.listdir(tmp_path) == ["cells.html"]


def test_the_commands_bad_inputs_are_one_clear_line(trained, tmp_path):
    prefix, _ = trained
    assert_one_line_error(run_command("visualize.py", "--prefix", prefix, "--text", "Thé"),
                          "not in the vocabulary: 'é'")
    assert_one_line_error(run_command("visualize.py", "--prefix", prefix, "--text-file", str(tmp_path / "none.txt")),
                          "cannot read")
    assert_one_line_error(run_command("visualize.py", "--prefix", str(tmp_path / "none"), "--text", "The"),
                          "no checkpoint")
    assert_one_line_error(run_command("visualize.py", "--prefix", prefix, "--text", "The", "--out",
                                      str(tmp_path / "no" / "cells.html")), "cannot write the page")
    assert_one_line_error(run_command("visualize.py", "--prefix", prefix), "one of the arguments --text --text-file")
    assert_one_line_error(run_command("visualize.py", "--prefix", prefix, "--text-file", "/dev/zero"),
                          "the text file /dev/zero is not a regular file")
    assert_one_line_error(run_command("visualize.py", "--prefix", prefix, "--text", "a" * 100001),
                          "the text has 100001 characters; the page holds at most 100000")
    assert os.listdir(tmp_path) == []


def test_the_page_is_never_written_over_a_file_of_the_checkpoint(trained_copy):
    for name in ("-0001.params", "-vocab.json", "-run.json", "-metrics.csv"):
        before = open(trained_copy + name, "rb").read()
        assert_one_line_error(run_command("visualize.py", "--prefix", trained_copy, "--text", "The", "--out",
                                          trained_copy + name), "--out .* is one of the files of the checkpoint it reads")
        assert open(trained_copy + name, "rb").read() == before


@pytest.fixture(scope="module")
def page_in_browser(trained, small_corpus, tmp_path_factory):
    """The page of 20,000 characters of obama.txt, open in headless Chromium."""
    if browser.missing():
        pytest.skip(browser.missing())
    prefix, _ = trained
    folder = tmp_path_factory.mktemp("page")
    text = folder / "text.txt"
    text.write_text(open(small_corpus, encoding="utf-8").read()[:20000], encoding="utf-8")
    out = folder / "cells.html"
    assert run_command("visualize.py", "--prefix", prefix, "--text-file", str(text), "--out", str(out)).returncode == 0
    chrome = browser.Browser()
    chrome.open(out.as_uri())
    yield chrome, folder
    chrome.close()


COLOURS = "return Array.from(document.querySelectorAll('#text span')).map(s => s.style.backgroundColor)"


def test_the_page_shows_the_text_coloured_and_switches_cells(page_in_browser):
    chrome, folder = page_in_browser
    assert chrome.run("return document.querySelectorAll('#text span').length") == 20000
    shown = chrome.run("return document.getElementById('text').textContent")
    assert shown.replace("\u23ce", "") == open(folder / "text.txt", encoding="utf-8").read()
    first = chrome.run(COLOURS)
    assert sum(bool(c) for c in first) == 20000  # every character coloured by the first cell found
    chrome.run("const unit = document.getElementById('unit'); unit.value = (Number(unit.value) + 1) % 16;"
               "unit.dispatchEvent(new Event('change'))")
    second = chrome.run(COLOURS)
    assert sum(a != b for a, b in zip(first, second)) > 10000
    link = chrome.run("const a = document.querySelectorAll('a.cell')[3]; a.click(); return [a.dataset.layer, a.dataset.unit]")
    assert chrome.run("return document.getElementById('now').textContent") == "showing tanh(c) of layer %s, unit %s" % tuple(link)
    chrome.run("const v = document.getElementById('view'); v.value = 'surprise'; v.dispatchEvent(new Event('change'))")
    surprise = chrome.run(COLOURS)
    assert surprise[0] == "" and all(c.startswith("rgba(255, 140, 0") for c in surprise[1:])
    chrome.screenshot(str(folder / "page.png"))
    assert open(folder / "page.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert chrome.run("return window.pageErrors") == [] and chrome.console_errors() == []


def test_hovering_a_character_shows_the_models_guesses(page_in_browser):
    chrome, _ = page_in_browser
    tip = chrome.run("const s = document.querySelectorAll('#text span')[5];"
                     "s.dispatchEvent(new MouseEvent('mouseover', {bubbles: true, clientX: 50, clientY: 50}));"
                     "return document.getElementById('tip').textContent")
    lines = tip.split("\n")
    assert lines[0].startswith("character 5: ") and "the model's five guesses:" in lines
    assert len(lines[lines.index("the model's five guesses:") + 1:]) == 5
    assert chrome.run("return window.pageErrors") == []


def test_cells_are_stored_at_64_levels_from_minus_one_to_one():
    activations = np.array([[[-1.0, 0.0], [1.0, 0.5], [-0.25, 0.999]]])  # 1 layer, 3 steps, 2 units
    coded = visualize.encode_cells(activations)
    decoded = np.array([[[visualize.LEVELS.index(ch) / 31.5 - 1 for ch in unit] for unit in layer] for layer in coded])
    np.testing.assert_allclose(decoded.transpose(0, 2, 1), activations, atol=1 / 63)
    assert coded[0][0][0] == "A" and coded[0][0][1] == "/"


def test_a_text_that_looks_like_markup_is_shown_as_it_is(tmp_path):
    """'<!--<script' in the text once made the page's data unreadable to its script: nothing drawn."""
    if browser.missing():
        pytest.skip(browser.missing())
    text = 'a <!--<script> b </script> c "</" <b>d</b> e'  # the comment never closed, as in the issue
    vocab = {c: i + 1 for i, c in enumerate(dict.fromkeys(text))}
    params = reference.random_params(1, len(vocab) + 1, HIDDEN, EMBED, len(vocab) + 1, seed=3)
    model = LSTMInferenceModel(1, len(vocab) + 1, HIDDEN, EMBED, len(vocab) + 1,
                               {k: mx.nd.array(v) for k, v in params.items()})
    ids = [vocab[c] for c in text]
    page = tmp_path / "page.html"
    page.write_text(visualize.render_page("markup", text, np.array(ids), visualize.trace_text(model, params, ids),
                                          vocab), encoding="utf-8")
    chrome = browser.Browser()
    try:
        chrome.open(page.as_uri())
        assert chrome.run("return document.querySelectorAll('#text span').length") == len(text)
        assert chrome.run("return document.getElementById('text').textContent") == text
        assert sum(bool(c) for c in chrome.run(COLOURS)) == len(text)
    finally:
        chrome.close()
