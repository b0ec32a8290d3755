"""Writes the playground: one HTML page that continues a prime text in the browser, character by
character, with the model of an exported file (export_onnx.py) inside it.

    python playground.py --onnx short.onnx --output playground-short.html

The page (template: playground.html) opens from disk with no server and no network: it carries the
weights (as the file stores them, float32 or float16) and steps the LSTM in its own JavaScript,
choosing characters as generate.py does, so its greedy text is generate.py's. Needs onnx and
onnxruntime, not MXNet.
"""
import cli

if __name__ == "__main__":
    cli.exit_quietly_on_interrupt()

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import files  # noqa: E402

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "playground.html")


def tensors(path, names):
    """The named initializers of an exported file as {name: {"dtype", "data" (base64)}}, each
    in the precision the file stores it (with --float16, under the name + "_float16")."""
    import onnx
    from onnx import numpy_helper
    stored = {t.name: t for t in onnx.load(path).graph.initializer}
    found = {}
    for name in names:
        array = numpy_helper.to_array(stored[name] if name in stored else stored[name + "_float16"])
        dtype = "float32" if array.dtype.itemsize == 4 else "float16"
        data = array.astype("<f4" if dtype == "float32" else "<f2").tobytes()
        found[name] = {"dtype": dtype, "data": base64.b64encode(data).decode()}
    return found


def page(path):
    """The playground page of the exported file at `path`."""
    from onnx_inference import ONNXInferenceModel
    model = ONNXInferenceModel(path)  # checks that export_onnx.py wrote it
    layers, _, hidden = model.h.shape
    names = ["embed_weight", "cls_weight", "cls_bias"] + ["%s%d" % (kind, i) for i in range(layers) for kind in "WRB"]
    spec = {"vocab": model.vocab, "layers": layers, "hidden": hidden, "labels": model.num_label,
            "source": os.path.basename(path), "tensors": tensors(path, names)}
    # inside <script>: no "<" at all, so that nothing in the data can end the element
    data = json.dumps(spec, ensure_ascii=True, sort_keys=True).replace("<", "\\u003c")
    with open(TEMPLATE, encoding="utf-8") as f:
        return f.read().replace("MODEL_JSON", data, 1)


def write(path, output):
    """Writes the page of the exported file `path` to `output`, never over that file or the template."""
    files.check_not_same(output, path, "the ONNX file it reads")
    files.check_not_same(output, TEMPLATE, "the page's template")
    files.check_writable(output)
    files.save_text(output, page(path))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", required=True, metavar="FILE", help="the file export_onnx.py wrote")
    p.add_argument("--output", required=True, help="the page to write")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        write(args.onnx, args.output)
    except cli.Refused as err:
        return cli.fail("playground.py", err)
    except KeyboardInterrupt:
        return cli.fail("playground.py", "interrupted", cli.INTERRUPTED)
    print("Wrote %s: open it in a browser" % args.output, file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run(main)
