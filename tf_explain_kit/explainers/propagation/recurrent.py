"""LSTM, GRU and SimpleRNN layers written as :mod:`.steps`, in a loop over time.

The step functions follow Keras' cells exactly (same weights, same gate order, GRU's
``reset_after`` both ways), so the forward value is the layer's own; what changes is how
each propagation method treats their parts: LRP holds the gates constant and gives the
signal all of the product's relevance (Arras et al., 2017), DeepLIFT splits every product
exactly. The loop is ``keras.ops.scan`` (a while loop): tracing costs the same for any
sequence length, and the length may be left open.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from .steps import Steps

L = keras.layers


def rnn_call(layer: Any, steps: Steps):
    """A replacement for ``layer.call`` (an LSTM, GRU or SimpleRNN) built from ``steps``."""
    cell = layer.cell
    step = {L.LSTMCell: _lstm_step, L.GRUCell: _gru_step, L.SimpleRNNCell: _simple_step}[type(cell)]

    def call(sequences, initial_state=None, mask=None, training=False):
        n = ops.shape(sequences)[0]
        sizes = cell.state_size if isinstance(cell.state_size, (list, tuple)) else [cell.state_size]
        states = [ops.zeros((n, size), sequences.dtype) for size in sizes] if initial_state is None else list(keras.tree.flatten(initial_state))
        series = ops.transpose(sequences, (1, 0, 2))  # time-major
        keep = None if mask is None else ops.expand_dims(ops.transpose(ops.cast(mask, "bool")), -1)
        if layer.go_backwards:  # processed, and returned, from the last step (as Keras does)
            series, keep = ops.flip(series, 0), None if keep is None else ops.flip(keep, 0)

        def body(carry, inputs):
            *old, previous = carry
            x, kept = (inputs, None) if keep is None else inputs
            output, new = step(cell, x, list(old), steps)
            if kept is not None:  # masked steps keep the previous state and output (or zeros)
                new = [ops.where(kept, a, b) for a, b in zip(new, old)]
                output = ops.where(kept, output, ops.zeros_like(output) if layer.zero_output_for_mask else previous)
            return [*new, output], [*new, output]  # Keras' scan stacks outputs shaped as the carry

        carry, stacked = ops.scan(body, [*states, ops.zeros((n, cell.units), sequences.dtype)], series if keep is None else (series, keep))
        result = ops.transpose(stacked[-1], (1, 0, 2)) if layer.return_sequences else carry[-1]
        return [result, *carry[:-1]] if layer.return_state else result

    return call


def _projection(x: Any, kernel: Any, bias: Any = None) -> Any:
    z = ops.matmul(x, kernel)
    return z if bias is None else z + bias


def _lstm_step(cell: L.LSTMCell, x: Any, states: list, steps: Steps) -> tuple[Any, list]:
    h, c = states
    z = steps.linear(_projection(x, cell.kernel, cell.bias if cell.use_bias else None) + ops.matmul(h, cell.recurrent_kernel))
    z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
    gate = lambda v: steps.elementwise(v, cell.recurrent_activation)  # noqa: E731
    i, f, o = gate(z_i), gate(z_f), gate(z_o)
    candidate = steps.elementwise(z_c, cell.activation)
    c = steps.product(f, c, gate=0) + steps.product(i, candidate, gate=0)
    h = steps.product(o, steps.elementwise(c, cell.activation), gate=0)
    return h, [h, c]


def _gru_step(cell: L.GRUCell, x: Any, states: list, steps: Steps) -> tuple[Any, list]:
    (h,) = states
    units = cell.units
    if cell.use_bias and cell.reset_after:
        input_bias, recurrent_bias = cell.bias[0], cell.bias[1]
    else:
        input_bias, recurrent_bias = (cell.bias if cell.use_bias else None), None
    x_z, x_r, x_h = ops.split(_projection(x, cell.kernel, input_bias), 3, axis=-1)
    kernel_zr, kernel_h = cell.recurrent_kernel[:, : 2 * units], cell.recurrent_kernel[:, 2 * units :]
    if cell.reset_after:
        inner = _projection(h, cell.recurrent_kernel, recurrent_bias)
        rec_z, rec_r, rec_h = inner[:, :units], inner[:, units : 2 * units], inner[:, 2 * units :]
    else:
        rec_z, rec_r = ops.split(ops.matmul(h, kernel_zr), 2, axis=-1)
    z = steps.elementwise(steps.linear(x_z + rec_z), cell.recurrent_activation)
    r = steps.elementwise(steps.linear(x_r + rec_r), cell.recurrent_activation)
    if cell.reset_after:
        recurrent_h = steps.product(r, rec_h, gate=0)
    else:
        recurrent_h = ops.matmul(steps.product(r, h, gate=0), kernel_h)
    candidate = steps.elementwise(steps.linear(x_h + recurrent_h), cell.activation)
    h = steps.product(z, h, gate=0) + steps.product(1 - z, candidate, gate=0)
    return h, [h]


def _simple_step(cell: L.SimpleRNNCell, x: Any, states: list, steps: Steps) -> tuple[Any, list]:
    (h,) = states
    z = steps.linear(_projection(x, cell.kernel, cell.bias) + ops.matmul(h, cell.recurrent_kernel))
    h = steps.elementwise(z, cell.activation) if cell.activation is not None else z
    return h, [h]
