"""playground.py and its page in headless Chromium: the page's greedy text against generate.py's on
the checkpoint, its sampling controls, Stop, a prime it cannot take, and the command's bad inputs."""
import json
import os
import re
import time

import pytest

import browser
import export_onnx
import playground
from conftest import assert_one_line_error, run_command

PRIME = "Thank you"
STATE = "return document.body.dataset.state"
OUTPUT = "return document.getElementById('output').textContent"
STATUS = "return document.getElementById('status').textContent"


@pytest.fixture(scope="module")
def chrome():
    if browser.missing():
        pytest.skip(browser.missing())
    chrome = browser.Browser()
    yield chrome
    chrome.close()


def write_page(onnx_file, folder):
    page = os.path.join(str(folder), "page.html")
    result = run_command("playground.py", "--onnx", onnx_file, "--output", page)
    assert result.returncode == 0, result.stderr
    return page


def generate_in_page(chrome, page, prime=PRIME, length=120, sample=False, top_k=0, wait=True):
    """Opens the page, fills in the controls, clicks Generate; the text once done (when `wait`)."""
    chrome.open("file://" + page)
    assert chrome.run(STATE) == "ready"
    chrome.run("const [prime, length, sample, topK] = arguments;"
               "document.getElementById('prime').value = prime;"
               "document.getElementById('length').value = length;"
               "document.getElementById('sample').checked = sample;"
               "document.getElementById('topk').value = topK;"
               "document.getElementById('generate').click()", prime, str(length), sample, str(top_k))
    while wait and chrome.run(STATE) == "running":
        pass
    return chrome.run(OUTPUT)


@pytest.fixture(scope="module")
def page(varied, tmp_path_factory):
    return write_page(varied[1], tmp_path_factory.mktemp("page"))


def test_the_pages_greedy_text_is_generate_pys(chrome, varied, page):
    expected = run_command("generate.py", PRIME, "--length", "150", "--prefix", varied[0])
    assert expected.returncode == 0, expected.stderr
    assert generate_in_page(chrome, page, length=150) + "\n" == expected.stdout
    assert chrome.run(STATE) == "done" and chrome.console_errors() == []


def test_a_float16_file_gives_generate_pys_text_from_that_file(chrome, varied, tmp_path):
    half = str(tmp_path / "half.onnx")
    assert export_onnx.main(["--prefix", varied[0], "--output", half, "--float16"]) == 0
    expected = run_command("generate.py", PRIME, "--length", "100", "--onnx", half)
    assert expected.returncode == 0, expected.stderr
    assert generate_in_page(chrome, write_page(half, tmp_path), length=100) + "\n" == expected.stdout
    assert chrome.console_errors() == []


def test_sampling_draws_from_the_vocabulary_and_top_k_1_is_greedy(chrome, varied, page):
    greedy = generate_in_page(chrome, page, length=80)
    assert generate_in_page(chrome, page, length=80, sample=True, top_k=1) == greedy
    with open(varied[0] + "-vocab.json", encoding="utf-8") as f:
        vocab = set(json.load(f))
    samples = [generate_in_page(chrome, page, length=80, sample=True) for _ in range(2)]
    assert all(len(s) == len(PRIME) + 80 and set(s) <= vocab for s in samples)
    assert samples[0] != samples[1] != greedy
    assert chrome.console_errors() == []


def test_stop_ends_a_long_text_and_the_page_takes_another(chrome, page):
    generate_in_page(chrome, page, length=100000, wait=False)
    while len(chrome.run(OUTPUT)) < len(PRIME) + 20:
        assert chrome.run(STATE) == "running"
    chrome.run("document.getElementById('stop').click()")
    assert chrome.run(STATE) == "stopped"
    stopped = chrome.run(OUTPUT)
    time.sleep(0.5)
    assert chrome.run(OUTPUT) == stopped and len(stopped) < len(PRIME) + 100000
    assert re.match(r"stopped after \d+ characters", chrome.run(STATUS))
    assert len(generate_in_page(chrome, page, length=10)) == len(PRIME) + 10
    assert chrome.console_errors() == []


def test_a_prime_it_cannot_take_is_said_on_the_page(chrome, page):
    generate_in_page(chrome, page, prime="Thank you \u00e9")
    assert chrome.run(STATE) == "error" and "not in the vocabulary: \"\u00e9\"" in chrome.run(STATUS)
    generate_in_page(chrome, page, prime="")
    assert "the prime text is empty" in chrome.run(STATUS)
    assert chrome.console_errors() == []


def test_the_page_loads_nothing_from_elsewhere():
    with open(playground.TEMPLATE, encoding="utf-8") as f:  # the written page adds only the model's data
        html = f.read()
    assert "MODEL_JSON" in html and not re.search(r"\b(src|href)\s*=|https?://|\bimport\(|fetch\(", html)


def test_bad_inputs_are_one_line_and_write_nothing(varied, tmp_path):
    exported = varied[1]
    garbage = str(tmp_path / "garbage.onnx")
    with open(garbage, "wb") as f:
        f.write(b"not an onnx file")
    out = str(tmp_path / "page.html")
    template = playground.TEMPLATE
    before = open(template, "rb").read()
    for args, message in [(["--onnx", str(tmp_path / "none.onnx"), "--output", out], "cannot read the ONNX file"),
                          (["--onnx", garbage, "--output", out], "cannot be loaded"),
                          (["--onnx", exported, "--output", exported], "is the ONNX file it reads"),
                          (["--onnx", exported, "--output", template], "is the page's template"),
                          (["--onnx", exported, "--output", str(tmp_path)], "cannot write the output"),
                          (["--onnx", exported], "--output")]:
        assert_one_line_error(run_command("playground.py", *args), message)
    assert sorted(os.listdir(tmp_path)) == ["garbage.onnx"] and open(template, "rb").read() == before
