"""An independent numpy LSTM language model, written from the tutorial's equations, for the tests."""
import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def random_params(num_layers, input_size, num_hidden, num_embed, num_label, seed=0, scale=0.5):
    """Random parameters in the tutorial's names, as float32 numpy arrays."""
    rng = np.random.RandomState(seed)
    params = {"embed_weight": rng.randn(input_size, num_embed),
              "cls_weight": rng.randn(num_label, num_hidden),
              "cls_bias": rng.randn(num_label)}
    for i in range(num_layers):
        fan_in = num_embed if i == 0 else num_hidden
        params["l%d_i2h_weight" % i] = rng.randn(4 * num_hidden, fan_in)
        params["l%d_i2h_bias" % i] = rng.randn(4 * num_hidden)
        params["l%d_h2h_weight" % i] = rng.randn(4 * num_hidden, num_hidden)
        params["l%d_h2h_bias" % i] = rng.randn(4 * num_hidden)
    return {k: (scale * v).astype(np.float32) for k, v in params.items()}


def lstm_cell(x, c, h, w_i2h, b_i2h, w_h2h, b_h2h):
    gates = x @ w_i2h.T + b_i2h + h @ w_h2h.T + b_h2h
    n = c.shape[1]
    i, g, f, o = gates[:, :n], gates[:, n:2 * n], gates[:, 2 * n:3 * n], gates[:, 3 * n:]
    c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h_new = sigmoid(o) * np.tanh(c_new)
    return c_new, h_new


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def step(params, ids, states, input_scale=1.0):
    """One step for a batch of ids; `states` is a list of (c, h) per layer, updated in place.
    `input_scale` multiplies the embedded ids (a dropout mask). Returns the softmax probabilities
    (batch, num_label)."""
    x = params["embed_weight"][np.asarray(ids, dtype=int)].astype(np.float64) * input_scale
    for layer, (c, h) in enumerate(states):
        c, h = lstm_cell(x, c, h, params["l%d_i2h_weight" % layer], params["l%d_i2h_bias" % layer],
                         params["l%d_h2h_weight" % layer], params["l%d_h2h_bias" % layer])
        states[layer] = (c, h)
        x = h
    return softmax(x @ params["cls_weight"].T + params["cls_bias"])


def zero_states(num_layers, batch, num_hidden):
    return [(np.zeros((batch, num_hidden)), np.zeros((batch, num_hidden))) for _ in range(num_layers)]


def unrolled_probs(params, data, num_layers, num_hidden, input_scales=None):
    """Probabilities for a (batch, seq_len) id array, time-major: (seq_len * batch, num_label).
    `input_scales`, (batch, seq_len, num_embed), multiply the embedded ids."""
    batch, seq_len = data.shape
    states = zero_states(num_layers, batch, num_hidden)
    return np.concatenate([step(params, data[:, t], states, 1.0 if input_scales is None else input_scales[:, t])
                           for t in range(seq_len)], axis=0)


def held_out_perplexity(params, sentences, num_layers, num_hidden):
    """The perplexity over id sequences, each read from zero states, of every character but each
    sequence's first (the per-line protocol: nothing predicts a line's first character)."""
    nll, count = 0.0, 0
    for ids in sentences:
        probs = unrolled_probs(params, np.asarray([ids]), num_layers, num_hidden)
        nll -= np.log(probs[np.arange(len(ids) - 1), ids[1:]]).sum()
        count += len(ids) - 1
    return float(np.exp(nll / count))
