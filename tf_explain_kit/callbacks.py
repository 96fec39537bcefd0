"""Keras callbacks: explain fixed validation samples during training and log them.

``ExplainCallback`` schedules and logs; explainers compute (:mod:`explainers`), the
renderer draws (:mod:`render`), and the log format (:mod:`logformat`) is written by
:class:`logwriter.SummaryWriter` into ``<log_dir>/explanations``.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
import traceback
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Sequence

import keras
import numpy as np

from . import logformat, render, targets, text, tf_backend
from .checks import count, directory, names
from .data import TEXT_KINDS, class_labels, kind_of, logged_kind, select, split_validation
from .tasks import task_of
from .explainers.base import Explainer
from .explainers import registry
from .explanation import Explanation
from .logwriter import SummaryWriter
from .metrics import EpochMetrics
from .model import ModelAdapter, flat_inputs, image_position, input_rank, take

ON_ERROR = ("warn", "raise")


class ExplainCallback(keras.callbacks.Callback):
    """Explain validation samples every few epochs and log them for TensorBoard.

    Args:
        validation_data: ``(x, y)`` arrays (``x`` may be a list or dict for multi-input
            models), ``x`` alone, or a ``tf.data.Dataset`` (read once, at train begin).
        explainers: explainer instances, method names (``"integrated_gradients"``,
            ``"gradcam"``, ``"lime"``, ``"shap"``, ...; built for the model at train begin,
            SHAP backgrounds and LIME statistics from the validation data), or
            ``(explainer or name, every_n_epochs)`` pairs for a per-method frequency.
        log_dir: the TensorBoard log directory (the same one ``keras.callbacks.TensorBoard``
            uses is right); the callback writes to ``<log_dir>/explanations``.
        every_n_epochs: default frequency; the last epoch is always explained.
        max_samples: how many samples to explain.
        targets: None (predicted class), an int, or one class per selected sample.
        contrast: explain score(target) − score(contrast).
        class_names: names shown instead of class indices.
        select: ``"stratified"`` (round-robin over classes, default), ``"first"``,
            ``"misclassified"`` (by the model at train begin), or indices into the data.
        on_error: ``"warn"`` (default) or ``"raise"``. With ``"warn"``, a method that does not
            apply to the model (or its data kind, see :mod:`explainers.registry`) is skipped
            with one warning and logged as refused (``<method>/error`` at epoch 0); a method
            failing at an epoch warns and logs its error; training goes on.
        precision: ``"float16"`` (default, see :mod:`logformat`) or ``"float32"``.
        channels: ``"sum"`` (default: image attributions are stored as their channel sum,
            the map pictures and the plugin show) or ``"all"`` (every channel).
        max_picture_side: the Images dashboard's pictures of larger images are averaged
            down to at most this many pixels a side (default 128; None: full size). The
            Explanations tab draws every map at full resolution either way.
        pictures_after, pictures_every: from epoch ``pictures_after`` on, pictures are
            written only at epochs divisible by ``pictures_every`` (and the last epoch); the
            attributions, tables and scalars are still written every time.
        feature_names: names of tabular features.
        vocabulary: token strings by id, to show token-id inputs as words (a model that
            takes strings uses its own ``TextVectorization``; see :mod:`text`).
        metrics: opt-in quality metrics logged as ``health/<method>/<metric>`` scalars
            each epoch a method runs: names from :data:`metrics.EPOCH_METRICS` (see
            :class:`metrics.EpochMetrics`).
        masks: for ``"pointing_game"`` and ``"mask_share"``: a boolean mask per validation
            sample, or one shared by all (for example a watermark's region).
        output: index or name of the explained output of a multi-output model (default:
            the one the explainer instances were built for); ``y`` may hold one target per
            output (list or dict), the explained output's are used. A one-unit output is a
            binary classifier (sigmoid or classification loss) or a regression.
    """

    def __init__(
        self,
        validation_data: Any,
        explainers: Sequence[Any],
        log_dir: str,
        every_n_epochs: int = 1,
        max_samples: int = 16,
        targets: Any = None,
        *,
        contrast: Any = None,
        class_names: Sequence[str] | None = None,
        select: Any = "stratified",
        on_error: str = "warn",
        precision: str = "float16",
        channels: str = "sum",
        max_picture_side: int | None = render.PICTURE_SIDE,
        pictures_after: int = 0,
        pictures_every: int = 1,
        feature_names: Sequence[str] | None = None,
        vocabulary: Sequence[str] | None = None,
        metrics: Sequence[str] = (),
        masks: Any = None,
        output: int | str | None = None,
    ):
        super().__init__()
        if isinstance(explainers, (str, Explainer)) or not isinstance(explainers, Sequence) or not explainers:
            raise TypeError(f"explainers: expected a non-empty list of explainers, method names or (explainer, every_n_epochs) pairs, got {explainers!r}.")
        self._specs = [_spec(item, every_n_epochs) for item in explainers]
        count(every_n_epochs, "every_n_epochs")
        count(max_samples, "max_samples")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error: expected one of {ON_ERROR}, got {on_error!r}.")
        if precision not in logformat.PRECISIONS:
            raise ValueError(f"precision: expected one of {logformat.PRECISIONS}, got {precision!r}.")
        if channels not in logformat.CHANNELS:
            raise ValueError(f"channels: expected one of {logformat.CHANNELS}, got {channels!r}.")
        if max_picture_side is not None:
            count(max_picture_side, "max_picture_side", hint="or None for full-size pictures")
        count(pictures_after, "pictures_after", minimum=0)
        count(pictures_every, "pictures_every")
        self.validation_data, self.log_dir = validation_data, directory(log_dir)
        self.max_samples, self.targets, self.contrast, self.select = int(max_samples), targets, contrast, select
        self.class_names = names(class_names, "class_names")
        self.feature_names = names(feature_names, "feature_names")
        self.vocabulary = list(vocabulary) if vocabulary is not None else None
        self.on_error, self.precision, self.channels, self.output = on_error, precision, channels, output
        self.max_picture_side, self.pictures_after, self.pictures_every = max_picture_side, int(pictures_after), int(pictures_every)
        self.quality = EpochMetrics(metrics, masks)
        self._writer: SummaryWriter | None = None
        self.jobs: list[tuple[Explainer, int]] = []
        self._shown_tokens: list[list[str]] | None = None

    # -- train begin: fix the samples, build the explainers, log the samples once ----------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        x_all, y_all = split_validation(self.validation_data, input_rank(self.model))
        if not self.model.built:  # a subclassed model fit has not called yet
            self.model(take(x_all, slice(0, 1)), training=False)
        self._output = self._explained_output()
        adapter = ModelAdapter.shared(self.model, output=self._output)
        x_all = adapter.prepare(x_all, name="validation_data")
        names = list(getattr(self.model, "output_names", None) or [])
        self.task = task_of(adapter.num_outputs, adapter.activation, _for_output(getattr(self.model, "loss", None), names, adapter.output_index))
        y_all = _for_output(y_all, names, adapter.output_index)
        labels = None if self.task.name == "regression" else class_labels(y_all)
        self.ids = select(labels, len(flat_inputs(x_all)[0]), self.max_samples, self.select, self._predicted(adapter, x_all))
        self.x = take(x_all, self.ids)
        self.labels = None if labels is None else labels[self.ids]
        self.values = np.asarray(y_all, np.float64).reshape(len(y_all), -1)[self.ids, 0] if self.task.name == "regression" and y_all is not None else None
        self.quality.ids = self.ids
        self.kind = kind_of(self.x, self.model)
        self._shown_input = image_position(self.x) if self.kind == "image" else 0
        self.chief = tf_backend.is_chief(self.model)
        self._worked: set[Explainer] = set()  # explainers that ran once: later failures are per epoch
        self._refused: list[tuple[str, str]] = []  # (method, markdown), logged when the session starts
        self._check_classes(adapter)
        self.jobs = [job for job in (self._job(item, every, options, x_all) for item, every, options in self._specs) if job is not None]
        if not self.chief:
            return
        self._writer = SummaryWriter(self.log_dir, keep_going=True)  # a full disk stops the logging, never the training
        self._logging, self._pending = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tf-explain-kit"), []
        weakref.finalize(self, self._writer.close)  # closed even if training dies before on_train_end
        self._samples_logged = False

    def _check_classes(self, adapter: ModelAdapter) -> None:
        """Refuse at train begin what would fail every epoch: targets, contrasts or class
        names that do not fit the model's outputs."""
        outputs = adapter.num_outputs
        targets.request(self.targets, self.contrast, len(self.ids), outputs)  # raises what explain() would
        if self.class_names is not None and len(self.class_names) < outputs:
            raise ValueError(f"class_names: expected a name for each of the model's {outputs} classes, got {len(self.class_names)}: {self.class_names!r}.")

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """The first epoch of this fit: the session's start, then the samples (a resumed
        training replaces what an earlier one logged from this epoch on, in TensorBoard
        and in ``load_run`` alike)."""
        if self.chief and not self._samples_logged:
            self._start_session(epoch)

    def _start_session(self, epoch: int) -> None:
        self._writer.session(epoch)
        blobs = logformat.samples_payload(self.x, self.labels, self.ids, logged_kind(self.kind), self.class_names, self.feature_names, self._tokens())
        self._writer.blobs(logformat.SAMPLES_TAG, 0, blobs, "samples")
        for method, markdown in self._refused:
            self._writer.text(logformat.error_tag(method), epoch, markdown)
        self._writer.flush()
        self._samples_logged = True

    def _explained_output(self) -> int | str | None:
        """The callback's ``output``, else the one its explainer instances were built for."""
        if self.output is not None:
            return self.output
        chosen = {item.adapter.output for item, _, _ in self._specs if isinstance(item, Explainer)} - {None}
        return chosen.pop() if len(chosen) == 1 else None

    def _predicted(self, adapter: ModelAdapter, x: Any) -> np.ndarray | None:
        """The model's predicted classes, for ``select="misclassified"``."""
        if not (isinstance(self.select, str) and self.select == "misclassified"):
            return None
        if self.task.name == "regression":
            raise ValueError("select: 'misclassified' needs a classifier; this output is a regression (one unit, no sigmoid, no classification loss). Use select='first' or indices.")
        return self.task.predicted(adapter.forward(x)[0])

    def _job(self, item: Any, every: int, options: dict, data: Any) -> tuple[Explainer, int] | None:
        """The explainer of one spec, or None (warned and logged) if it does not apply."""
        name, explicit = (item.method if isinstance(item, Explainer) else item), bool(options)
        try:
            if isinstance(item, Explainer) and item.method in registry.METHODS:
                registry.method_for(item.method, self.kind)  # an instance off its kinds
            elif isinstance(item, str):
                name = registry.method_for(item, self.kind).name
                options = {"vocabulary": self.vocabulary, **({"output": self._output} if self._output is not None else {}), **options}
            return registry.resolve(item, self.model, data, self.kind, **options), every
        except Exception as error:  # a method that does not apply must not stop training
            if self.on_error == "raise" or (explicit and not isinstance(error, registry.NotApplicable)):
                raise  # options the user gave (GradCAMCallback(layer="nope")) are wrong, not inapplicable
            self._refuse(name, error)
            return None

    def _refuse(self, method: str, error: Exception, epoch: int | None = None) -> None:
        """One warning, and the refusal logged for the plugin at ``epoch`` (its first run),
        or at the session's first epoch for a method refused at train begin."""
        reason = f"{type(error).__name__}: {error}"
        others = "" if isinstance(error, registry.NotApplicable) else registry.alternatives(self.kind, besides=method)
        warnings.warn(f"ExplainCallback: {method} does not apply to this model and is skipped: {reason} {others}".rstrip(), RuntimeWarning, stacklevel=3)
        alternatives = f"{others}\n\n" if others else ""  # the reason last: the tab's cell shows the last line
        markdown = f"**{method} was refused for this model** (not computed at any epoch)\n\n{alternatives}{reason}"
        if epoch is None:
            self._refused.append((method, markdown))
        elif self._writer is not None:
            self._writer.text(logformat.error_tag(method), epoch, markdown)

    def _tokens(self) -> list[list[str]] | None:
        """Each sample's tokens as the text methods place their weights (:mod:`text`)."""
        if self.kind not in TEXT_KINDS:
            return None
        if self._shown_tokens is None:
            try:
                tokenizer = text.Tokenizer.of_model(self.model, self.vocabulary)
            except ValueError:  # a TextVectorization with a custom split: the words as written
                tokenizer = text.Tokenizer(vocabulary=self.vocabulary)
            self._shown_tokens = text.shown_tokens(self.x, tokenizer)
        return self._shown_tokens

    # -- each epoch: training logs, then every method that is due ------------------------------
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self.chief:
            return
        if not self._samples_logged:  # driven without on_epoch_begin
            self._start_session(epoch)
        self._writer.blobs(logformat.TRAINING_TAG, epoch, logformat.training_payload(logs or {}), "training")
        for explainer, every in list(self.jobs):
            if epoch % every == 0 or self._last(epoch):
                self._explain(explainer, epoch)
        for job in self._pending:  # all of this epoch is written before training goes on
            job.result()
        self._pending.clear()
        self._writer.flush()

    def _explain(self, explainer: Explainer, epoch: int) -> None:
        start = time.perf_counter()
        try:
            explanation = explainer.explain(self.x, self.targets, self.contrast)
            seconds = time.perf_counter() - start
            quality = self.quality.compute(explainer, explanation, self.x) if self.quality else {}
        except Exception as error:  # one failing method must not stop training
            if self.on_error == "raise":
                raise
            if explainer not in self._worked:  # failing at its first run: it does not apply
                self.jobs = [job for job in self.jobs if job[0] is not explainer]
                self._refuse(explainer.method, error, epoch)
                return
            message = f"{type(error).__name__}: {error}"
            warnings.warn(f"{explainer.method} failed at epoch {epoch} and was skipped: {message}", RuntimeWarning, stacklevel=2)
            trace = "".join(traceback.format_exception(error)[-3:])
            self._writer.text(logformat.error_tag(explainer.method), epoch, f"**{explainer.method} failed at epoch {epoch}**\n\n```\n{trace}\n```")
            return
        self._worked.add(explainer)
        # Rendering and encoding run beside the next method's computation (both release the GIL).
        self._pending.append(self._logging.submit(self.log, explanation, epoch, seconds))
        for metric, value in quality.items():
            self._writer.scalar(logformat.health_tag(explainer.method, metric), epoch, value)

    def log(self, explanation: Explanation, epoch: int, seconds: float) -> None:
        """Write one method's explanation at ``epoch``: raw data, pictures, table, health."""
        method, writer = explanation.method, self._writer
        writer.blobs(logformat.explanation_tag(method), epoch, logformat.explanation_payload(explanation, epoch, self.precision, seconds, self.channels), "explanation")
        explanation = self._shown(explanation)
        if self.kind in ("image", "sequence") and self._pictures_at(epoch):
            shown = flat_inputs(self.x)[self._shown_input]
            pictures = render.image_pngs(shown, explanation, max_side=self.max_picture_side) if self.kind == "image" else render.sequence_pngs(shown, explanation)
            writer.images(epoch, [(logformat.image_tag(method, int(i)), picture) for i, picture in zip(self.ids, pictures)])
        tokens = explanation.extras.get("tokens") or self._tokens()
        truth = self.values if self.task.name == "regression" else self.labels
        table = render.markdown_table(explanation, self.ids, truth, self.class_names, logged_kind(self.kind), self.feature_names or explanation.extras.get("feature_names"), tokens, self.task)
        writer.text(logformat.table_tag(method), epoch, table)
        for metric, value in health(explanation, seconds).items():
            writer.scalar(logformat.health_tag(method, metric), epoch, value)

    def _last(self, epoch: int) -> bool:
        return epoch + 1 == (self.params or {}).get("epochs")

    def _pictures_at(self, epoch: int) -> bool:
        return epoch < self.pictures_after or epoch % self.pictures_every == 0 or self._last(epoch)

    def _shown(self, explanation: Explanation) -> Explanation:
        """The explanation of the input shown in pictures and tables (multi-input models:
        the image input, else the first); region maps are already per image."""
        arrays = flat_inputs(explanation.attributions)
        return explanation if len(arrays) == 1 else dataclasses.replace(explanation, attributions=arrays[self._shown_input])

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._logging.shutdown()
            self._writer.close()


def health(explanation: Explanation, seconds: float) -> dict[str, float]:
    """Per-epoch health of one method's explanations (logged as scalars).

    ``not_finite_samples`` counts the samples whose attributions hold NaN or infinity (a
    diverged model); their pictures draw those values in ``render.NOT_FINITE`` green.
    """
    extras = explanation.extras
    n = len(explanation.targets)
    finite = np.ones(n, bool)
    for values in flat_inputs(explanation.attributions):
        finite &= np.isfinite(np.asarray(values).reshape(n, -1)).all(axis=1)
    metrics = {"seconds": seconds, "not_finite_samples": float(n - finite.sum())}
    if "convergence_delta" in extras:
        metrics["mean_abs_convergence_delta"] = float(np.abs(extras["convergence_delta"]).mean())
    if "r2" in extras:
        metrics["mean_r2"] = float(np.mean(extras["r2"]))
    if "base_values" in extras:
        total = sum(np.asarray(a).reshape(len(explanation.targets), -1).sum(axis=1) for a in flat_inputs(explanation.attributions))
        metrics["mean_abs_additivity_error"] = float(np.abs(total - (extras["score"] - extras["base_values"])).mean())
    return metrics


def _for_output(value: Any, names: list[str], index: int) -> Any:
    """The explained output's part of a per-output list or dict (targets, losses)."""
    if isinstance(value, dict):
        return value.get(names[index]) if index < len(names) else None
    if isinstance(value, (list, tuple)) and len(names) > 1 and len(value) == len(names):
        return value[index]
    return value


def _spec(item: Any, every_n_epochs: int) -> tuple[Any, int, dict]:
    if isinstance(item, tuple):
        if len(item) != 2 or isinstance(item[1], bool) or not isinstance(item[1], (int, np.integer)) or item[1] < 1:
            raise ValueError(f"explainers: a pair must be (explainer or method name, every_n_epochs >= 1), got {item!r}.")
        item, every_n_epochs = item
    if isinstance(item, str) and item not in registry.names():
        raise ValueError(f"explainers: unknown method {item!r}; choose from {', '.join(registry.names())}, or pass an explainer instance.")
    if not isinstance(item, (str, Explainer)):
        raise TypeError(f"explainers: expected explainer instances or method names, got {type(item).__name__}.")
    return item, int(every_n_epochs), {}


_CALLBACK_OPTIONS = set(inspect.signature(ExplainCallback.__init__).parameters) - {"self", "validation_data", "explainers", "log_dir"}


class SingleMethodCallback(ExplainCallback):
    """An :class:`ExplainCallback` for one method: ``Cls(validation_data, log_dir, **options)``.

    Options of :class:`ExplainCallback` go to the callback; the others go to the
    explainer (for example ``layer=`` for Grad-CAM, ``steps=`` for Integrated Gradients).
    Subclasses only name their method.
    """

    method: ClassVar[str]

    def __init__(self, validation_data: Any, log_dir: str, **options: Any):
        callback_options = {k: options.pop(k) for k in list(options) if k in _CALLBACK_OPTIONS}
        super().__init__(validation_data, [self.method], log_dir, **callback_options)
        self._specs = [(self.method, self._specs[0][1], options)]


class GradCAMCallback(SingleMethodCallback):
    method = "gradcam"


class IntegratedGradientsCallback(SingleMethodCallback):
    method = "integrated_gradients"


class SaliencyCallback(SingleMethodCallback):
    method = "saliency"


class OcclusionCallback(SingleMethodCallback):
    method = "occlusion"


class LimeCallback(SingleMethodCallback):
    """LIME for the data's kind (see :data:`explainers.registry.GENERIC`): images, tables or strings."""

    method = "lime"


class ShapCallback(SingleMethodCallback):
    """SHAP for the data's kind (see :data:`explainers.registry.GENERIC`): GradientShap for
    images, KernelShap for tables, sequences and token ids, PartitionShap for strings."""

    method = "shap"
