"""Shows what the cells of a trained model do, as one self-contained HTML page.

    python visualize.py --prefix checkpoints/obama --text-file speech.txt --out cells.html
    python visualize.py --prefix checkpoints/obama --epoch best --text "The United States" --out cells.html

It runs the model over the text one character at a time, through the step that generation uses,
and writes a page (no server, no network: it opens from disk) with the text coloured by any cell's
activation (tanh(c) or h, any layer and unit), the model's guesses on hover, a "surprise" view
(-log p of each character), the cells that best follow simple properties of the text (position in
the line, inside quotes, ...), and the gate-saturation picture of Karpathy, Johnson and Fei-Fei,
"Visualizing and Understanding Recurrent Networks" (2015).
"""

import os

import cli

if __name__ == "__main__":
    cli.exit_quietly_on_interrupt()  # from the first import on, also while MXNet loads
    os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")  # as generate.py: small steps run faster

import argparse  # noqa: E402
import html  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from collections import namedtuple  # noqa: E402

import numpy as np  # noqa: E402

import bucket_io  # noqa: E402
import checkpoint  # noqa: E402
import files  # noqa: E402
import device  # noqa: E402
from generate import unknown_characters  # noqa: E402
from rnn_model import load_inference_model  # noqa: E402

# c, h: (layers, T, H), the states after each character; gates: name -> (layers, T, H);
# probs: (T, labels), the model's distribution of the character after each one
Trace = namedtuple("Trace", ["c", "h", "gates", "probs"])


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def trace_text(model, arg_params, ids):
    """Runs the model over `ids` from zero states, one character a step; returns a Trace."""
    cs, hs, probs = [], [], []
    for t, char_id in enumerate(ids):
        probs.append(model.forward([char_id], new_seq=t == 0)[0])
        h, c = model.get_states()
        hs.append(h[:, 0])
        cs.append(c[:, 0])
    c, h = np.stack(cs, axis=1), np.stack(hs, axis=1)
    return Trace(c, h, gate_activations(arg_params, ids, h), np.array(probs))


def gate_activations(arg_params, ids, h):
    """The input, forget and output gates of every cell at every step, from the states the model
    went through (each layer's input and its previous h), in the tutorial's gate order."""
    params = {k: v.asnumpy() if hasattr(v, "asnumpy") else v for k, v in arg_params.items()}
    layers, steps, hidden = h.shape
    gates = {"input": [], "forget": [], "output": []}
    for layer in range(layers):
        below = params["embed_weight"][np.asarray(ids, dtype=int)] if layer == 0 else h[layer - 1]
        before = np.concatenate([np.zeros((1, hidden), h.dtype), h[layer, :-1]])
        z = (below @ params["l%d_i2h_weight" % layer].T + params["l%d_i2h_bias" % layer]
             + before @ params["l%d_h2h_weight" % layer].T + params["l%d_h2h_bias" % layer])
        gates["input"].append(sigmoid(z[:, :hidden]))  # then the transform, tanh(z[:, H:2H])
        gates["forget"].append(sigmoid(z[:, 2 * hidden:3 * hidden]))
        gates["output"].append(sigmoid(z[:, 3 * hidden:]))
    return {name: np.stack(values) for name, values in gates.items()}


def text_properties(text):
    """Simple properties of each character of the text (after reading it), as numbers. A text
    without line breaks (as stateful training joins obama.txt's) has no position in the line."""
    props = {name: np.zeros(len(text)) for name in
             ("position in the line", "inside double quotes", "inside parentheses", "position in the word",
              "start of a sentence", "position in the sentence", "uppercase", "inside a word")}
    column = quoted = depth = in_word = in_sentence = 0
    sentence_ended = True
    for t, char in enumerate(text):
        column = 0 if char == "\n" else column + 1
        quoted ^= char == '"'
        depth = max(0, depth + (char == "(") - (char == ")"))
        in_word = in_word + 1 if char.isalpha() else 0
        props["position in the line"][t] = column
        props["inside double quotes"][t] = quoted
        props["inside parentheses"][t] = depth > 0
        props["position in the word"][t] = in_word
        props["start of a sentence"][t] = sentence_ended and char.isalpha()
        in_sentence = 0 if char in ".!?" else in_sentence + 1
        props["position in the sentence"][t] = in_sentence
        props["uppercase"][t] = char.isupper()
        props["inside a word"][t] = in_word > 0
        if char.isalpha():
            sentence_ended = False
        elif char in ".!?":
            sentence_ended = True
    if "\n" not in text:  # one running line: the "column" would only count characters
        props["position in the line"][:] = 0
    return props


