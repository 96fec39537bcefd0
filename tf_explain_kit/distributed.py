"""Explain whole datasets: streamed in batches, each batch shared out to ``tf.distribute`` replicas.

``explain_dataset`` reads the data one global batch at a time. :func:`tf_backend.distributed_map`
splits each batch into contiguous per-replica shares (``MirroredStrategy``: local devices;
``MultiWorkerMirroredStrategy``: every worker's devices, sharded by data), each replica
explains its share, and the results are gathered back in sample order. A batch's results
are written (and handed to ``on_batch``) as soon as they are gathered, so memory stays
bounded by the batch size, whatever the dataset's length.

Logs (:mod:`logformat`, in ``<log_dir>/explanations``): step = global batch index. Each
step holds that batch's samples summary (``ids`` = sample indices in the dataset, header
``unit="batch"``) and, per method, its explanation with ``extras["sample_ids"]``, and
health scalars. A step is flushed when complete, so an interrupted run keeps every
finished batch; ``start_batch`` resumes after them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import keras
import numpy as np

from . import logformat, tf_backend
from .checks import count, directory, names
from .callbacks import health
from .explainers.registry import resolve
from .data import class_labels, kind_of, logged_kind
from .explainers.base import Explainer
from .explanation import Explanation
from .logwriter import SummaryWriter
from .model import concat_batches, input_rank, map_inputs

BatchHook = Callable[[int, np.ndarray, dict[str, Explanation]], None]
_FIELDS = ("attributions", "targets", "predictions")


@dataclass
class DatasetResult:
    """What :func:`explain_dataset` did. ``explanations`` (per method, every sample in
    order) only with ``keep=True``."""

    samples: int
    batches: int
    seconds: float
    methods: list[str]
    explanations: dict[str, Explanation] | None = None

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


def explain_dataset(
    model: keras.Model,
    dataset: Any,
    explainers: Sequence[str | Explainer],
    log_dir: str | None = None,
    strategy: Any = None,
    *,
    batch_size: int = 64,
    targets: int | str | None = None,
    precision: str = "float16",
    channels: str = "sum",
    class_names: Sequence[str] | None = None,
    keep: bool = False,
    on_batch: BatchHook | None = None,
    start_batch: int = 0,
) -> DatasetResult:
    """Explain every sample of ``dataset`` with each explainer, streaming in batches.

    Args:
        model: the Keras model.
        dataset: a ``tf.data.Dataset`` of samples or batches (``x`` or ``(x, y)``), or
            arrays ``x`` or ``(x, y)``.
        explainers: explainer instances or method names (built for ``model``; SHAP
            backgrounds and LIME statistics come from the first batch).
        log_dir: write the log format here (chief only, step = batch index); None: no logs.
        strategy: a ``tf.distribute`` strategy (None: the current one); each replica
            explains its share of every batch.
        batch_size: samples per global batch (split across replicas).
        targets: None (predicted class), an int, or ``"labels"`` (the dataset's ``y``).
        precision: attribution storage in the logs (see :mod:`logformat`).
        channels: ``"sum"`` (image attributions logged as their channel sum) or ``"all"``.
        class_names: names of the classes, stored with the samples.
        keep: also return every explanation, concatenated (memory grows with the data).
        on_batch: ``on_batch(batch_index, sample_ids, {method: Explanation})`` after each
            batch, on every worker (each holds the gathered results).
        start_batch: skip this many batches (resume an interrupted run).

    Per-sample numeric extras are gathered across replicas; other extras (layer names,
    feature names) come from this process; per-sample lists (text tokens) are dropped.
    """
    count(batch_size, "batch_size")
    count(start_batch, "start_batch", minimum=0)
    log_dir = None if log_dir is None else directory(log_dir)
    class_names = names(class_names, "class_names")
    if not (targets is None or targets == "labels" or (isinstance(targets, (int, np.integer)) and not isinstance(targets, bool))):
        raise ValueError(f"targets: expected None (predicted class), a class index or 'labels', got {targets!r}.")
    if precision not in logformat.PRECISIONS:
        raise ValueError(f"precision: expected one of {logformat.PRECISIONS}, got {precision!r}.")
    if channels not in logformat.CHANNELS:
        raise ValueError(f"channels: expected one of {logformat.CHANNELS}, got {channels!r}.")
    batches = tf_backend.global_batches(dataset, int(batch_size), input_rank(model), int(start_batch))
    ids, sample = tf_backend.first_batch(batches)
    x, y = _split(sample)
    if targets == "labels" and y is None:
        raise ValueError("targets: 'labels' needs a dataset of (x, y); this one has no y.")
    kind = kind_of(x, model)
    if isinstance(explainers, (str, Explainer)) or not explainers:
        raise TypeError(f"explainers: expected a non-empty list of explainers or method names, got {explainers!r}.")
    built = [resolve(item, model, x, kind) for item in explainers]
    share = _Share(built, targets, (ids[:1], map_inputs(lambda a: a[:1], sample)))
    chief = tf_backend.strategy_is_chief(strategy)
    writer = SummaryWriter(log_dir) if log_dir is not None and chief else None
    kept: list[dict[str, Explanation]] = []
    done, index, start = 0, int(start_batch), time.perf_counter()
    last = start
    try:
        for gathered in tf_backend.distributed_map(strategy, batches, share):
            batch_ids, explanations = share.unpack(gathered)
            now = time.perf_counter()
            if writer is not None:
                _log(writer, index, gathered["sample"], batch_ids, explanations, logged_kind(kind), class_names, precision, channels, now - last)
            last = now
            if on_batch is not None:
                on_batch(index, batch_ids, explanations)
            if keep:
                kept.append(explanations)
            done, index = done + len(batch_ids), index + 1
    finally:
        if writer is not None:
            writer.close()
    methods = [e.method for e in built]
    result = DatasetResult(done, index - int(start_batch), time.perf_counter() - start, methods)
    if keep and kept:
        result.explanations = {m: _concatenate([k[m] for k in kept]) for m in methods}
    return result


def _split(sample: Any) -> tuple[Any, np.ndarray | None]:
    if isinstance(sample, tuple) and len(sample) == 2:
        return sample[0], sample[1]
    return sample, None


class _Share:
    """Explains one replica's share: numpy in, a structure of per-sample arrays out."""

    def __init__(self, explainers: list[Explainer], targets: Any, probe: tuple[np.ndarray, Any]):
        self.explainers, self.targets = explainers, targets
        # One sample explained up front: the result's structure (empty shares return it
        # with no rows) and the extras that are not per-sample.
        template = self._explain(*probe)
        self.empty = map_inputs(lambda a: a[:0], template)
        self.constants = {e.method: {k: v for k, v in e.extras.items() if not _per_sample(v, 1) and not (isinstance(v, list) and len(v) == 1)} for e in self._last}

    def __call__(self, element: tuple[np.ndarray, Any]) -> dict:
        ids, sample = element
        return self.empty if len(ids) == 0 else self._explain(ids, sample)

    def _explain(self, ids: np.ndarray, sample: Any) -> dict:
        x, y = _split(sample)
        wanted = class_labels(y) if self.targets == "labels" else self.targets
        self._last = [e.explain(x, wanted) for e in self.explainers]
        arrays = {e.method: {**{f: getattr(e, f) for f in _FIELDS}, "extras": {k: v for k, v in e.extras.items() if _per_sample(v, len(ids))}} for e in self._last}
        return {"ids": ids, "sample": sample, **arrays}

    def unpack(self, gathered: dict) -> tuple[np.ndarray, dict[str, Explanation]]:
        """Sample ids and one Explanation per method from gathered results, in sample order."""
        ids = gathered["ids"]
        order = np.argsort(ids, kind="stable")
        explanations = {}
        for e in self.explainers:
            part = map_inputs(lambda a: a[order], gathered[e.method])
            extras = {**part["extras"], **self.constants[e.method], "sample_ids": ids[order]}
            explanations[e.method] = Explanation(e.method, part["attributions"], part["targets"], part["predictions"], extras)
        gathered["sample"] = map_inputs(lambda a: a[order], gathered["sample"])
        return ids[order], explanations


def _per_sample(value: Any, n: int) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.ndim >= 1 and len(value) == n


def _log(writer: SummaryWriter, step: int, sample: Any, ids: np.ndarray, explanations: dict[str, Explanation], kind: str, class_names: Sequence[str] | None, precision: str, channels: str, seconds: float) -> None:
    """One batch at ``step``: its samples, each method's explanation and health (``seconds``:
    the whole batch, all methods)."""
    x, y = _split(sample)
    names = list(class_names) if class_names is not None else None
    writer.blobs(logformat.SAMPLES_TAG, step, logformat.samples_payload(x, class_labels(y), ids, kind, names, unit="batch"), "samples")
    for method, explanation in explanations.items():
        writer.blobs(logformat.explanation_tag(method), step, logformat.explanation_payload(explanation, step, precision, seconds, channels), "explanation")
        for metric, value in health(explanation, seconds).items():
            writer.scalar(logformat.health_tag(method, metric), step, value)
    writer.flush()


def _concatenate(parts: list[Explanation]) -> Explanation:
    first = parts[0]
    per_sample = [k for k, v in first.extras.items() if _per_sample(v, len(first.targets))]
    extras = {**first.extras, **{k: np.concatenate([p.extras[k] for p in parts]) for k in per_sample}}
    fields = {f: concat_batches([getattr(p, f) for p in parts]) for f in _FIELDS}
    return Explanation(first.method, fields["attributions"], fields["targets"], fields["predictions"], extras)
