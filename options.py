"""train_obama.py's options: the parser, in groups; recipe files (`@config/NAME.args`); the one
rule of --resume; and the combinations refused.

--resume carries on the same run: every option not given again is the run's own, read from its
run record and set as the parser's defaults before the command line is parsed a second time.
Given again, an option changes the run from here on, as if the run had been started with it.
"""
import argparse
import logging
import os
import sys

import checkpoint
import cli
import device

# What a command asks for rather than what the run is: never kept in the run record
COMMAND_OPTIONS = ("resume", "overwrite", "gpus", "cpu")
PROJECT = os.path.dirname(os.path.abspath(__file__))


def add_data_options(data):
    """What the model reads, and in what order."""
    cli.add_corpus_option(data, "corpus file, UTF-8 (default: data/obama.txt, found by the corpus look-up, "
                                "docs/training.md)")
    data.add_argument("--seq-len", type=cli.positive_int, default=129,
                      help="steps a sample: the longest line, or (--stateful) a batch's slice of the streams")
    data.add_argument("--buckets", type=cli.int_list, help="bucket lengths, such as 32,64,129 (default: --seq-len)")
    data.add_argument("--split-long-lines", action=argparse.BooleanOptionalAction, default=False,
                      help="cut lines longer than the largest bucket instead of failing")
    data.add_argument("--stateful", action=argparse.BooleanOptionalAction, default=False,
                      help="read the corpus as one running text in --batch-size streams: each batch of --seq-len "
                           "steps continues them, from the LSTM states the batch before ended in")
    data.add_argument("--val-frac", type=cli.fraction, default=0.05, help="the last fraction of lines held out (0: none)")
    data.add_argument("--batch-size", type=cli.positive_int, default=32)
    data.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True,
                      help="shuffle the batch order each epoch (default); --no-shuffle keeps the corpus order")
    data.add_argument("--seed", type=cli.random_seed, default=0, help="seeds the initial weights, dropout and batch order")


def add_model_options(model):
    """The network, its regularisation and the backend that runs it."""
    model.add_argument("--num-embed", type=cli.positive_int, default=256)
    model.add_argument("--num-lstm-layer", type=cli.positive_int, default=3)
    model.add_argument("--num-hidden", type=cli.positive_int, default=512)
    model.add_argument("--dropout", type=cli.fraction, default=0.2, help="between layers, and before the classifier")
    model.add_argument("--weight-drop", type=cli.fraction, default=0.,
                       help="drop this fraction of each hidden-to-hidden weight, one mask a batch (DropConnect)")
    model.add_argument("--embed-dropout", type=cli.fraction, default=0., help="drop this fraction of the embedding's output")
    model.add_argument("--embed-init", choices=["xavier", "normal"], default="xavier",
                       help="the embedding from the tutorial's Xavier, or N(0, 1) as PyTorch's nn.Embedding")
    model.add_argument("--rnn-backend", choices=["unrolled", "fused"], default="unrolled",
                       help="unrolled: the tutorial's graph of LSTM cells; fused: the same model on mx.sym.RNN "
                            "(oneDNN on the CPU, cuDNN on a GPU), faster. Checkpoints are the same")
    model.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                       help="fused backend on a CPU with AVX-512 bf16: the LSTM in bfloat16 on oneDNN 3 "
                            "(float32 parameters and checkpoints)")
    model.add_argument("--init-from", metavar="PREFIX", type=cli.prefix_path,
                       help="start from the weights of another run's checkpoint (a warm restart, or fine-tuning on "
                            "a corpus of the same characters); its files are only read")
    model.add_argument("--init-epoch", type=cli.epoch_number, help="its epoch, or best (default: its newest)")


def add_optimization_options(optimization):
    """The optimizer and its learning-rate schedule."""
    optimization.add_argument("--num-epoch", type=cli.positive_int, default=1, help="train until this many epochs are done")
    optimization.add_argument("--optimizer", choices=["sgd", "adam", "rmsprop"], default="sgd")
    optimization.add_argument("--learning-rate", type=cli.positive_float, default=0.01)
    optimization.add_argument("--momentum", type=cli.non_negative_float, default=0.0, help="for sgd")
    optimization.add_argument("--wd", type=cli.non_negative_float, default=0.0001)
    optimization.add_argument("--clip-gradient", type=cli.positive_float, help="clip each gradient element to [-C, C]")
    optimization.add_argument("--clip-global-norm", type=cli.positive_float,
                              help="scale each batch's gradient down to this global L2 norm per character")
    optimization.add_argument("--lr-schedule", choices=["constant", "step", "cosine", "plateau"], default="constant",
                              help="constant; step: times --lr-factor after each of --lr-step-epochs; cosine: a half "
                                   "cosine to --lr-final over --lr-cosine-epochs; plateau: times --lr-factor after an "
                                   "epoch whose held-out loss is not the best")
    optimization.add_argument("--lr-factor", type=cli.positive_float, default=0.5, help="for step and plateau")
    optimization.add_argument("--lr-step-epochs", type=cli.int_list, help="for step: epochs such as 10,20")
    optimization.add_argument("--lr-final", type=cli.non_negative_float, default=0.0, help="for cosine: the last rate")
    optimization.add_argument("--lr-cosine-epochs", type=cli.positive_int,
                              help="for cosine: its length (default: --num-epoch when the run starts; a run extended "
                                   "by --num-epoch keeps its curve)")
    optimization.add_argument("--warmup-epochs", type=cli.non_negative_float, default=0.0,
                              help="raise the rate linearly from 0 over this many epochs first (not with plateau)")