def top_cells(activations, properties, k=5):
    """For each property that varies in the text, the `k` cells whose activation (layers, T, H)
    correlates best with it: [(layer, unit, Pearson r)], strongest |r| first."""
    layers, steps, hidden = activations.shape
    cells = activations.transpose(0, 2, 1).reshape(layers * hidden, steps)
    cells = cells - cells.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(cells, axis=1)
    found = {}
    for name, values in properties.items():
        centred = values - values.mean()
        if np.linalg.norm(centred) == 0:
            continue
        r = cells @ centred / np.maximum(norms * np.linalg.norm(centred), 1e-12)
        best = np.argsort(-np.abs(r))[:k]
        found[name] = [(int(i // hidden), int(i % hidden), float(r[i])) for i in best]
    return found


def gate_saturation(gates, low=0.1, high=0.9):
    """name -> (left, right): for each gate, the fraction of steps each cell (layers, H) spends
    left-saturated (< low) and right-saturated (> high)."""
    return {name: ((g < low).mean(axis=1), (g > high).mean(axis=1)) for name, g in gates.items()}


LAYER_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def saturation_svg(name, left, right, size=240):
    """One gate's scatter plot: a dot a cell, x = fraction left-saturated, y = right-saturated."""
    pad, span = 30, size - 40
    dots = "".join('<circle cx="%.1f" cy="%.1f" r="2" fill="%s" fill-opacity="0.6"/>'
                   % (pad + x * span, size - pad - y * span + 20, LAYER_COLOURS[layer % len(LAYER_COLOURS)])
                   for layer in range(left.shape[0]) for x, y in zip(left[layer], right[layer]))
    axes = ('<line x1="{p}" y1="{b}" x2="{e}" y2="{b}" stroke="#444"/><line x1="{p}" y1="{b}" x2="{p}" y2="20" '
            'stroke="#444"/><line x1="{p}" y1="{b}" x2="{e}" y2="20" stroke="#bbb" stroke-dasharray="3"/>'
            ).format(p=pad, b=size - pad + 20, e=pad + span)
    labels = ('<text x="{c}" y="14" text-anchor="middle" font-weight="bold">{n} gate</text>'
              '<text x="{c}" y="{b}" text-anchor="middle" font-size="11">fraction left-saturated (&lt; 0.1)</text>'
              '<text x="10" y="{m}" font-size="11" transform="rotate(-90 10 {m})" text-anchor="middle">'
              'fraction right-saturated (&gt; 0.9)</text>').format(c=size / 2, b=size + 16, n=name, m=size / 2)
    return '<svg class="gate" width="%d" height="%d">%s%s%s</svg>' % (size, size + 24, axes, dots, labels)


# one character a value: 64 levels of activation, from -1 (A) to 1 (/)
LEVELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def encode_cells(activations):
    """Each cell's activations over the text as a string, one LEVELS character a step: [layer][unit]."""
    quantised = np.clip(np.round((activations + 1) * 31.5), 0, 63).astype(np.uint8)
    alphabet = np.frombuffer(LEVELS.encode("ascii"), dtype=np.uint8)
    return [[alphabet[quantised[layer, :, unit]].tobytes().decode("ascii") for unit in range(quantised.shape[2])]
            for layer in range(quantised.shape[0])]


def page_data(text, ids, trace, vocab):
    """What the page's script needs, as JSON-ready values."""
    id_to_char = {i: c for c, i in vocab.items()}
    expected = trace.probs[:-1]  # the distribution each character after the first was drawn from
    p_actual = expected[np.arange(len(ids) - 1), ids[1:]] if len(ids) > 1 else np.zeros(0)
    top = np.argsort(-expected, axis=1)[:, :5] if len(ids) > 1 else np.zeros((0, 5), int)
    guesses = [[[id_to_char.get(int(i), "(end)"), round(float(row[i]), 4)] for i in best]
               for best, row in zip(top, expected)]
    return {"text": text, "layers": int(trace.c.shape[0]), "hidden": int(trace.c.shape[2]),
            "p": [None] + [round(float(p), 5) for p in p_actual], "guesses": [None] + guesses,
            "cells": {"c": encode_cells(np.tanh(trace.c)), "h": encode_cells(trace.h)}}


def best_cells_html(names, cells):
    rows = []
    for name in names:
        links = " ".join('<a href="#" class="cell" data-layer="%d" data-unit="%d">layer %d, unit %d (r = %+.2f)</a>'
                         % (layer, unit, layer, unit, r) for layer, unit, r in cells.get(name, []))
        rows.append("<tr><th>%s</th><td>%s</td></tr>" % (html.escape(name), links or "(does not vary in this text)"))
    return "<table id=\"best\">%s</table>" % "".join(rows)


def render_page(title, text, ids, trace, vocab):
    """The whole page as one string of HTML."""
    properties = text_properties(text)
    cells = top_cells(np.tanh(trace.c), properties)
    saturation = gate_saturation(trace.gates)
    plots = "".join(saturation_svg(name, *saturation[name]) for name in ("input", "forget", "output"))
    legend = " ".join('<span style="color:%s">&#9679; layer %d</span>' % (LAYER_COLOURS[i % len(LAYER_COLOURS)], i)
                      for i in range(trace.c.shape[0]))
    # no "<" at all inside the script element: "</script" would end it and "<!--" change how it is read
    data = json.dumps(page_data(text, ids, trace, vocab), separators=(",", ":")).replace("<", "\\u003c")
    with open(PAGE_TEMPLATE, encoding="utf-8") as f:
        page = f.read()
    return (page.replace("@TITLE@", html.escape(title)).replace("@BEST@", best_cells_html(properties, cells))
            .replace("@PLOTS@", plots).replace("@LEGEND@", legend).replace("@DATA@", data))


# the page's layout, style and script, with @NAME@ where render_page puts the text's parts
PAGE_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "visualize.html")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Write an HTML page showing what the model's cells do on a text.")
    cli.add_checkpoint_options(p)
    p.add_argument("--epoch", type=cli.epoch_number, help='epoch to load, or "best" (default: the newest)')
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--text", help="the text to run the model over")
    given.add_argument("--text-file", help="read the text from this UTF-8 file")
    p.add_argument("--out", default="cells.html", help="the page to write (default: cells.html)")
    cli.add_corpus_option(p, "corpus to build the vocabulary from when the checkpoint has no -vocab.json")
    cli.add_device_options(p, "run on this GPU, such as 0 (default: gpu(0) if MXNet can use it)")
    return p.parse_args(argv)


# the page keeps 2 x layers x units bytes a character: 300 MB for this many with the 3x512 model
MAX_CHARACTERS = 100_000


def visualize(args):
    """Loads the checkpoint, traces the text and writes the page; returns the page's path."""
    text = args.text if args.text_file is None else bucket_io.read_content(args.text_file, "text file",
                                                                           4 * MAX_CHARACTERS)
    if len(text) > MAX_CHARACTERS:
        raise bucket_io.CorpusError("the text has %d characters; the page holds at most %d (it stores every cell's "
                                    "activation at each)" % (len(text), MAX_CHARACTERS))
    if checkpoint.is_run_file(args.prefix, args.out):
        raise checkpoint.CheckpointError("--out %s is one of the files of the checkpoint it reads (--prefix %s): "
                                         "give another path" % (args.out, args.prefix))
    if os.path.isdir(args.out) or not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise checkpoint.CheckpointError("cannot write the page %s: no such folder, or it is a folder" % args.out)
    vocab = checkpoint.load_vocab_or_build(args.prefix, args.data)
    if not text:
        raise bucket_io.CorpusError("the text is empty")
    unknown = unknown_characters(text, vocab)
    if unknown:
        raise bucket_io.CorpusError("the text has characters that are not in the vocabulary: %s" % unknown)
    contexts = device.contexts_for(args.gpus, args.cpu)
    model, epoch = load_inference_model(args.prefix, args.epoch, ctx=contexts[0])
    checkpoint.check_vocab(args.prefix, vocab, model.num_label)
    arg_params, _ = checkpoint.load_params(args.prefix, epoch)
    logging.info("Running %s over %d characters", checkpoint.params_path(args.prefix, epoch), len(text))
    ids = bucket_io.text2id(text, vocab)
    page = render_page("%s, epoch %s" % (os.path.basename(args.prefix), epoch), text, np.array(ids),
                       trace_text(model, arg_params, ids), vocab)
    files.save_text(args.out, page)
    return args.out


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        logging.info("Wrote %s", visualize(args))
    except cli.Refused as err:
        return cli.fail("visualize.py", err)
    except KeyboardInterrupt:
        return cli.fail("visualize.py", "interrupted", cli.INTERRUPTED)
    return 0


if __name__ == "__main__":
    cli.run(main)
