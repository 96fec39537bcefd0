"""The one module that knows TensorFlow: compiled forward and gradient functions.

Everything else in the package is numpy in, numpy out. Another Keras backend could be
supported by writing this module again with the same public surface.

Layers are observed and replaced through *hooks*: while a function is traced, a layer's
``call`` is wrapped on the instance (and removed afterwards), which works the same for
Sequential, Functional, subclassed and nested models and needs no private Keras API.
A compiled function is traced inside its hooks. Its traced graph is then called directly,
except under a distribution strategy, which traces again per replica device: there the
hooks are installed around every call (a cheap attribute swap).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from .structure import all_layers

__all__ = ["CompiledModel", "GradientBreak", "LayerCall", "OpReport", "classify_call", "float32_compute", "fused", "vjp", "with_backward"]


class GradientBreak(Exception):
    """Raised when the explained score is not differentiable with respect to a tensor."""


class LayerCall:
    """What a hook saw of one layer (or operation) call during a probe: its tensor
    arguments (``inputs``, positional only), its ``output`` and the raw ``args``/``kwargs``."""

    def __init__(self, layer: keras.layers.Layer, inputs: list, output: Any, args: tuple = (), kwargs: dict | None = None):
        self.layer = layer
        self.inputs = inputs
        self.output = output
        self.args, self.kwargs = args, kwargs or {}

    @property
    def output_shape(self) -> tuple | None:
        return tuple(self.output.shape) if tf.is_tensor(self.output) else None


@contextlib.contextmanager
def _hooked(layer: keras.layers.Layer, make_wrapper: Callable[[Callable], Callable], attribute: str = "call") -> Iterator[None]:
    had_own = attribute in layer.__dict__
    original = getattr(layer, attribute)
    object.__setattr__(layer, attribute, make_wrapper(original))
    try:
        yield
    finally:
        if had_own:
            object.__setattr__(layer, attribute, original)
        else:
            object.__delattr__(layer, attribute)


@contextlib.contextmanager
def float32_compute(layers: Iterable[keras.layers.Layer]) -> Iterator[None]:
    """Trace ``layers`` with float32 compute (their variables are float32 already): under a
    ``mixed_float16`` or ``mixed_bfloat16`` policy, explanations are computed in float32."""
    changed = [(layer, layer.dtype_policy) for layer in layers if getattr(layer, "compute_dtype", "float32") in ("float16", "bfloat16")]
    for layer, _ in changed:
        layer.dtype_policy = "float32"
    try:
        yield
    finally:
        for layer, policy in changed:
            layer.dtype_policy = policy


class _Slot:
    """Carries a tensor out of (or into) a hooked layer call during tracing."""

    value: Any = None


def _record(slot: _Slot) -> Callable[[Callable], Callable]:
    def make(original):
        def call(*args, **kwargs):
            slot.value = original(*args, **kwargs)
            return slot.value

        return call

    return make


def _replace(slot: _Slot) -> Callable[[Callable], Callable]:
    def make(original):
        def call(*args, **kwargs):
            return slot.value

        return call

    return make


def _strip_activation(layer: keras.layers.Layer, slot: _Slot) -> Callable[[Callable], Callable]:
    """Record the pre-activation of a softmax/sigmoid output layer into ``slot``."""

    def make(original):
        if hasattr(layer, "activation") and not isinstance(layer, keras.layers.Activation):

            def call(*args, **kwargs):
                activation = layer.activation
                object.__setattr__(layer, "activation", keras.activations.linear)
                try:
                    slot.value = original(*args, **kwargs)
                finally:
                    object.__setattr__(layer, "activation", activation)
                return activation(slot.value)

        else:  # Activation or Softmax layer: its input is the logit

            def call(*args, **kwargs):
                slot.value = args[0]
                return original(*args, **kwargs)

        return call

    return make


def _log_calls(layer: keras.layers.Layer, calls: list[LayerCall]) -> Callable[[Callable], Callable]:
    def make(original):
        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            calls.append(LayerCall(layer, [a for a in tf.nest.flatten(args) if tf.is_tensor(a)], out, args, kwargs))
            return out

        return call

    return make


def with_backward(fn: Callable, inputs: Any, backward: Callable, record: bool = True) -> Any:
    """``fn(inputs)`` as it is, with the gradient for ``inputs`` (a tensor or a structure of
    tensors) given by ``backward(inputs, y, upstream, pull)`` in the same structure (None for
    an input that gets no gradient).

    ``pull()`` gives ``(y, vjp)`` for the recorded pass (``record=True``) and ``pull(f)`` gives
    ``(f(inputs), vjp)`` for another function of the inputs, where ``vjp(v)`` is the
    vector-Jacobian product in the inputs' structure; ``pull(f, at)`` differentiates
    ``f(at)`` w.r.t. ``at`` instead (a tensor or structure the backward pass built). The
    forward pass runs once.
    """
    flat = tf.nest.flatten(inputs)

    @tf.custom_gradient
    def run(*tensors):
        structured = tf.nest.pack_sequence_as(inputs, list(tensors))
        if record:
            with tf.GradientTape() as tape:
                tape.watch([t for t in tensors if t.dtype.is_floating])
                y = fn(structured)
        else:
            y = fn(structured)

        def pull(f=None, at=None):
            if f is None:
                return y, lambda v: tape.gradient(y, structured, output_gradients=v)
            at = structured if at is None else at
            with tf.GradientTape() as inner:
                inner.watch([t for t in tf.nest.flatten(at) if t.dtype.is_floating])
                out = f(at)
            return out, lambda v: inner.gradient(out, at, output_gradients=v)

        def grad(*upstream, variables=None):
            result = tf.nest.flatten(backward(structured, y, upstream[0] if len(upstream) == 1 else list(upstream), pull))
            result = [None if g is None else tf.cast(g, t.dtype) for g, t in zip(result, tensors)]
            return (result, [None] * len(variables)) if variables else result

        return y, grad

    return run(*flat)


def custom_backward(backward: Callable) -> Callable[[Callable], Callable]:
    """A hook factory: the layer's forward pass as it is, its backward pass replaced.

    ``backward(a, z, upstream, pull)`` returns the gradient for the layer's first argument
    ``a`` (a tensor, or the list a ``Multiply`` layer takes) given its output ``z`` and the
    upstream gradient; ``pull`` is :func:`with_backward`'s. The forward pass is recorded
    once and not recomputed.
    """

    def make(original):
        def call(inputs, *args, **kwargs):
            return with_backward(lambda a: original(a, *args, **kwargs), inputs, backward)

        return call

    return make


def elementwise_backward(backward: Callable) -> Callable[[Callable], Callable]:
    """A hook factory for elementwise layers: forward as it is, and the gradient for the
    first input ``a`` is ``backward(a, y, upstream)`` (``y`` the output); cheaper than
    :func:`custom_backward` as nothing is recorded."""

    @tf.custom_gradient
    def pass_through(a, y):
        return tf.identity(y), lambda upstream: (backward(a, y, upstream), tf.zeros_like(y))

    def make(original):
        def call(inputs, *args, **kwargs):
            return pass_through(inputs, tf.stop_gradient(original(inputs, *args, **kwargs)))

        return call

    return make


_FUSE_AT = 4096  # elements per sample from which a fused kernel pays for its compilation


def fused(fn: Callable) -> Callable:
    """``fn`` compiled by XLA into one kernel per input shape when its largest tensor argument
    is large (``_FUSE_AT`` elements per sample or more, counting the known axes), else run as it is. For the
    elementwise chains of backward rules over large activations (memory-bound: one pass
    instead of one per op); convolutions stay outside, on TensorFlow's own kernels."""
    compiled = tf.function(fn, jit_compile=True, autograph=False)

    def call(*args: Any) -> Any:
        size = max(math.prod(d for d in a.shape[1:] if d is not None) for a in args if tf.is_tensor(a))  # open axes (such as pairs) aside
        return compiled(*args) if size >= _FUSE_AT else fn(*args)

    call.kernel = compiled  # the XLA function, for checking which calls reach it
    return call


