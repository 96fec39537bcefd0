"""The model adapter: one Keras model seen as numpy-in, numpy-out score functions.

It harmonises inputs once at the edge (arrays, lists or dicts of arrays, checked against
the model's input shapes), chooses the explained output and score space, batches every
call with a bounded batch size and delegates the compiled work to :mod:`tf_backend`.
Adapters are shared: explainers built for the same model and options reuse one adapter
and so one set of compiled functions.
"""

from __future__ import annotations

import math
import warnings
import weakref
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import keras
import numpy as np

from . import text, tf_backend
from .checks import count
from .structure import all_layers, named_sublayers
from .tf_backend import GradientBreak, LayerCall

Inputs = Any  # an array, or a list/tuple/dict of arrays for multi-input models

SCORES = ("logits", "probabilities")
_ACTIVATIONS = ("softmax", "sigmoid")
_ELEMENTS_PER_BATCH = 2**22  # default batch: about 16 MB of float32 input per call
_MAX_BATCH = 65536


def map_inputs(fn: Callable[..., Any], *xs: Inputs) -> Any:
    """Apply ``fn`` array by array to one or more inputs of the same structure."""
    return keras.tree.map_structure(fn, *xs)


def flat_inputs(x: Inputs) -> list[np.ndarray]:
    return keras.tree.flatten(x)


def num_samples(x: Inputs) -> int:
    return len(flat_inputs(x)[0])


def take(x: Inputs, index: Any) -> Inputs:
    """Rows ``index`` of every input array."""
    return map_inputs(lambda a: a[index], x)


def image_position(x: Inputs, argument: str = "inputs") -> int:
    """Position (in ``flat_inputs`` order) of the first float image input ``(N, H, W[, C])``."""
    for position, array in enumerate(flat_inputs(x)):
        if array.dtype.kind == "f" and array.ndim in (3, 4):
            return position
    shapes = [a.shape for a in flat_inputs(x)]
    raise ValueError(f"{argument}: this method needs a float image input of shape (N, H, W[, C]), got inputs of shapes {shapes}.")


def _slices(n: int, size: int) -> list[slice]:
    return [slice(i, i + size) for i in range(0, n, size)]


def concat_batches(parts: list[Any]) -> Any:
    return keras.tree.map_structure(lambda *p: np.concatenate(p, axis=0), *parts)


def input_rank(model: keras.Model) -> int | None:
    """Rank of the model's first input, batch axis included (None if not known yet)."""
    try:
        return len(keras.tree.flatten(model.inputs)[0].shape)
    except (AttributeError, ValueError, IndexError):
        return None


def iter_layers(layer: keras.layers.Layer) -> Iterable[keras.layers.Layer]:
    """Every layer inside ``layer``, depth first, nested models included."""
    for sub in getattr(layer, "layers", []) or []:
        yield sub
        yield from iter_layers(sub)


def layer_paths(model: keras.layers.Layer) -> dict[str, keras.layers.Layer]:
    """Every layer below ``model`` by path, ``"outer/inner"``: layer names, and for the
    layers a custom layer holds, the attribute it holds them in
    (``"token_and_position_embedding/token_emb"``)."""
    paths: dict[str, keras.layers.Layer] = {}
    stack = [("", model)]
    while stack:
        prefix, layer = stack.pop()
        found = []
        for name, sub in named_sublayers(layer):
            if sub is not layer and not any(sub is seen for seen in paths.values()):
                paths[prefix + name] = sub
                found.append((prefix + name + "/", sub))
        stack.extend(reversed(found))
    return paths


def path_of(model: keras.layers.Layer, layer: keras.layers.Layer) -> str:
    """The path of ``layer`` in ``model`` (see :func:`layer_paths`)."""
    return next((path for path, found in layer_paths(model).items() if found is layer), layer.name)


def embedding_layers(layer: keras.layers.Layer) -> list[keras.layers.Embedding]:
    """The Embedding layers inside ``layer`` (where token-id models are explained), nested
    ones in custom layers included."""
    return [sub for sub in all_layers(layer) if isinstance(sub, keras.layers.Embedding)]


def _takes_strings(spec: Any) -> bool:
    return "string" in str(spec.dtype)


