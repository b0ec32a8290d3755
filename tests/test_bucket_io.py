"""bucket_io.py: the corpus look-up, the vocabulary, and the bucketing iterator against hand-built batches."""
import hashlib
import logging

import numpy as np
import pytest

import bucket_io
import files
from bucket_io import BucketSentenceIter, CorpusError

TEXT = "ab\nabcde\n\nba\ncab\neeeeeeee\nd\n"
STATES = [("l0_init_c", (2, 3)), ("l0_init_h", (2, 3))]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


def all_batches(it):
    it.reset()
    return list(it)


def test_vocab_numbers_characters_from_one_in_order_of_appearance(text_file):
    assert bucket_io.build_vocab(text_file) == {"a": 1, "b": 2, "\n": 3, "c": 4, "d": 5, "e": 6}
    assert bucket_io.text2id("cab", bucket_io.build_vocab(text_file)) == [4, 1, 2]


def test_buckets_padding_labels_and_states(text_file, caplog):
    vocab = bucket_io.build_vocab(text_file)
    with caplog.at_level(logging.INFO):
        it = BucketSentenceIter(text_file, vocab, [8, 3], 2, STATES)
    assert "bucket of len   3 : 4 samples" in caplog.text
    assert "bucket of len   8 : 2 samples" in caplog.text
    assert it.default_bucket_key == 8
    assert it.provide_data == [("data", (2, 8))] + STATES
    assert it.provide_label == [("softmax_label", (2, 8))]

    # ab, ba, cab, d go to bucket 3 (two batches); abcde, eeeeeeee to bucket 8 (one batch); every
    # batch comes 8 wide (FeedForward shares the widest bucket's arrays), padded with 0 past its bucket
    rows = {3: set(), 8: set()}
    batches = all_batches(it)
    assert sorted(b.bucket_key for b in batches) == [3, 3, 8]
    for batch in batches:
        data, label = batch.data[0].asnumpy(), batch.label[0].asnumpy()
        assert data.shape == label.shape == (2, 8)
        assert batch.provide_data[0] == ("data", (2, 8))
        np.testing.assert_array_equal(label[:, :-1], data[:, 1:])
        np.testing.assert_array_equal(label[:, -1], 0)
        np.testing.assert_array_equal(data[:, batch.bucket_key:], 0)
        for state in batch.data[1:]:
            assert state.shape == (2, 3) and not state.asnumpy().any()
        rows[batch.bucket_key] |= {tuple(int(v) for v in row[:batch.bucket_key]) for row in data}
    assert rows[3] == {(1, 2, 0), (2, 1, 0), (4, 1, 2), (5, 0, 0)}
    assert rows[8] == {(1, 2, 4, 5, 6, 0, 0, 0), (6,) * 8}


def test_pad_last_puts_every_sentence_in_a_batch_in_corpus_order(text_file):
    vocab = bucket_io.build_vocab(text_file)
    # batches of 3: bucket 3 holds ab, ba, cab, then d and two rows of padding; bucket 8 abcde, eeeeeeee, padding
    it = BucketSentenceIter(text_file, vocab, [8, 3], 3, [("s", (3, 1))], shuffle=False, pad_last=True)
    batches = [(b.bucket_key, [tuple(int(v) for v in row[:b.bucket_key]) for row in b.data[0].asnumpy()])
               for b in all_batches(it)]
    assert batches == [(3, [(1, 2, 0), (2, 1, 0), (4, 1, 2)]), (3, [(5, 0, 0), (0, 0, 0), (0, 0, 0)]),
                       (8, [(1, 2, 4, 5, 6, 0, 0, 0), (6,) * 8, (0,) * 8])]
    it.reset()
    assert [(b.bucket_key, [tuple(int(v) for v in row[:b.bucket_key]) for row in b.data[0].asnumpy()])
            for b in all_batches(it)] == batches


def test_incomplete_batches_are_dropped(text_file):
    vocab = bucket_io.build_vocab(text_file)
    it = BucketSentenceIter(text_file, vocab, [8], 4, [("l0_init_c", (4, 3)), ("l0_init_h", (4, 3))])
    assert it.num_batches == 1 and len(all_batches(it)) == 1


def test_order_is_seeded_and_changes_each_epoch(text_file):
    vocab = bucket_io.build_vocab(text_file)

    def epochs(seed):
        it = BucketSentenceIter(text_file, vocab, [8], 1, [("l0_init_c", (1, 3)), ("l0_init_h", (1, 3))], seed=seed)
        out = []
        for _ in range(4):
            out.append([tuple(b.data[0].asnumpy()[0]) for b in it])
            it.reset()
        return out

    first = epochs(seed=5)
    assert first == epochs(seed=5)
    assert len({tuple(e) for e in first}) > 1
    assert all(sorted(e) == sorted(first[0]) for e in first)


def test_long_line_is_an_error_naming_it(text_file):
    vocab = bucket_io.build_vocab(text_file)
    with pytest.raises(CorpusError, match="line 6 is 8 characters long"):
        BucketSentenceIter(text_file, vocab, [5], 2, STATES)


def test_split_long_lines_cuts_them(text_file):
    assert bucket_io.split_sentences("ab\neeeeeeee\n", "\n", 5, split_long_lines=True) == ["ab", "eeeee", "eee"]
    vocab = bucket_io.build_vocab(text_file)
    it = BucketSentenceIter(text_file, vocab, [5], 2, STATES, split_long_lines=True)
    assert sum(len(rows) for rows in it.data) == 7


