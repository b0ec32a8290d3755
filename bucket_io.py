"""Corpus reading, the character vocabulary, and the bucketing data iterator."""
import bisect
import hashlib
import logging
import os
import shutil
import urllib.request
import zipfile

import numpy as np

import device  # noqa: F401  (makes the CUDA libraries visible before mxnet loads)
import mxnet as mx

import files

REPO_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CORPUS = os.path.join(REPO_DIR, "data", "obama.txt")
# A folder holding obama.txt to copy from when data/obama.txt is missing: $CORPUS_MIRROR, else the
# project's shared data folder beside the checkout
MIRROR_VARIABLE = "CORPUS_MIRROR"
DEFAULT_MIRROR = os.path.join(REPO_DIR, "..", "shared", "data")


def corpus_mirror():
    return os.environ.get(MIRROR_VARIABLE) or DEFAULT_MIRROR
OBAMA_SHA256 = "83ed83f6378b2b9a7d6a87fc158fb176267017ac4d5a8da0557f1b11c6b05285"
OBAMA_URL = "http://data.mxnet.io/data/char_lstm.zip"


class CorpusError(files.FileError):
    """The corpus cannot be found or read, or does not fit the buckets."""


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _install(source, target):
    """Copies `source` to `target` through a temporary name, so no half file is ever left."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = target + ".part"
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _download_obama(target, timeout=10):
    tmp_zip = target + ".zip.part"
    try:
        with urllib.request.urlopen(OBAMA_URL, timeout=timeout) as response, open(tmp_zip, "wb") as out:
            shutil.copyfileobj(response, out)
        with zipfile.ZipFile(tmp_zip) as archive:
            member = next(n for n in archive.namelist() if n.endswith("obama.txt"))
            with archive.open(member) as src, open(target + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst)
        if _sha256(target + ".part") != OBAMA_SHA256:
            os.remove(target + ".part")
            return False
        os.replace(target + ".part", target)
        return True
    except Exception:  # any network or archive failure: the caller says how to get the file
        return False
    finally:
        if os.path.exists(tmp_zip):
            os.remove(tmp_zip)


def find_corpus(data=None, mirror=None, target=DEFAULT_CORPUS, download=True):
    """The path of the training corpus.

    `data` if given; else `target` (data/obama.txt); if that is missing, a copy from the
    `mirror` folder (default: corpus_mirror()) once its sha256 matches; else the tutorial's
    download; else an error.
    """
    mirror = mirror or corpus_mirror()
    if data is not None:
        if not os.path.exists(data):
            raise CorpusError("corpus file not found: %s" % data)
        if not os.path.isfile(data):
            raise CorpusError("the corpus %s is not a regular file (a device, a pipe or a folder): give a text file"
                              % data)
        return data
    if os.path.isfile(target):
        return target
    candidate = os.path.join(mirror, "obama.txt")
    if os.path.isfile(candidate):
        if _sha256(candidate) != OBAMA_SHA256:
            raise CorpusError("%s does not have the expected sha256 %s; not copying it" % (candidate, OBAMA_SHA256))
        _install(candidate, target)
        logging.info("Copied the corpus from %s to %s", candidate, target)
        return target
    if download and _download_obama(target):
        logging.info("Downloaded the corpus from %s to %s", OBAMA_URL, target)
        return target
    raise CorpusError("no corpus: %s is missing, %s has no obama.txt and %s cannot be reached; "
                      "put obama.txt in data/ (see data/README.md) or pass --data FILE"
                      % (target, mirror, OBAMA_URL))


# What a corpus may hold: its ids become float32 arrays, a line of the per-line protocol padded to
# the longest bucket, so a larger text would not fit this project's machines.
MAX_CORPUS_BYTES = 256 << 20


def read_content(path, what="corpus", limit=MAX_CORPUS_BYTES):
    """The whole text of a UTF-8 corpus file (files.read_text)."""
    return files.read_text(path, what, limit)


def vocab_from_text(text):
    """Each character numbered from 1 in order of first appearance; 0 is left for padding."""
    vocab = {}
    for char in text:
        if char not in vocab:
            vocab[char] = len(vocab) + 1
    return vocab


def build_vocab(path):
    """The vocabulary of a corpus file (obama.txt gives 83 entries, the newline among them)."""
    return vocab_from_text(read_content(path))


def text2id(sentence, vocab):
    """The ids of a sentence's characters."""
    return [vocab[char] for char in sentence]


