"""Writes a checkpoint as one ONNX file: the model's one-character step, for runtimes without MXNet.

    python export_onnx.py --prefix checkpoints/short --epoch best --output short.onnx [--float16]

The file's graph: inputs `ids` (batch,) int64, `h` and `c` (layers, batch, hidden) float32;
outputs `probs` (batch, labels), the next character's probabilities, and the new `h_out` and
`c_out`; any batch size. The vocabulary is in its metadata ("vocab", the -vocab.json's object), so
the file alone is enough to generate. Each layer is one ONNX LSTM, its gates reordered from the
tutorial's (in, transform, forget, out) to ONNX's (in, out, forget, cell); with --float16 the
weights are stored in float16 (half the file) and cast to float32 when the graph loads.
"""
import cli

if __name__ == "__main__":
    cli.exit_quietly_on_interrupt()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

import checkpoint  # noqa: E402
import files  # noqa: E402
from lstm import reorder_gates  # noqa: E402

OPSET = 17
ONNX_GATE_ORDER = [0, 3, 2, 1]  # the tutorial's gate blocks in ONNX's order


def graph_weights(arg_params):
    """The checkpoint's parameters (tutorial names, NDArrays) as the graph's float32 initializers."""
    shape = checkpoint.model_shape(arg_params)
    value = {name: array.asnumpy().astype(np.float32) for name, array in arg_params.items()}
    weights = {name: value[name] for name in ("embed_weight", "cls_weight", "cls_bias")}
    for i in range(shape["num_lstm_layer"]):
        gates = {name: reorder_gates(value["l%d_%s" % (i, name)], shape["num_hidden"], ONNX_GATE_ORDER)
                 for name in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")}
        weights["W%d" % i] = gates["i2h_weight"][None]
        weights["R%d" % i] = gates["h2h_weight"][None]
        weights["B%d" % i] = np.concatenate([gates["i2h_bias"], gates["h2h_bias"]])[None]
    return weights, shape


def _layer_nodes(helper, i, x, num_hidden):
    """Layer i's nodes: its states sliced from h and c, the LSTM over one step, its output."""
    return [helper.make_node("Slice", [state, "layer%d" % i, "layer%d" % (i + 1), "axis0"], ["%s%d" % (state, i)])
            for state in ("h", "c")] + [
        helper.make_node("LSTM", [x, "W%d" % i, "R%d" % i, "B%d" % i, "", "h%d" % i, "c%d" % i],
                         ["y%d" % i, "h%d_out" % i, "c%d_out" % i], hidden_size=num_hidden),
        helper.make_node("Squeeze", ["y%d" % i, "axis1"], ["x%d" % (i + 1)])]


def onnx_model(arg_params, vocab, float16=False):
    """The one-step ONNX model of a checkpoint's parameters, checked by onnx.checker."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise checkpoint.CheckpointError("onnx is not installed: pip install -r requirements.txt")
    weights, shape = graph_weights(arg_params)
    layers, hidden, labels = shape["num_lstm_layer"], shape["num_hidden"], shape["num_label"]
    nodes, initializers = [], []
    for name, array in weights.items():
        if float16:
            initializers.append(numpy_helper.from_array(array.astype(np.float16), name + "_float16"))
            nodes.append(helper.make_node("Cast", [name + "_float16"], [name], to=TensorProto.FLOAT))
        else:
            initializers.append(numpy_helper.from_array(array, name))
    for name, values in [("axis0", [0]), ("axis1", [1])] + [("layer%d" % i, [i]) for i in range(layers + 1)]:
        initializers.append(numpy_helper.from_array(np.array(values, np.int64), name))
    nodes += [helper.make_node("Gather", ["embed_weight", "ids"], ["embedded"]),
              helper.make_node("Unsqueeze", ["embedded", "axis0"], ["x0"])]
    for i in range(layers):
        nodes += _layer_nodes(helper, i, "x%d" % i, hidden)
    nodes += [helper.make_node("Concat", ["%s%d_out" % (state, i) for i in range(layers)], [state + "_out"], axis=0)
              for state in ("h", "c")]
    nodes += [helper.make_node("Squeeze", ["x%d" % layers, "axis0"], ["top"]),
              helper.make_node("Gemm", ["top", "cls_weight", "cls_bias"], ["logits"], transB=1),
              helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)]
    states = [layers, "batch", hidden]
    graph = helper.make_graph(
        nodes, "char_lstm_step", initializer=initializers,
        inputs=[helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch"]),
                helper.make_tensor_value_info("h", TensorProto.FLOAT, states),
                helper.make_tensor_value_info("c", TensorProto.FLOAT, states)],
        outputs=[helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", labels]),
                 helper.make_tensor_value_info("h_out", TensorProto.FLOAT, states),
                 helper.make_tensor_value_info("c_out", TensorProto.FLOAT, states)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="export_onnx.py")
    helper.set_model_props(model, {"vocab": json.dumps(vocab, ensure_ascii=False, sort_keys=True)})
    onnx.checker.check_model(model, full_check=True)
    return model


def export(prefix, epoch, output, float16=False, corpus=None):
    """Writes the checkpoint `prefix`, `epoch` (None: the newest; or "best") to `output`."""
    if checkpoint.is_run_file(prefix, output):
        raise checkpoint.CheckpointError("--output %s is one of the files of the checkpoint it reads (--prefix %s): "
                                         "give another path" % (output, prefix))
    epoch = checkpoint.latest_epoch(prefix) if epoch is None else epoch
    arg_params, _ = checkpoint.load_params(prefix, epoch)
    vocab = checkpoint.load_vocab_or_build(prefix, corpus)
    checkpoint.check_vocab(prefix, vocab, checkpoint.model_shape(arg_params)["num_label"])
    files.save_bytes(output, onnx_model(arg_params, vocab, float16).SerializeToString())
    return checkpoint.params_path(prefix, epoch)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_checkpoint_options(p)
    p.add_argument("--epoch", type=cli.epoch_number, help='epoch to export, or "best" (default: the newest)')
    p.add_argument("--output", required=True, help="the ONNX file to write")
    p.add_argument("--float16", action="store_true", help="store the weights in float16 (half the file)")
    cli.add_corpus_option(p, "corpus to rebuild the vocabulary from, for checkpoints without a -vocab.json")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        source = export(args.prefix, args.epoch, args.output, args.float16, args.data)
    except cli.Refused as err:
        return cli.fail("export_onnx.py", err)
    except KeyboardInterrupt:
        return cli.fail("export_onnx.py", "interrupted", cli.INTERRUPTED)
    print("Wrote %s from %s" % (args.output, source), file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run(main)