def test_obama_has_83_characters_and_8290_samples(obama_path, caplog):
    vocab = bucket_io.build_vocab(obama_path)
    assert len(vocab) == 83
    states = [("l0_init_c", (32, 4)), ("l0_init_h", (32, 4))]
    with caplog.at_level(logging.INFO):
        it = BucketSentenceIter(obama_path, vocab, [129], 32, states)
    assert "bucket of len 129 : 8290 samples" in caplog.text
    assert it.num_batches == 259


def test_corpus_lookup_prefers_explicit_path(text_file):
    assert bucket_io.find_corpus(text_file) == text_file
    with pytest.raises(CorpusError, match="not found"):
        bucket_io.find_corpus(text_file + ".missing")


def test_corpus_lookup_copies_from_mirror_after_checking_sha(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "obama.txt").write_bytes(b"not the corpus")
    target = str(tmp_path / "data" / "obama.txt")
    with pytest.raises(CorpusError, match="sha256"):
        bucket_io.find_corpus(None, mirror=str(mirror), target=target, download=False)
    monkeypatch.setattr(bucket_io, "OBAMA_SHA256", hashlib.sha256(b"not the corpus").hexdigest())
    assert bucket_io.find_corpus(None, mirror=str(mirror), target=target, download=False) == target
    assert open(target, "rb").read() == b"not the corpus"


def test_corpus_lookup_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(bucket_io, "OBAMA_URL", "http://127.0.0.1:9/char_lstm.zip")
    with pytest.raises(CorpusError, match="data/README.md"):
        bucket_io.find_corpus(None, mirror=str(tmp_path), target=str(tmp_path / "d" / "obama.txt"))
    assert not (tmp_path / "d" / "obama.txt").exists()


def test_non_utf8_corpus_names_the_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"abc\ncaf\xe9\n")
    with pytest.raises(files.FileError, match="byte offset 7"):
        bucket_io.build_vocab(str(path))


def test_resume_at_reproduces_an_epoch_from_any_batch(text_file):
    vocab = bucket_io.build_vocab(text_file)
    states = [("l0_init_c", (1, 3)), ("l0_init_h", (1, 3))]

    def rows(it):
        return [tuple(b.data[0].asnumpy()[0]) for b in it]

    straight = BucketSentenceIter(text_file, vocab, [8], 1, states, seed=3)
    epochs = []
    for _ in range(3):  # FeedForward resets before each epoch
        straight.reset()
        epochs.append(rows(straight))
    resumed = BucketSentenceIter(text_file, vocab, [8], 1, states, seed=3)
    resumed.resume_at(2, batch=2)
    resumed.reset()
    assert rows(resumed) == epochs[2][2:]
    resumed.reset()  # the epoch after it starts from its beginning
    straight.reset()
    assert rows(resumed) == rows(straight)


def test_stream_batches_continue_each_stream():
    states = [("l0_init_c", (2, 3)), ("l0_init_h", (2, 3))]
    it = bucket_io.StreamIter(list(range(1, 24)), 2, 3, states)  # 2 streams of 11; 3 batches of 3 steps
    batches = all_batches(it)
    assert [b.data[0].asnumpy().tolist() for b in batches] == [
        [[1, 2, 3], [12, 13, 14]], [[4, 5, 6], [15, 16, 17]], [[7, 8, 9], [18, 19, 20]]]
    assert [b.label[0].asnumpy().tolist() for b in batches] == [
        [[2, 3, 4], [13, 14, 15]], [[5, 6, 7], [16, 17, 18]], [[8, 9, 10], [19, 20, 21]]]
    assert all(b.data[1] is it.states[0] and b.bucket_key == 3 for b in batches)


def test_stream_evaluation_scores_every_character_but_each_streams_first():
    it = bucket_io.StreamIter(list(range(1, 24)), 2, 3, [("s", (2, 1))], pad_last=True)
    labels = np.concatenate([b.label[0].asnumpy() for b in all_batches(it)], axis=1)
    assert sorted(labels[labels > 0].astype(int).tolist()) == [i for i in range(1, 24) if i not in (1, 13)]


def test_reset_zeroes_the_carried_states_and_resume_keeps_them():
    it = bucket_io.StreamIter(list(range(1, 24)), 2, 3, [("s", (2, 1))])
    it.states[0][:] = 5
    it.reset()
    assert it.states[0].asnumpy().tolist() == [[0], [0]]
    it.resume_at(0, 2)
    it.states[0][:] = 7  # as the carried states of a partial checkpoint are put back
    it.reset()
    assert [b.data[0].asnumpy()[0].tolist() for b in it] == [[7, 8, 9]] and it.states[0].asnumpy()[0, 0] == 7


def test_a_hard_wrapped_text_is_joined_and_the_held_out_lines_are_the_per_line_ones():
    wrapped = "abcd\nefgh\nijkl\nmn\n"
    assert bucket_io.wrap_length(wrapped) == 4
    assert bucket_io.stream_texts(wrapped, val_frac=0.5) == ("abcdefgh", "ijklmn")
    own = "ab\nabcde\nd\n"  # newlines of its own: kept
    assert bucket_io.wrap_length(own) is None
    assert bucket_io.stream_texts(own, val_frac=0.34) == ("ab\nabcde", "d")
    per_line_train, per_line_val = bucket_io.corpus_sentences(wrapped, 4, val_frac=0.5)
    assert "".join(per_line_val) == bucket_io.stream_texts(wrapped, val_frac=0.5)[1]