def split_sentences(content, seperate_char, max_len, split_long_lines=False):
    """The non-empty sentences of a text; a sentence longer than `max_len` is an error
    naming its line, or is cut into `max_len`-sized pieces."""
    sentences = []
    for number, sentence in enumerate(content.split(seperate_char), start=1):
        if len(sentence) > max_len:
            if not split_long_lines:
                raise CorpusError("line %d is %d characters long, more than the largest bucket (%d)%s; use larger "
                                  "--buckets or --split-long-lines" % (number, len(sentence), max_len,
                                                                      _invisible_characters(sentence)))
            sentences += [sentence[i:i + max_len] for i in range(0, len(sentence), max_len)]
        elif sentence:
            sentences.append(sentence)
    return sentences


def _invisible_characters(line):
    """What a line holds that no one sees, said for an error message ('' if nothing)."""
    said = []
    if line.startswith("\ufeff"):
        said.append("it starts with a byte-order mark, U+FEFF")
    if line.endswith("\r"):
        said.append("it ends in '\\r': the file has Windows line ends (CRLF), whose \\r counts as a character")
    return " (%s)" % "; ".join(said) if said else ""


def corpus_sentences(content, max_len, split_long_lines=False, val_frac=0.0):
    """The training and the held-out sentences of a text, one a line; the last `val_frac` of them
    held out."""
    sentences = split_sentences(content, "\n", max_len, split_long_lines)
    held_out = int(round(len(sentences) * val_frac))
    return sentences[:len(sentences) - held_out], sentences[len(sentences) - held_out:]


def worker_share(sentences, buckets, batch_size, rank, num_workers):
    """Worker `rank`'s share of the sentences, and the batches an epoch that every worker can make
    (a synchronous store needs the same number from each)."""
    per_worker = len(sentences) // num_workers
    shares = [sentences[r * per_worker:(r + 1) * per_worker] for r in range(num_workers)]
    return shares[rank], min(count_batches(share, buckets, batch_size) for share in shares)