def _strings_as(array: np.ndarray, spec: Any, name: str) -> np.ndarray:
    """Texts (unicode, bytes or object, ``(N,)`` or ``(N, 1)``) as the model's string input
    takes them: an object array of ``str`` of its shape. Other arrays pass unchanged."""
    if not text.is_text(array):
        if _takes_strings(spec):
            raise TypeError(f"{name}: model input '{spec.name}' takes strings, got {array.dtype} of shape {array.shape}. Pass the raw texts: a list of str or an array of strings (N,) or (N, 1).")
        return array
    if not _takes_strings(spec):
        what = "token ids" if "int" in str(spec.dtype) else "numbers"
        raise TypeError(
            f"{name}: model input '{spec.name}' takes {spec.dtype} ({what}), got strings ({array.dtype}, shape {array.shape}). "
            "Convert them to numbers first (texts: the adapted TextVectorization layer; for LIME, LimeText(model, tokenizer=...))."
        )
    return text.string_array(array, tuple(spec.shape)) if array.ndim in (1, 2) else array


def _is_leaf(layer: keras.layers.Layer) -> bool:
    return not getattr(layer, "layers", None)


def _final_layer(model: keras.Model, index: int) -> keras.layers.Layer | None:
    """The layer producing output ``index`` of a Sequential/Functional model (None if unknown)."""
    try:
        tensor = keras.tree.flatten(model.outputs)[index]
    except (AttributeError, IndexError, ValueError):
        return None
    for layer in reversed(model.layers):
        try:
            produced = keras.tree.flatten(layer.output)
        except (AttributeError, ValueError):
            continue
        if any(t is tensor for t in produced):
            return _final_layer(layer, 0) if isinstance(layer, keras.Model) else layer
    return None


def _activation_name(layer: keras.layers.Layer | None) -> str | None:
    if layer is None:
        return None
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    name = getattr(getattr(layer, "activation", None), "__name__", None)
    return name if name in _ACTIVATIONS else None


class GradientPass(NamedTuple):
    """One compiled forward + backward pass over a batch of samples."""

    grads: Any  # w.r.t. the inputs (their structure) or a layer's output
    score: np.ndarray  # (N,) the explained score
    outputs: np.ndarray  # (N, C) the model's outputs
    activations: np.ndarray | None = None  # the layer's output, for layer gradients