def vjp(f: Callable[[Any], Any], x: Any, v: Any) -> Any:
    """The vector-Jacobian product ``vᵀ ∂f/∂x`` at ``x`` (for rules that need a layer's own
    gradient somewhere, such as DeepLIFT's rescale rule where ``Δx ≈ 0``)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = f(x)
    return tape.gradient(y, x, output_gradients=v)


def scale_gradient(y: Any, factor: Callable[[Any], Any]) -> Any:
    """``y`` unchanged; its gradient multiplied by ``factor(y)`` on the way back."""

    @tf.custom_gradient
    def scaled(y):
        return tf.identity(y), lambda upstream: upstream * factor(y)

    return scaled(y)


def _to_tensors(x: Any) -> Any:
    return tf.nest.map_structure(tf.constant, x)


def _numpy(x: Any) -> Any:
    if isinstance(x, tuple) and all(tf.is_tensor(t) for t in x):
        return tuple(t.numpy() for t in x)
    return tf.nest.map_structure(lambda t: t.numpy(), x)


class CompiledModel:
    """Compiled functions for one Keras model, one chosen output and one score space.

    ``output`` is an index or a key into the model's output structure (``None`` for a
    single output). ``logit_layer`` is the output layer whose softmax/sigmoid is stripped
    to explain pre-activation logits (``None`` to explain the output as it is).
    """

    def __init__(self, model: keras.Model, output: int | str | None, logit_layer: keras.layers.Layer | None):
        self.model = model
        self.output = output
        self.logit_layer = logit_layer
        self._logits = _Slot()
        self._functions: dict[tuple, Callable] = {}
        self._graphs: dict[tuple, Callable] = {}  # their concrete functions, traced outside any strategy
        self._slots: dict[tuple, _Slot] = {}  # one per compiled function: shared by all its traces
        self._all_layers = list(all_layers(model))

    def _slot(self, key: tuple) -> _Slot:
        """The slot of compiled function ``key``. A function retraces (on another device, under
        a distribution strategy's replica) with the body captured at its first trace, so
        its hooks must write to that same slot."""
        return self._slots.setdefault(key, _Slot())

    # -- tracing helpers -------------------------------------------------------------
    @contextlib.contextmanager
    def _hooks(self, *extra: tuple) -> Iterator[None]:
        """Install ``(layer, make_wrapper[, attribute])`` hooks (on ``call`` by default), with
        float32 compute for every layer (see :func:`float32_compute`)."""
        # Extra hooks go beneath the logit hook, so the explained score is what they return.
        with contextlib.ExitStack() as stack:
            stack.enter_context(float32_compute(self._all_layers))
            for hook in extra:
                stack.enter_context(_hooked(*hook))
            if self.logit_layer is not None:
                stack.enter_context(_hooked(self.logit_layer, _strip_activation(self.logit_layer, self._logits)))
            yield

    def _outputs_and_scores(self, x: Any) -> tuple[tf.Tensor, tf.Tensor]:
        y = self.model(x, training=False)
        if self.output is not None:
            y = y[self.output]
        elif isinstance(y, (list, tuple)):
            y = y[0]
        y = tf.reshape(tf.cast(y, tf.float32), (tf.shape(y)[0], -1))
        scores = y if self.logit_layer is None else tf.reshape(tf.cast(self._logits.value, tf.float32), tf.shape(y))
        return y, scores

    def _explained(self, x: Any, weights: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Outputs and the explained score ``sum(scores * w, 1)``.

        ``weights`` is ``(n, C + 1)``: class weights, then a weight on the predicted class
        (the argmax of the outputs), so a target need not be known before the pass.
        """
        outputs, scores = self._outputs_and_scores(x)
        predicted = tf.one_hot(tf.argmax(outputs, axis=1), tf.shape(scores)[1])
        w = weights[:, :-1] + weights[:, -1:] * predicted
        return outputs, tf.reduce_sum(scores * w, axis=1)

    def _call(self, key: tuple, build: Callable[[], Callable], hooks: tuple, *args: Any, open_args: int = 0) -> Any:
        """Call the compiled function ``key`` (built on first use) on numpy ``args``.

        The signature leaves the batch axis open, so batches of any size share one graph;
        the last ``open_args`` arguments leave every axis open. Outside a distribution
        strategy the traced graph is called directly: it cannot be traced again, so no
        hooks are needed. Under a strategy, which traces once per replica device, the
        function is called inside its hooks.
        """
        closed = len(args) - open_args
        shape = lambda t, i: (None,) * t.ndim if i >= closed else (None, *t.shape[1:])  # noqa: E731
        key += tuple((tf.as_dtype(t.dtype), shape(t, i)) for i, a in enumerate(args) for t in tf.nest.flatten(a))  # strings of any width: one key
        if not all(isinstance(a, np.ndarray) for a in args):  # lists or dicts of inputs: their structure too
            key += (str(tf.nest.map_structure(lambda _: 0, args)),)
        if key not in self._functions:
            signature = tuple(tf.nest.map_structure(lambda t, i=i: tf.TensorSpec(shape(t, i), t.dtype), a) for i, a in enumerate(args))
            # No autograph: nothing traced here branches on tensors in Python (autograph does not
            # reach into Keras layers' calls anyway), and converting our code doubled tracing time.
            self._functions[key] = tf.function(build(), input_signature=signature, autograph=False)
        args = tuple(_to_tensors(a) for a in args)
        if tf.distribute.has_strategy():
            with self._hooks(*hooks):
                return self._functions[key](*args)
        if key not in self._graphs:
            with self._hooks(*hooks):
                self._graphs[key] = self._functions[key].get_concrete_function()
        return self._graphs[key](*args)

    # -- public functions (numpy in, numpy out, one batch at a time) ------------------
    def forward(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Model outputs and explained scores, each ``(n, C)``."""

        def build():
            return lambda x: self._outputs_and_scores(x)

        outputs, scores = self._call(("forward",), build, (), x)
        return outputs.numpy(), scores.numpy()

    def masked_scores(self, samples: np.ndarray, elements: np.ndarray | None, fills: np.ndarray, fill_weights: np.ndarray, owners: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Fill-weighted mean scores ``(R, C)`` of masked copies of ``samples``, built in the graph.

        Row ``r`` shows sample ``owners[r]`` where its players ``masks[r]`` are on and each
        of the ``B`` fill rows elsewhere. ``elements (n, *lead)`` gives the player of every
        element of a sample's leading axes (trailing axes, e.g. channels, follow it);
        ``None`` makes every element its own player. ``fills`` is ``(n, B, ...)``, one set
        per sample, or ``(1, B, ...)`` shared.
        """
        shared, own = len(fills) == 1, elements is None

        def build():
            def fn(samples, fills, fill_weights, owners, *players):
                rows, shape = tf.shape(owners)[0], samples.shape[1:]
                if own:
                    shown = tf.reshape(players[-1], [rows, 1, *shape])
                else:
                    elements, masks = players
                    lead = elements.shape[1:]
                    per_row = tf.reshape(tf.gather(elements, owners), (rows, -1))
                    shown = tf.reshape(tf.gather(masks, per_row, batch_dims=1), [rows, 1, *lead] + [1] * (len(shape) - len(lead)))
                hidden = fills if shared else tf.gather(fills, owners)  # shared fills broadcast over the rows
                copies = tf.where(shown, tf.gather(samples, owners)[:, None], hidden)
                _, scores = self._outputs_and_scores(tf.reshape(copies, [-1, *shape]))
                return tf.einsum("rbc,b->rc", tf.reshape(scores, (rows, tf.shape(fills)[1], -1)), fill_weights)

            return fn

        players = (masks.astype(bool),) if own else (elements.astype(np.int32), masks.astype(bool))
        args = (samples, fills, np.asarray(fill_weights, np.float32), owners.astype(np.int32), *players)
        return self._call(("masked_scores", shared, own), build, (), *args, open_args=1).numpy()

    def gradients(self, x: Any, weights: np.ndarray, hooks: tuple = (), key: tuple = ()) -> tuple:
        """Gradient of the explained score w.r.t. the inputs, the score and the outputs.

        ``hooks``: extra ``(layer, make_wrapper)`` pairs installed while tracing, e.g. to
        modify the backward pass; ``key`` names that variant's compiled function.
        """

        def build():
            def fn(x, weights):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    outputs, score = self._explained(x, weights)
                grads = tape.gradient(score, x)
                if any(g is None for g in tf.nest.flatten(grads)):
                    raise GradientBreak("inputs")
                return grads, score, outputs

            return fn

        return _numpy(self._call(("gradients",) + key, build, hooks, x, np.asarray(weights, np.float32)))

    def layer_gradients(self, x: Any, weights: np.ndarray, layer: keras.layers.Layer, hooks: tuple = (), key: tuple = ()) -> tuple:
        """Gradient of the explained score w.r.t. a layer's output, the score, the outputs
        and that layer's output (``hooks``, ``key``: as in :meth:`gradients`)."""
        slot = self._slot(("layer_gradients", id(layer)) + key)

        def build():
            def fn(x, weights):
                with tf.GradientTape() as tape:
                    outputs, score = self._explained(x, weights)
                grads = tape.gradient(score, slot.value)
                if grads is None:
                    raise GradientBreak(layer.name)
                return grads, score, outputs, slot.value

            return fn

        hooks = tuple(hooks) + ((layer, _record(slot)),)
        return _numpy(self._call(("layer_gradients", id(layer)) + key, build, hooks, x, np.asarray(weights, np.float32)))

    def paired_gradients(self, samples: Any, weights: np.ndarray, references: Any, reference_weights: np.ndarray, hooks: tuple, key: tuple, phases: Any, aligned: bool) -> tuple:
        """Attributions ``Σ_j w_j (x_i − r_j) · ∂score/∂x`` over (sample, reference) pairs,
        with hooks that see the references first (DeepLIFT's two passes in one call).

        The model runs on ``references`` after ``phases.reference()`` (no gradient), then on
        the pairs after ``phases.pairs(aligned)``, under a tape: every sample with every
        reference, sample-major (``aligned=False``), or sample ``i`` with reference ``i``.
        ``weights`` ``(n, C + 1)`` as in :meth:`gradients`; ``reference_weights`` ``(b,)``.
        Returns the summed attributions (the samples' structure), the score ``(n,)`` and
        outputs ``(n, C)`` of the samples, and the references' scores ``(b, C)``.
        """

        def build():
            def fn(samples, weights, references, reference_weights):
                phases.reference()
                _, reference_scores = self._outputs_and_scores(references)
                b = tf.shape(reference_weights)[0]
                pairs = samples if aligned else tf.nest.map_structure(lambda s: tf.repeat(s, b, axis=0), samples)
                phases.pairs(aligned)
                with tf.GradientTape() as tape:
                    tape.watch(pairs)
                    outputs, score = self._explained(pairs, weights if aligned else tf.repeat(weights, b, axis=0))
                grads = tape.gradient(score, pairs)
                if any(g is None for g in tf.nest.flatten(grads)):
                    raise GradientBreak("inputs")

                def summed(x, r, g):
                    if aligned:
                        return (x - r) * g * tf.reshape(reference_weights, [-1] + [1] * (len(x.shape) - 1))
                    per_pair = tf.reshape(g, tf.concat([[-1, b], tf.shape(g)[1:]], 0)) * (x[:, None] - r[None])
                    return tf.einsum("nb...,b->n...", per_pair, reference_weights)

                attributions = tf.nest.map_structure(summed, samples, references, grads)
                if not aligned:  # every pair of a sample has its outputs and score
                    outputs, score = outputs[::b], score[::b]
                return attributions, score, outputs, reference_scores

            return fn

        args = (samples, np.asarray(weights, np.float32), references, np.asarray(reference_weights, np.float32))
        return _numpy(self._call(("paired", aligned) + key, build, hooks, *args))

    def layer_output(self, x: Any, layer: keras.layers.Layer) -> np.ndarray:
        slot = self._slot(("layer_output", id(layer)))

        def build():
            def fn(x):
                self._outputs_and_scores(x)
                return slot.value

            return fn

        return self._call(("layer_output", id(layer)), build, ((layer, _record(slot)),), x).numpy()

    def gradients_at_layer(self, x: Any, weights: np.ndarray, layer: keras.layers.Layer, activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient of the explained score when ``layer`` outputs ``activations`` instead."""
        slot = self._slot(("gradients_at_layer", id(layer)))

        def build():
            def fn(x, weights, activations):
                with tf.GradientTape() as tape:
                    tape.watch(activations)
                    slot.value = activations
                    _, score = self._explained(x, weights)
                grads = tape.gradient(score, activations)
                if grads is None:
                    raise GradientBreak(layer.name)
                return grads, score

            return fn

        args = (x, np.asarray(weights, np.float32), np.asarray(activations, np.float32))
        grads, score = self._call(("gradients_at_layer", id(layer)), build, ((layer, _replace(slot)),), *args)
        return grads.numpy(), score.numpy()

    # -- eager probes (run once per model, or to explain an error) ----------------------
    def probe(self, x: Any, layers: list[keras.layers.Layer]) -> tuple[Any, list[LayerCall]]:
        """Run the model eagerly on ``x`` and record every call of ``layers`` in order
        (completed calls: a layer that calls others is listed after them)."""
        return self.probe_inputs(x, layers)[:2]

    def probe_inputs(self, x: Any, layers: list) -> tuple[Any, list[LayerCall], list]:
        """As :meth:`probe`, also returning the input tensors the model was called on."""
        calls: list[LayerCall] = []
        tensors = _to_tensors(x)
        with self._hooks(*[(layer, _log_calls(layer, calls)) for layer in layers]):
            y = self.model(tensors, training=False)
        return _numpy(y), calls, tf.nest.flatten(tensors)

    def gradient_breaks(self, x: Any, weights: np.ndarray, layers: list[keras.layers.Layer]) -> list[keras.layers.Layer]:
        """Layers whose output carries a gradient of the score while their inputs do not."""
        calls: list[LayerCall] = []
        with tf.GradientTape(persistent=True) as tape:
            x = _to_tensors(x)
            tape.watch([t for t in tf.nest.flatten(x) if t.dtype.is_floating])
            with self._hooks(*[(layer, _log_calls(layer, calls)) for layer in layers]):
                _, score = self._explained(x, tf.constant(weights, tf.float32))
        broken = []
        for call in calls:
            if not tf.is_tensor(call.output) or tape.gradient(score, call.output) is None:
                continue
            floats = [t for t in call.inputs if t.dtype.is_floating]
            if not floats or all(tape.gradient(score, t) is None for t in floats):
                broken.append(call.layer)
        return broken


def is_chief(model: keras.Model) -> bool:
    """Whether this process writes logs: always, except on non-chief workers of a
    multi-worker ``tf.distribute`` strategy (chief = task "chief", else worker 0)."""
    return strategy_is_chief(getattr(model, "distribute_strategy", None))


# -- distribution: tf.distribute runs a numpy function on each replica's share --------------------
def strategy_is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process is the chief of ``strategy`` (None: the current one; see :func:`is_chief`)."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type or task_type == "chief":
        return True
    return task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def make_strategy(name: str) -> tf.distribute.Strategy | None:
    """``"none"`` (None: the current strategy), ``"mirrored"`` (local devices) or
    ``"multi_worker"`` (hosts from ``TF_CONFIG``). Create it before any other TF work."""
    strategies = {"none": lambda: None, "mirrored": tf.distribute.MirroredStrategy, "multi_worker": tf.distribute.MultiWorkerMirroredStrategy}
    if name not in strategies:
        raise ValueError(f"strategy: expected one of {list(strategies)}, got {name!r}.")
    return strategies[name]()


def global_batches(data: Any, batch_size: int, batched_rank: int | None, skip: int = 0) -> tf.data.Dataset:
    """``data`` (a ``tf.data.Dataset`` of samples or of batches, or arrays: ``x`` or
    ``(x, y)``) as a dataset of ``(sample ids, samples)`` batches of ``batch_size``,
    without the first ``skip`` batches.
    ``batched_rank``: the rank of the model's first input with its batch axis."""
    dataset = data if isinstance(data, tf.data.Dataset) else tf.data.Dataset.from_tensor_slices(data)
    first = tf.nest.flatten(dataset.element_spec)[0]
    if batched_rank is not None and first.shape.rank == batched_rank:
        dataset = dataset.unbatch()
    return dataset.enumerate().batch(batch_size).skip(skip).prefetch(1)


def first_batch(batches: tf.data.Dataset) -> Any:
    """The first batch of a dataset, as numpy."""
    for element in batches.take(1):
        return _numpy(element)
    raise ValueError("dataset: it is empty; pass at least one sample.")


def distributed_map(strategy: tf.distribute.Strategy | None, dataset: tf.data.Dataset, fn: Callable[[Any], Any]) -> Iterator[Any]:
    """Run ``fn`` (numpy in, numpy out) on each replica's share of every batch of ``dataset``.

    ``dataset`` yields global batches. ``strategy.experimental_distribute_dataset`` splits
    each into contiguous per-replica shares (across workers too, sharded by data), each
    replica runs ``fn`` on its share under its device, and ``strategy.gather`` concatenates
    the results (a structure of arrays with a leading sample axis) in replica order, which
    is sample order. Every worker of a multi-worker strategy receives every result.
    ``strategy=None`` uses the current strategy (a single device by default).
    """
    strategy = strategy or tf.distribute.get_strategy()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    distributed = strategy.experimental_distribute_dataset(dataset.with_options(options))

    def replica(element: Any) -> Any:
        return _to_tensors(fn(_numpy(element)))

    for element in distributed:
        results = strategy.run(replica, args=(element,))
        yield _numpy(tf.nest.map_structure(lambda value: strategy.gather(value, axis=0), results))


# -- what a layer's own TensorFlow ops do (for layers the propagation rules do not know) -----------
class OpReport(NamedTuple):
    """How a call's output depends on its varying inputs, read off its TensorFlow ops.

    ``kind``: ``"linear"`` (only linear ops: sums, scaling by constants, reshaping,
    convolutions with fixed kernels...), ``"elementwise"`` (an elementwise function of its one
    varying input, such as ``x * sigmoid(x)``), ``"product"`` (one product of two varying
    tensors, the rest linear) or ``"nonlinear"``; ``ops``: the op types that decided it.
    """

    kind: str
    ops: tuple[str, ...] = ()


_STRUCTURAL_OPS = {
    "Identity", "IdentityN", "Reshape", "Transpose", "ConcatV2", "Concat", "Pack", "Unpack", "Split", "SplitV", "Slice",
    "StridedSlice", "Squeeze", "ExpandDims", "Tile", "BroadcastTo", "Pad", "PadV2", "ReverseV2", "GatherV2", "GatherNd",
    "Cast", "EnsureShape", "StopGradient", "PreventGradient", "SelectV2", "Select", "ZerosLike", "OnesLike", "Shape", "ShapeN",
    "Size", "Rank", "Fill", "NoOp", "Const", "Placeholder", "ReadVariableOp", "Range",
}  # fmt: skip
_LINEAR_OPS = _STRUCTURAL_OPS | {
    "AddV2", "Add", "AddN", "Sub", "Neg", "BiasAdd", "Sum", "Mean", "Cumsum", "Conv2D", "Conv3D", "DepthwiseConv2dNative",
    "Conv2DBackpropInput", "Conv3DBackpropInputV2", "AvgPool", "AvgPool3D", "ResizeBilinear", "ResizeNearestNeighbor",
    "ResizeBicubic", "ResizeArea", "MatrixBandPart",
}  # fmt: skip
_BILINEAR_OPS = {"Mul", "MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "RealDiv", "DivNoNan", "Div"}  # linear in one varying operand
_DIVISIONS = {"RealDiv", "DivNoNan", "Div"}
_ELEMENTWISE_OPS = {
    "Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Sigmoid", "Tanh", "Softplus", "Softsign", "Erf", "Erfc", "Exp", "Expm1",
    "Log", "Log1p", "Square", "Sqrt", "Rsqrt", "Reciprocal", "Inv", "Abs", "Sin", "Cos", "ClipByValue", "Maximum", "Minimum",
    "Pow", "SquaredDifference", "Mul", "AddV2", "Add", "Sub", "RealDiv", "DivNoNan", "Neg", "Identity", "Cast", "BiasAdd",
    "SelectV2", "Select", "EnsureShape", "Softplus", "Gelu",
}  # fmt: skip
_PRODUCTS = {"Mul", "MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum"}


def classify_call(fn: Callable, args: tuple, kwargs: dict, varying: Callable[[Any], bool], inner: list) -> OpReport:
    """Trace ``fn(*args, **kwargs)`` (the tensors replaced by placeholders of their shapes)
    and classify the ops it creates itself, outside the calls of the ``inner`` layers, that
    depend on the tensors ``varying(tensor)`` selects (float tensors that depend on the
    model's input)."""
    flat = tf.nest.flatten((args, kwargs))
    positions = [i for i, t in enumerate(flat) if tf.is_tensor(t)]
    chosen = [i for i in positions if flat[i].dtype.is_floating and varying(flat[i])]
    ranges: list[tuple[int, int]] = []

    def count() -> int:
        return len(tf.compat.v1.get_default_graph().get_operations())

    def bracket(original):
        def call(*a, **k):
            start = count()
            out = original(*a, **k)
            ranges.append((start, count()))
            return out

        return call

    def traced(*tensors):
        values = list(flat)
        for i, t in zip(positions, tensors):
            values[i] = t
        a, k = tf.nest.pack_sequence_as((args, kwargs), values)
        return fn(*a, **k)

    specs = [tf.TensorSpec(flat[i].shape, flat[i].dtype) for i in positions]
    with contextlib.ExitStack() as stack:
        for layer in inner:
            stack.enter_context(_hooked(layer, bracket))
        graph = tf.function(traced, autograph=False).get_concrete_function(*specs).graph
    operations = graph.get_operations()
    inner_ops = {id(op) for start, end in ranges for op in operations[start:end]}
    placeholders = [t for t in graph.inputs[: len(positions)]]
    dependent = {id(placeholders[positions.index(i)]) for i in chosen}
    elementwise = set(dependent) if len(chosen) == 1 else set()  # tensors that are an elementwise function of the one varying input
    shape = tuple(placeholders[positions.index(chosen[0])].shape) if len(chosen) == 1 else None
    found: dict[str, list[str]] = {"nonlinear": [], "elementwise": [], "product": []}
    for op in operations:
        deps = [t for t in op.inputs if id(t) in dependent]
        if not deps:
            continue
        for out in op.outputs:
            if out.dtype.is_floating:
                dependent.add(id(out))
        if id(op) in inner_ops:
            continue
        kind = op.type
        linear = kind in _LINEAR_OPS or (kind in _BILINEAR_OPS and len(deps) == 1 and (kind not in _DIVISIONS or op.inputs[0] is deps[0]))
        keeps_shape = all(tuple(out.shape) == shape for out in op.outputs)
        if kind in _ELEMENTWISE_OPS and keeps_shape and all(id(t) in elementwise for t in deps):
            elementwise.update(id(out) for out in op.outputs)
            if not linear:
                found["elementwise"].append(kind)
        elif not linear:
            found["product" if kind in _PRODUCTS and len(deps) == 2 else "nonlinear"].append(kind)
    outputs = [t for t in graph.outputs if t.dtype.is_floating]
    if found["nonlinear"] or len(found["product"]) > 1 or (found["product"] and found["elementwise"]):
        return OpReport("nonlinear", tuple(dict.fromkeys(found["nonlinear"] + found["product"] + found["elementwise"])))
    if found["product"]:
        return OpReport("product", tuple(found["product"]))
    if found["elementwise"]:
        if all(id(t) in elementwise for t in outputs):
            return OpReport("elementwise", tuple(dict.fromkeys(found["elementwise"])))
        return OpReport("nonlinear", tuple(dict.fromkeys(found["elementwise"])))
    return OpReport("linear")


def map_strings(fn: Callable[[tf.Tensor], tf.Tensor], strings: list[str]) -> list[str]:
    """A string function (such as a ``TextVectorization``'s custom ``standardize``) applied
    to each of ``strings``."""
    return [s.decode("utf-8") for s in fn(tf.constant(strings, tf.string)).numpy().tolist()]