def add_checkpoint_options(saving):
    """Where the run's files go, and whether it is new or carried on."""
    cli.add_checkpoint_options(saving)
    saving.add_argument("--keep", type=cli.positive_int, help="keep only the newest N epoch checkpoints (default: all)")
    saving.add_argument("--resume", action="store_true",
                        help="carry on the run under --prefix: the options not given again are the run's own")
    saving.add_argument("--overwrite", action="store_true", help="start afresh where --prefix already has checkpoints")


def build_parser():
    """The options, in groups: data, model, optimization, checkpoints, where. `@FILE` reads options
    from a recipe file; options after it win."""
    # no abbreviations: a recipe file's flag would change meaning when an option is added
    p = RecipeParser(description="Train the tutorial's character-level LSTM.", fromfile_prefix_chars="@",
                     allow_abbrev=False, epilog="Options can come from a recipe file, one --flag value a line: "
                                                "python train_obama.py @config/short.args (config/ has more); "
                                                "options after it win.")
    add_data_options(p.add_argument_group("data"))
    add_model_options(p.add_argument_group("model"))
    add_optimization_options(p.add_argument_group("optimization"))
    add_checkpoint_options(p.add_argument_group("checkpoints"))
    where = p.add_argument_group("where")
    cli.add_device_options(where, "train on these GPUs, such as 0 or 0,1 (default: gpu(0) if MXNet can use it)")
    where.add_argument("--kv-store", choices=["local", "device", "dist_sync", "dist_async"], default="local",
                       help="MXNet's key-value store; dist_* train on its parameter server (dist_launch.py)")
    where.add_argument("--log-every", type=cli.positive_int, default=20, help="batches between progress lines")
    return p


class RecipeParser(argparse.ArgumentParser):
    """Reads a recipe file as one `--flag value` a line, with blank lines and `#` comments; a line
    `@FILE` reads another recipe there."""

    def convert_arg_line_to_args(self, arg_line):
        line = arg_line.split("#", 1)[0].strip()
        if not line:
            return []
        flag, _, value = line.partition(" ")
        return [recipe_path(flag)] + ([value.strip()] if value.strip() else [])

    def parse_known_args(self, args=None, namespace=None):
        try:
            return super().parse_known_args(args, namespace)
        except UnicodeDecodeError as err:  # argparse reads recipe files as text, and lets this through
            self.error("a recipe file is not UTF-8 text (%s)" % err)


def recipe_path(arg):
    """`@FILE` names a recipe relative to the current folder or, where it is not there, to the
    project's, so that `@config/short.args` works from anywhere."""
    if arg.startswith("@") and not os.path.exists(arg[1:]) and os.path.exists(os.path.join(PROJECT, arg[1:])):
        return "@" + os.path.join(PROJECT, arg[1:])
    return arg