class ModelAdapter:
    """A Keras model, one chosen output and one score space, as batched numpy functions.

    Args:
        model: a built Keras 3 model (Sequential, Functional, subclassed, nested).
        output: index or name of the explained output of a multi-output model.
        score: ``"logits"`` (default) explains the pre-activation score when the output
            layer ends in softmax or sigmoid; ``"probabilities"`` explains the output as is.
        batch_size: samples per compiled call; default keeps each call near 16 MB of input.
    """

    # Values are weak: an adapter lives as long as an explainer uses it, and while it lives it
    # holds its model, so no other model can reuse the id in its key.
    _shared: "weakref.WeakValueDictionary[tuple, ModelAdapter]" = weakref.WeakValueDictionary()

    @classmethod
    def shared(cls, model: keras.Model, output: int | str | None = None, score: str = "logits", batch_size: int | None = None) -> "ModelAdapter":
        """The adapter for these options, shared by the explainers of ``model`` alive at once."""
        key = (id(model), output, score, batch_size)
        adapter = cls._shared.get(key)
        if adapter is None:
            adapter = cls._shared[key] = cls(model, output, score, batch_size)
        return adapter

    def __init__(self, model: keras.Model, output: int | str | None = None, score: str = "logits", batch_size: int | None = None):
        if not isinstance(model, keras.Model):
            raise TypeError(f"model: expected a keras.Model, got {type(model).__name__}. Pass the Keras model itself (not a path or a function).")
        if not model.built:
            raise ValueError("model: the model is not built. Call it once on a batch (model(x[:1])) or build it with model.build(input_shape) first.")
        if score not in SCORES:
            raise ValueError(f"score: expected one of {SCORES}, got {score!r}.")
        if batch_size is not None:
            count(batch_size, "batch_size", hint="or None for about 16 MB of input per call")
        self.model = model
        self.output = output
        self.score = score
        self.batch_size = batch_size
        self.layers = list(iter_layers(model))
        self._backend: tf_backend.CompiledModel | None = None
        self._calls: list[LayerCall] = []
        self._specs: list | None = None  # the model's input tensors, once known
        self._tokenizer: text.Tokenizer | None = None
        self.num_outputs = 0  # width of the explained output, once known
        self.output_index = 0  # its position among the model's outputs
        self.activation: str | None = None  # its final "softmax" or "sigmoid", if found

    # -- inputs ---------------------------------------------------------------------------
    def _input_specs(self) -> list | None:
        if self._specs is None:
            try:
                self._specs = keras.tree.flatten(self.model.inputs)
            except (AttributeError, ValueError):
                return None
        return self._specs

    def prepare(self, inputs: Inputs, name: str = "inputs") -> Inputs:
        """Check ``inputs`` against the model and convert them to numpy arrays."""
        specs = self._input_specs()
        if hasattr(inputs, "as_numpy_iterator"):  # a tf.data.Dataset of x or (x, y), batched or not
            from .data import dataset_inputs

            inputs = dataset_inputs(inputs, input_rank(self.model), name)
        if isinstance(inputs, dict):
            x = {k: np.asarray(v) for k, v in inputs.items()}
        elif isinstance(inputs, (list, tuple)) and specs is not None and len(specs) > 1:
            x = [np.asarray(v) for v in inputs]
        elif specs is not None and _takes_strings(specs[0]) and isinstance(inputs, (str, bytes, list, tuple)):
            x = np.asarray(text.as_texts(inputs, name), dtype=object)
        else:
            x = np.asarray(inputs)
        if specs is not None and isinstance(x, np.ndarray):
            x = _strings_as(x, specs[0], name)
        arrays = flat_inputs(x)
        if arrays[0].ndim == 0 or len(arrays[0]) == 0:
            raise ValueError(f"{name}: expected an array with a leading sample axis and at least one sample, got shape {arrays[0].shape}.")
        if specs is not None and len(arrays) != len(specs):
            raise ValueError(f"{name}: the model takes {len(specs)} inputs ({', '.join(s.name for s in specs)}), got {len(arrays)}. Pass a list or dict with one array per model input.")
        if len({len(a) for a in arrays}) != 1:
            raise ValueError(f"{name}: every input array needs the same number of samples, got {[len(a) for a in arrays]}.")
        if specs is not None:
            for array, spec in zip(arrays, specs):
                _strings_as(array, spec, name)  # every input of a multi-input model too
                self._check_shape(array, spec, name)
        for array in arrays:
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                bad = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))
                raise ValueError(f"{name}: samples {bad[:10].tolist()} contain NaN or infinite values; clean or drop them before explaining.")
        floats = lambda a: a.astype(np.float32, copy=False) if a.dtype.kind in "fb" else a  # noqa: E731
        x = map_inputs(floats, x)
        self._ready(x)
        return x

    @property
    def tokenizer(self) -> text.Tokenizer:
        """How the model tokenises texts (its ``TextVectorization``; whitespace words if none)."""
        if self._tokenizer is None:
            self._tokenizer = text.Tokenizer.of_model(self.model)
        return self._tokenizer

    @staticmethod
    def _check_shape(array: np.ndarray, spec: Any, name: str) -> None:
        expected = tuple(spec.shape)
        fits = array.ndim == len(expected) and all(e is None or e == d for e, d in zip(expected[1:], array.shape[1:]))
        if not fits:
            shown = "(N, " + ", ".join("?" if d is None else str(d) for d in expected[1:]) + ")"
            hint = " If this is a single sample, add a batch axis: x[None]." if array.ndim == len(expected) - 1 else ""
            raise ValueError(f"{name}: expected shape {shown} for model input '{spec.name}', got {array.shape}.{hint}")

    # -- lazy set-up: output selection and score space need one probe call --------------------
    def _ready(self, x: Inputs) -> None:
        if self._backend is not None:
            return
        probe = tf_backend.CompiledModel(self.model, None, None)
        y, self._calls = probe.probe(take(x, slice(0, 1)), self.layers)
        key, index = self._output_key(y)
        chosen = y if key is None else y[key]
        chosen = np.asarray(chosen).reshape(1, -1)
        self.num_outputs, self.output_index = chosen.shape[1], index
        final = _final_layer(self.model, index)
        self.activation = _activation_name(final)
        logit_layer = None
        if self.score == "logits":
            logit_layer = final if self.activation else None
            if final is None and self._looks_like_probabilities(chosen):
                warnings.warn(
                    f"model: the output of {type(self.model).__name__} looks like probabilities but its final softmax "
                    "could not be located (subclassed model), so probabilities are explained. Pass score='probabilities' "
                    "to make this explicit.",
                    stacklevel=4,
                )
        self._backend = tf_backend.CompiledModel(self.model, key, logit_layer)

    @staticmethod
    def _looks_like_probabilities(y: np.ndarray) -> bool:
        return y.shape[1] > 1 and bool(np.all(y >= 0)) and bool(np.allclose(y.sum(axis=1), 1.0, atol=1e-4))

    def _output_key(self, y: Any) -> tuple[int | str | None, int]:
        """Key into the model's output structure, and the output's position."""
        if isinstance(y, dict):
            names = list(y)
        elif isinstance(y, (list, tuple)):
            names = list(getattr(self.model, "output_names", None) or range(len(y)))
        else:
            if self.output not in (None, 0):
                raise ValueError(f"output: the model has a single output, got output={self.output!r}. Leave output=None.")
            return None, 0
        if len(names) == 1 and self.output is None:
            return (names[0] if isinstance(y, dict) else 0), 0
        if self.output is None:
            raise ValueError(f"output: the model has {len(names)} outputs {names}; choose the explained one with output=<index or name>.")
        if isinstance(self.output, (int, np.integer)) and 0 <= self.output < len(names):
            index = int(self.output)
        elif self.output in names:
            index = names.index(self.output)
        else:
            raise ValueError(f"output: expected an index below {len(names)} or one of {names}, got {self.output!r}.")
        return (names[index] if isinstance(y, dict) else index), index

    # -- batched compiled calls ------------------------------------------------------------
    def default_batch_size(self, x: Inputs) -> int:
        if self.batch_size is not None:
            return self.batch_size
        per_sample = sum(math.prod(a.shape[1:]) for a in flat_inputs(x)) or 1
        return min(max(_ELEMENTS_PER_BATCH // per_sample, 1), _MAX_BATCH)

    def _batched(self, fn: Callable, x: Inputs, *per_sample: np.ndarray) -> Any:
        self._ready(x)
        n, size = num_samples(x), self.default_batch_size(x)
        if n <= size:
            return fn(x, *per_sample)
        parts = [fn(take(x, slice(i, i + size)), *(a[i : i + size] for a in per_sample)) for i in range(0, n, size)]
        return concat_batches(parts)

    def forward(self, x: Inputs) -> tuple[np.ndarray, np.ndarray]:
        """Model outputs (as the model returns them) and explained scores, both ``(N, C)``."""
        return self._batched(lambda xb: self._backend.forward(xb), x)

    def masked_scores(self, samples: np.ndarray, elements: np.ndarray | None, masks: np.ndarray, owners: np.ndarray, fills: np.ndarray, fill_weights: np.ndarray | None = None) -> np.ndarray:
        """Scores ``(R, C)`` of perturbed copies: the core of LIME and Kernel SHAP.

        Row ``r`` shows sample ``owners[r]`` where ``masks[r, player]`` is true and hides the
        rest behind each of the ``B`` rows of ``fills`` (``(n, B, ...)`` one set per sample
        or ``(1, B, ...)`` shared), averaged with ``fill_weights`` (default: uniform).
        ``elements (n, *lead)`` maps the elements of a sample's leading axes (pixels,
        features, tokens) to player ids; ``None`` makes each element of a sample a player
        (``masks`` then has one column per element). The copies are built inside the
        compiled call, ``batch_size // B`` rows at a time, from only the samples that call needs.
        """
        self._ready(samples)
        weights = np.full(fills.shape[1], 1 / fills.shape[1]) if fill_weights is None else fill_weights
        per_call = max(1, self.default_batch_size(samples) // fills.shape[1])
        parts = []
        for start in range(0, len(masks), per_call):
            rows = slice(start, start + per_call)
            lo, hi = int(owners[rows].min()), int(owners[rows].max()) + 1
            part_fills = fills if len(fills) == 1 else fills[lo:hi]
            part_elements = None if elements is None else elements[lo:hi]
            parts.append(self._backend.masked_scores(samples[lo:hi], part_elements, part_fills, weights, owners[rows] - lo, masks[rows]))
        return np.concatenate(parts)

    def masked_input_scores(self, samples: Inputs, players: Inputs, masks: np.ndarray, owners: np.ndarray, fills: Inputs, fill_weights: np.ndarray | None = None) -> np.ndarray:
        """:meth:`masked_scores` for models with several inputs (or players over whole inputs).

        ``players``: per input, ``(n,) + lead`` int player ids of each sample's elements
        (trailing axes follow; −1: always shown); ``fills``: per input ``(n or 1, B, ...)``.
        The copies are built on the host, a bounded batch of rows at a time.
        """
        self._ready(samples)
        rows_of_fill = flat_inputs(fills)[0].shape[1]
        weights = np.full(rows_of_fill, 1 / rows_of_fill) if fill_weights is None else np.asarray(fill_weights)
        per_call = max(1, self.default_batch_size(samples) // rows_of_fill)
        parts = []
        for start in range(0, len(masks), per_call):
            owner, mask = owners[start : start + per_call], masks[start : start + per_call]

            def copies(sample: np.ndarray, labels: np.ndarray, fill: np.ndarray) -> np.ndarray:
                label = labels[owner].reshape(len(owner), -1)
                shown = (label < 0) | np.take_along_axis(mask, np.maximum(label, 0), axis=1)
                shown = shown.reshape((len(owner), 1) + labels.shape[1:] + (1,) * (sample.ndim - labels.ndim))
                hidden = fill if len(fill) == 1 else fill[owner]
                return np.where(shown, sample[owner][:, None], hidden).reshape((-1,) + sample.shape[1:])

            _, scores = self.forward(map_inputs(copies, samples, players, fills))
            parts.append(np.einsum("rbc,b->rc", scores.reshape(len(owner), rows_of_fill, -1), weights))
        return np.concatenate(parts)

    def _with_predicted(self, weights: np.ndarray) -> np.ndarray:
        """``(N, C)`` class weights → ``(N, C + 1)`` with no weight on the predicted class."""
        weights = np.asarray(weights, np.float32)
        return np.pad(weights, ((0, 0), (0, 1))) if weights.shape[1] == self.num_outputs else weights

    def gradients(self, x: Inputs, weights: np.ndarray, hooks: tuple = (), key: tuple = ()) -> GradientPass:
        """Gradient of each sample's explained score w.r.t. the inputs, with the outputs.

        ``weights``: ``(N, C)`` class weights, or ``(N, C + 1)`` whose last column weighs
        the predicted class (resolved inside the pass: no separate forward pass).
        ``hooks``: extra ``(layer, make_wrapper)`` pairs that change the traced pass (see
        :mod:`tf_backend`); ``key`` names that variant's compiled function.
        """
        weights = self._with_predicted(weights)
        try:
            return GradientPass(*self._batched(lambda xb, wb: self._backend.gradients(xb, wb, hooks, key), x, weights))
        except GradientBreak:
            raise self._explain_break(x, weights) from None

    def layer_gradients(self, x: Inputs, weights: np.ndarray, layer: keras.layers.Layer, hooks: tuple = (), key: tuple = ()) -> GradientPass:
        """As :meth:`gradients`, w.r.t. ``layer``'s output (returned as ``activations``)."""
        weights = self._with_predicted(weights)
        try:
            return GradientPass(*self._batched(lambda xb, wb: self._backend.layer_gradients(xb, wb, layer, hooks, key), x, weights))
        except GradientBreak:
            raise self._explain_break(x, weights) from None

    def paired_gradients(self, x: Inputs, weights: np.ndarray, references: Inputs, reference_weights: np.ndarray, hooks: tuple, key: tuple, phases: Any, aligned: bool) -> tuple:
        """DeepLIFT-style passes over (sample, reference) pairs, batched (see
        :meth:`tf_backend.CompiledModel.paired_gradients`): ``(attributions, score, outputs,
        reference scores)``. Unless ``aligned``, every sample meets every reference; a call
        takes as many samples as fit and the references in blocks that fill it, so the
        references' own pass costs ``1/samples`` of the pairs' (one sample per call on a large
        model: one reference per call)."""
        weights = self._with_predicted(weights)
        self._ready(x)
        n, b, size = num_samples(x), num_samples(references), self.default_batch_size(x)
        run = lambda rows, refs: self._backend.paired_gradients(take(x, rows), weights[rows], take(references, refs), reference_weights[refs], hooks, key, phases, aligned)  # noqa: E731
        try:
            if aligned:
                return concat_batches([run(rows, rows) for rows in _slices(n, size)])
            per_sample = min(n, size)
            total, reference_scores = None, []
            for refs in _slices(b, max(1, size // per_sample)):
                results = [run(rows, refs) for rows in _slices(n, per_sample)]
                attributions, score, outputs = concat_batches([r[:3] for r in results])
                reference_scores.append(results[0][3])
                attributions = map_inputs(lambda a: a.astype(np.float64), attributions)
                total = (attributions, score, outputs) if total is None else (map_inputs(np.add, total[0], attributions), *total[1:])
        except GradientBreak:
            raise self._explain_break(x, weights) from None
        return map_inputs(lambda a: a.astype(np.float32), total[0]), total[1], total[2], np.concatenate(reference_scores)

    def layer_output(self, x: Inputs, layer: keras.layers.Layer) -> np.ndarray:
        return self._batched(lambda xb: self._backend.layer_output(xb, layer), x)

    def gradients_at_layer(self, x: Inputs, weights: np.ndarray, layer: keras.layers.Layer, activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient of the explained score when ``layer`` outputs ``activations`` instead."""
        weights = self._with_predicted(weights)
        try:
            return self._batched(lambda xb, wb, ab: self._backend.gradients_at_layer(xb, wb, layer, ab), x, weights, activations)
        except GradientBreak:
            raise self._explain_break(x, weights) from None

    def _explain_break(self, x: Inputs, weights: np.ndarray) -> ValueError:
        broken = self._backend.gradient_breaks(take(x, slice(0, 1)), weights[:1], [l for l in self.layers if _is_leaf(l)])
        if broken:
            names = ", ".join(f"'{l.name}' ({type(l).__name__})" for l in broken)
            where = f"Layer {names} breaks differentiation (its output depends on its input through a non-differentiable op such as argmax, cast to int or rounding)."
        else:
            where = "No single layer could be blamed; the model may cast its input to an integer type."
        return ValueError(
            f"model: the gradient of the explained score with respect to the input is None. {where} "
            "Remove that op from the explained path, explain a layer after it with layer=..., or use a perturbation method (Occlusion, LIME, KernelShap)."
        )

    # -- layers ----------------------------------------------------------------------------
    @property
    def layer_calls(self) -> list[LayerCall]:
        """Every layer call of one probe forward pass, in execution order."""
        return self._calls

    def find_layer(self, layer: str | keras.layers.Layer, candidates: Sequence[keras.layers.Layer] | None = None, argument: str = "layer") -> keras.layers.Layer:
        """A layer given as itself, by name or by path (``"outer/inner"``, see
        :func:`layer_paths`), nested models and layers inside custom layers included;
        errors list the candidates (``candidates`` if given, else every layer's path)."""
        paths = layer_paths(self.model)
        if isinstance(layer, keras.layers.Layer):
            if any(layer is l for l in paths.values()):
                return layer
        elif isinstance(layer, str):
            found = paths.get(layer) or next((l for l in paths.values() if l.name == layer), None)
            if found is not None:
                return found
        if candidates is not None:
            names = [repr(path_of(self.model, l)) for l in candidates]
        else:
            names = [repr(path) for path in paths]
        shown = ", ".join(names[-24:]) or "none"
        raise ValueError(
            f"{argument}: no layer {getattr(layer, 'name', layer)!r} in model '{self.model.name}'. "
            f"Pass a layer of the model, its name or its path (outer/inner for a layer inside a custom layer). Candidates: {shown}."
        )

    def probe(self, x: Inputs, operations: Sequence[Any]) -> tuple[list[LayerCall], list]:
        """Every call of ``operations`` (layers or operations) in one eager pass over ``x``,
        and the input tensors of that pass, with the adapter's output and score choices."""
        self._ready(x)
        _, calls, inputs = self._backend.probe_inputs(x, list(operations))
        return calls, inputs

    def output_shape(self, layer: keras.layers.Layer) -> tuple | None:
        shapes = [c.output_shape for c in self._calls if c.layer is layer]
        return shapes[-1] if shapes else None