def count_batches(sentences, buckets, batch_size):
    """How many full batches BucketSentenceIter makes of these sentences."""
    sizes = sorted(buckets)
    counts = [0] * len(sizes)
    for sentence in sentences:
        counts[bisect.bisect_left(sizes, len(sentence))] += 1
    return sum(count // batch_size for count in counts)


_default_text2id, _default_read_content = text2id, read_content


class BucketSentenceIter(mx.io.DataIter):
    """Batches of sentences grouped by length into buckets, as FeedForward's bucketing expects.

    Each sentence goes to the smallest bucket that holds it; the label is the data shifted left by
    one with 0 at the end. A batch's `bucket_key` is its bucket, and the graph of that length reads
    the first `bucket_key` steps of it: every batch comes as wide as the largest bucket, padded with
    0, because MXNet 1.9.1's FeedForward shares the largest bucket's input arrays with the others
    and cannot reshape them to a smaller size. The zero initial LSTM states are fed as data.

    Batch order is shuffled each epoch from `seed` and the epoch number alone, so that a resumed
    run sees the same order (`shuffle=False` keeps the sentences' order). `pad_last` adds, for each
    bucket, a last batch filled up with rows of padding, so that every sentence is in a batch (the
    metric ignores the padding label): evaluation scores all of the held-out text. `sentences` (a
    list of strings) replaces reading `path`; `max_batches` caps the batches of an epoch.
    """

    def __init__(self, path, vocab, buckets, batch_size, init_states, data_name="data",
                 label_name="softmax_label", seperate_char="\n", text2id=None, read_content=None,
                 seed=0, split_long_lines=False, sentences=None, shuffle=True, max_batches=None, pad_last=False):
        super().__init__(batch_size)
        text2id = text2id or _default_text2id
        read_content = read_content or _default_read_content
        self.buckets = sorted(buckets)
        self.default_bucket_key = self.buckets[-1]
        self.data_name, self.label_name = data_name, label_name
        self.init_states = init_states
        self.init_state_arrays = [mx.nd.zeros(shape) for _, shape in init_states]
        self.provide_data = [(data_name, (batch_size, self.default_bucket_key))] + list(init_states)
        self.provide_label = [(label_name, (batch_size, self.default_bucket_key))]

        if sentences is None:
            sentences = split_sentences(read_content(path), seperate_char, self.default_bucket_key, split_long_lines)
        per_bucket = [[] for _ in self.buckets]
        for sentence in sentences:
            ids = text2id(sentence, vocab)
            index = next(i for i, size in enumerate(self.buckets) if size >= len(ids))
            per_bucket[index].append(ids)
        self.data = []
        for rows in per_bucket:
            padded = -(-len(rows) // batch_size) * batch_size if pad_last else len(rows)
            array = np.zeros((padded, self.default_bucket_key), dtype=np.float32)
            for j, ids in enumerate(rows):
                array[j, :len(ids)] = ids
            self.data.append(array)

        logging.info("Summary of dataset ==================")
        for size, rows in zip(self.buckets, per_bucket):
            logging.info("bucket of len %3d : %d samples", size, len(rows))
        self.seed, self.shuffle, self.max_batches = seed, shuffle, max_batches
        self.orders_drawn = 0  # the constructor's reset draws order 0; FeedForward's first reset, 1
        self.skip_batches = 0
        self.reset()

    @property
    def num_batches(self):
        full = sum(len(array) // self.batch_size for array in self.data)
        return full if self.max_batches is None else min(full, self.max_batches)

    def resume_at(self, epoch, batch=0):
        """Makes the next reset start epoch `epoch` (0-based, as FeedForward counts) at batch `batch`."""
        self.orders_drawn = epoch + 1
        self.skip_batches = batch

    def reset(self):
        """Draws the next epoch's order: which bucket each batch comes from, and which rows it holds."""
        rng = np.random.RandomState([self.seed, self.orders_drawn])
        self.orders_drawn += 1
        plan = [np.full(len(array) // self.batch_size, i, dtype=int) for i, array in enumerate(self.data)]
        plan = np.concatenate(plan) if plan else np.zeros(0, int)
        if self.shuffle:
            self.bucket_plan = rng.permutation(plan)[:self.num_batches]
            self.row_order = [rng.permutation(len(array)) for array in self.data]
        else:
            self.bucket_plan = plan[:self.num_batches]
            self.row_order = [np.arange(len(array)) for array in self.data]
        self.bucket_cursor = [0] * len(self.data)
        self.batch_cursor = 0
        for _ in range(self.skip_batches):
            self._advance()
        self.skip_batches = 0

    def _advance(self):
        i = self.bucket_plan[self.batch_cursor]
        self.batch_cursor += 1
        start = self.bucket_cursor[i]
        self.bucket_cursor[i] += self.batch_size
        return i, self.row_order[i][start:start + self.batch_size]

    def next(self):
        if self.batch_cursor >= len(self.bucket_plan):
            raise StopIteration
        i, rows = self._advance()
        data = self.data[i][rows]
        label = np.zeros_like(data)
        label[:, :-1] = data[:, 1:]
        return mx.io.DataBatch(data=[mx.nd.array(data)] + self.init_state_arrays, label=[mx.nd.array(label)],
                               bucket_key=self.buckets[i], provide_data=self.provide_data,
                               provide_label=self.provide_label)


def wrap_length(content):
    """The width at which a text is hard-wrapped (every line but the last that long), or None
    when its newlines are its own. obama.txt is wrapped at 129: its lines cut words in two."""
    lines = content[:-1].split("\n") if content.endswith("\n") else content.split("\n")
    lengths = {len(line) for line in lines[:-1]}
    return lengths.pop() if len(lengths) == 1 and len(lines) > 2 else None


def stream_texts(content, val_frac=0.0):
    """The training and held-out text for stateful training. The held-out text is the same last
    `val_frac` of the lines that the per-line protocol holds out. A hard-wrapped text's newlines
    are wrap points, not text: they are joined, so the model reads the running text."""
    lines = content.split("\n")
    if content.endswith("\n"):
        lines = lines[:-1]
    held_out = int(round(len(lines) * val_frac))
    joiner = "" if wrap_length(content) else "\n"
    return joiner.join(lines[:len(lines) - held_out]), joiner.join(lines[len(lines) - held_out:])


class StreamIter(mx.io.DataIter):
    """Batches that continue `batch_size` contiguous streams of one text, for stateful training
    (truncated back-propagation through time, as char-rnn and word_language_model train).

    The text is cut into `batch_size` streams of equal length; batch i holds characters
    [i * seq_len, (i + 1) * seq_len) of every stream, and its label the character after each. The
    initial LSTM states of a batch are `states`, which callbacks.carry_states sets to the final
    states of the batch before; reset() zeroes them. `pad_last` adds a last batch padded with 0
    (a label the metric ignores), so that an evaluation counts every character but each stream's
    first. `max_batches` caps the batches of an epoch (workers of a synchronous store).
    """

    def __init__(self, ids, batch_size, seq_len, init_states, pad_last=False, max_batches=None,
                 data_name="data", label_name="softmax_label"):
        super().__init__(batch_size)
        length = -(-len(ids) // batch_size) if pad_last else len(ids) // batch_size
        flat = np.zeros(batch_size * length, dtype=np.float32)
        flat[:min(len(ids), flat.size)] = ids[:flat.size]
        batches = max(0, -(-(length - 1) // seq_len) if pad_last else (length - 1) // seq_len)
        self.streams = np.zeros((batch_size, batches * seq_len + 1), dtype=np.float32)
        width = min(length, self.streams.shape[1])
        self.streams[:, :width] = flat.reshape(batch_size, length)[:, :width]
        self.seq_len, self.default_bucket_key = seq_len, seq_len
        self.batches = batches if max_batches is None else min(batches, max_batches)
        self.data_name, self.label_name = data_name, label_name
        self.init_states = init_states
        self.states = [mx.nd.zeros(shape) for _, shape in init_states]
        self.provide_data = [(data_name, (batch_size, seq_len))] + list(init_states)
        self.provide_label = [(label_name, (batch_size, seq_len))]
        logging.info("Streams: %d of %d characters, %d batches of %d steps", batch_size, length, self.batches, seq_len)
        self.cursor, self.skip_batches = 0, 0

    @property
    def num_batches(self):
        return self.batches

    def resume_at(self, _epoch, batch=0):
        """Makes the next reset start at batch `batch`; the caller then sets `states` (the carried ones)."""
        self.skip_batches = batch

    def reset(self):
        self.cursor, self.skip_batches = self.skip_batches, 0
        if self.cursor == 0:
            for state in self.states:
                state[:] = 0

    def next(self):
        if self.cursor >= self.batches:
            raise StopIteration
        begin = self.cursor * self.seq_len
        self.cursor += 1
        data = self.streams[:, begin:begin + self.seq_len]
        label = self.streams[:, begin + 1:begin + self.seq_len + 1]
        return mx.io.DataBatch(data=[mx.nd.array(data)] + self.states, label=[mx.nd.array(label)],
                               bucket_key=self.seq_len, provide_data=self.provide_data,
                               provide_label=self.provide_label)


def line_iterators(corpus, vocab, buckets, batch_size, states, seed=0, shuffle=True, split_long_lines=False,
                   val_frac=0.0, worker=(0, 1)):
    """The training iterator of the per-line protocol, and the held-out one (None where nothing is
    held out): one sample a line, in buckets. `worker` (rank, count): a distributed worker's share."""
    buckets = sorted(buckets)
    train_sentences, val_sentences = corpus_sentences(read_content(corpus), buckets[-1], split_long_lines, val_frac)
    max_batches = None
    if worker[1] > 1:
        train_sentences, max_batches = worker_share(train_sentences, buckets, batch_size, *worker)
        logging.info("Worker %d of %d: %d sentences, %d batches of %d an epoch", worker[0], worker[1],
                     len(train_sentences), max_batches, batch_size)
    data_train = BucketSentenceIter(corpus, vocab, buckets, batch_size, states, seed=seed, sentences=train_sentences,
                                    shuffle=shuffle, max_batches=max_batches)
    if data_train.num_batches == 0:
        raise CorpusError("%s has fewer sentences than one batch (%d) in any bucket" % (corpus, batch_size))
    if not val_sentences:
        return data_train, None
    # every held-out sentence, in the same batches at every evaluation: the same text is scored each time
    return data_train, BucketSentenceIter(corpus, vocab, buckets, batch_size, states, sentences=val_sentences,
                                          shuffle=False, pad_last=True)


def stream_iterators(corpus, vocab, seq_len, batch_size, states, val_frac=0.0, worker=(0, 1)):
    """The iterators of stateful training: the running text in `batch_size` streams, the held-out
    tail (the lines the per-line protocol holds out) in as many, every character of it scored."""
    content = read_content(corpus)
    if wrap_length(content):
        logging.info("The corpus is hard-wrapped at %d characters: its newlines are joined, as one running text",
                     wrap_length(content))
    train_text, val_text = stream_texts(content, val_frac)
    max_batches = None
    if worker[1] > 1:  # each worker its own contiguous part, and as many batches as the shortest
        share = len(train_text) // worker[1]
        max_batches = (share // batch_size - 1) // seq_len
        train_text = train_text[worker[0] * share:(worker[0] + 1) * share]
    data_train = StreamIter(text2id(train_text, vocab), batch_size, seq_len, states, max_batches=max_batches)
    if data_train.num_batches == 0:
        raise CorpusError("%s is too short for %d streams of %d steps" % (corpus, batch_size, seq_len))
    if len(val_text) < 2 * batch_size:
        return data_train, None
    return data_train, StreamIter(text2id(val_text, vocab), batch_size, seq_len, states, pad_last=True)