def parse_args(argv=None):
    """The options, with what makes no sense refused in one line; on --resume, the run's own where
    they are not given again."""
    p = build_parser()
    argv = [recipe_path(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    args = p.parse_args(argv)
    if args.resume and args.overwrite:
        p.error("--resume carries on the run under --prefix and --overwrite starts a new one there: give one of them")
    record = checkpoint.load_run(args.prefix) if args.resume else None  # CheckpointError where unreadable
    if args.resume and record is None:
        epoch = checkpoint.latest_epoch(args.prefix)  # nothing to resume: say so before creating anything
        logging.warning("%s has no run record (%s): epoch %d resumes with this command's options and the "
                        "defaults, which need not be the run's own", args.prefix, checkpoint.path("run", args.prefix),
                        epoch)
    if record is not None:
        p.set_defaults(**runs_own_options(p, record, args.prefix))
        args = p.parse_args(argv)
    if args.lr_schedule == "cosine" and args.lr_cosine_epochs is None:
        args.lr_cosine_epochs = args.num_epoch  # the curve's length is the run's from now on
    message = refusal(args)
    if message:
        p.error(message + (" (the options not given again are the run's own, from %s)"
                           % checkpoint.path("run", args.prefix) if record else ""))
    return args


def runs_own_options(parser, record, prefix):
    """The options in a run record, each checked by its option's type and choices."""
    actions = {action.dest: action for action in parser._actions}
    saved = in_todays_terms(record.get("options") or {}, prefix)
    return {name: record_value(actions[name], value, prefix) for name, value in saved.items()
            if name in actions and name not in COMMAND_OPTIONS}


def in_todays_terms(options, prefix):
    """The options of a record written before the schedule was one option (--lr-anneal,
    --lr-step-epochs, --lr-cosine) and --stream went, in today's options."""
    options = dict(options)
    if options.pop("stream", False):
        raise checkpoint.CheckpointError("the run under %s read its corpus with --stream, which is gone (--stateful "
                                         "reads it as one text): it cannot go on" % prefix)
    if "lr_schedule" not in options:
        cosine, anneal = options.pop("lr_cosine", False), options.pop("lr_anneal", None)
        if cosine:
            options.update(lr_schedule="cosine", lr_cosine_epochs=options.get("num_epoch"))
        elif anneal:  # the recorded rate is the annealed one, as the optimizer saved it
            options.update(lr_schedule="plateau", lr_factor=anneal)
        elif options.get("lr_step_epochs"):
            options["lr_schedule"] = "step"
    return options


def record_value(action, value, prefix):
    """An option's value from the run record, checked by the option's own type and choices."""
    flag = action.option_strings[0]
    try:
        if isinstance(action.default, bool) or action.nargs == 0:
            if not isinstance(value, bool):
                raise argparse.ArgumentTypeError("expected true or false")
            return value
        if value is None and action.default is None:
            return None
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        typed = action.type(text) if action.type else text
        if action.choices is not None and typed not in action.choices:
            raise argparse.ArgumentTypeError("expected one of %s" % ", ".join(action.choices))
        return typed
    except (argparse.ArgumentTypeError, TypeError) as err:
        raise checkpoint.CheckpointError("the run record %s holds %s %r, which %s does not take (%s): restore the "
                                         "record, or give %s again" % (checkpoint.path("run", prefix), flag, value,
                                                                       flag, err, flag))


def refusal(args):
    """Why the options make no sense together, or None."""
    distributed = args.kv_store.startswith("dist")
    if args.lr_schedule in ("step", "plateau") and not args.lr_factor < 1:
        return "--lr-factor must be below 1 for --lr-schedule %s, got %s" % (args.lr_schedule, args.lr_factor)
    if args.lr_schedule == "step" and not args.lr_step_epochs:
        return "--lr-schedule step needs --lr-step-epochs, such as 10,20"
    if args.lr_schedule == "cosine" and args.lr_final >= args.learning_rate:
        return "--lr-final (%g) must be below --learning-rate (%g)" % (args.lr_final, args.learning_rate)
    if args.lr_schedule == "plateau" and args.warmup_epochs:
        return "--warmup-epochs goes with a planned schedule (constant, step or cosine), not plateau"
    if args.clip_global_norm and distributed:
        return ("--clip-global-norm needs every gradient in one place; under --kv-store dist_* each worker has only "
                "its own: use --clip-gradient")
    if args.lr_schedule == "plateau" and distributed:
        return ("--lr-schedule plateau does not reach the parameter servers, where the optimizer lives under "
                "--kv-store dist_*: use step or cosine, which the servers apply")
    if args.stateful and (args.buckets or args.split_long_lines):
        return "--stateful reads the corpus as one text in steps of --seq-len: not with --buckets or --split-long-lines"
    if args.bf16 and args.rnn_backend != "fused":
        return "--bf16 runs the fused backend's LSTM on oneDNN 3 in bfloat16: add --rnn-backend fused"
    if args.bf16 and device.bf16_unavailable_reason():
        return "--bf16 needs a CPU with AVX-512 bf16: %s" % device.bf16_unavailable_reason()
    if distributed and "DMLC_ROLE" not in os.environ:
        return ("--kv-store %s trains on MXNet's parameter server, which the DMLC_* variables configure: start it "
                "with dist_launch.py (see docs/where.md)" % args.kv_store)
    if args.init_from and os.path.abspath(args.init_from) == os.path.abspath(args.prefix):
        return "--init-from names this run's own --prefix: to carry it on, use --resume"
    if args.init_epoch is not None and not args.init_from:
        return "--init-epoch is the epoch of --init-from: give --init-from too"
    return None
