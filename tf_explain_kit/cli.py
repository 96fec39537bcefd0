"""The command line: ``tf-explain-kit demo`` and ``tf-explain-kit explain``.

``demo`` trains the digits CNN with :class:`ExplainCallback` and Keras' TensorBoard callback,
then serves TensorBoard on 127.0.0.1. ``explain`` explains every sample of a dataset with a
saved model through :func:`tf_explain_kit.explain_dataset`, into logs (``--logdir``) and/or
plain arrays (``--output FILE.npz``). Bad input exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from . import storage

DEMO_EXPLAINERS = ["saliency", "integrated_gradients", "gradcam", ("lime", 3), ("shap", 3)]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SAMPLE_OPTIONS = ("num_samples", "nsamples", "max_evals", "samples")  # explainers' names for "how many samples"
STRATEGIES = ("none", "mirrored", "multi_worker")


class UsageError(Exception):
    """Bad input: reported as one line on stderr, exit status 2."""


# -- demo --------------------------------------------------------------------------------------
def _demo(args: argparse.Namespace) -> int:
    import keras

    import tf_explain_kit as tek
    from tf_explain_kit import examples

    keras.utils.set_random_seed(args.seed)
    x_train, y_train, x_test, y_test = examples.digits()
    model = examples.digits_cnn(seed=args.seed)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    logdir = str(args.logdir)
    callbacks = [
        tek.ExplainCallback((x_test, y_test), DEMO_EXPLAINERS, logdir, max_samples=10, class_names=[str(d) for d in range(10)]),
        keras.callbacks.TensorBoard(logdir),
    ]
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, validation_data=(x_test, y_test), callbacks=callbacks, verbose=1)
    print(f"Logs written to {logdir}")
    return 0 if args.no_serve else _serve(logdir, args.port)


def _serve(logdir: str, port: int) -> int:
    """Run TensorBoard (this environment's) until it exits or Ctrl-C."""
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command)
    print(f"TensorBoard: http://127.0.0.1:{port}/ (the Explanations tab). Ctrl-C stops it.", flush=True)
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        print("TensorBoard stopped.")
        return 0


# -- explain: inputs -----------------------------------------------------------------------------
def _input_shapes(path: str) -> list[tuple] | None:
    """The input shapes ``(None, ...)`` a saved ``.keras`` model declares in its config, read
    without TensorFlow (None when the config does not say: subclassed models, other formats)."""
    if not os.path.isfile(path):
        raise UsageError(f"model: no such file {path!r}; pass a model saved with model.save('model.keras').")
    if not path.endswith(".keras"):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise UsageError(f"model: cannot load {path!r} as a Keras model ({str(error).splitlines()[0][:200] if str(error) else type(error).__name__}).") from None
    layers = config.get("config", {}).get("layers", []) if isinstance(config.get("config"), dict) else []
    shapes = [tuple(layer["config"]["batch_shape"]) for layer in layers if isinstance(layer, dict) and layer.get("class_name") == "InputLayer" and "batch_shape" in layer.get("config", {})]
    return shapes or None


def _check_shape(x: Any, shapes: list[tuple] | None) -> None:
    """The data's shape against a single-input model's declared input (the whole file's shape
    in the message)."""
    if shapes is None or len(shapes) != 1 or not hasattr(x, "shape") or x.dtype.kind not in "biuf":
        return
    expected = shapes[0]
    if x.ndim != len(expected) or any(e is not None and e != d for e, d in zip(expected[1:], x.shape[1:])):
        shown = "(N, " + ", ".join("?" if d is None else str(d) for d in expected[1:]) + ")"
        raise UsageError(f"data: expected shape {shown} for the model's input, got {x.shape}.")


def _load_model(path: str) -> Any:
    import keras

    try:
        return keras.saving.load_model(path)
    except Exception as error:  # any failure to read the file is bad input
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"model: cannot load {path!r} as a Keras model ({detail[:200]}).") from None


def _load_data(path: str, shapes: list[tuple] | None, labels: str | None) -> tuple[Any, Any]:
    """``(x, y)`` from a .npz/.npy file, a CSV table or a folder of images (``y`` may be None)."""
    import numpy as np

    source = Path(path)
    if source.is_dir():
        return (None if shapes is None else _load_images(source, shapes)), None  # None: read once the model is loaded
    if not source.is_file():
        raise UsageError(f"data: no such file or folder {path!r}.")
    suffix = source.suffix.lower()
    try:
        if suffix == ".npy":
            return _floats(np.load(source, allow_pickle=False)), None
        if suffix == ".npz":
            with np.load(source, allow_pickle=False) as arrays:
                if not arrays.files:
                    raise UsageError(f"data: {path!r} holds no arrays.")
                x_key = "x" if "x" in arrays.files else arrays.files[0]
                y_key = labels or ("y" if "y" in arrays.files else None)
                if y_key is not None and y_key not in arrays.files:
                    raise UsageError(f"--labels: no array {y_key!r} in {path!r}; it has {arrays.files}.")
                return _floats(arrays[x_key]), (arrays[y_key] if y_key else None)
        if suffix == ".csv":
            return _load_csv(source, labels)
    except (OSError, ValueError) as error:
        raise UsageError(f"data: cannot read {path!r} ({str(error).splitlines()[0][:200]}).") from None
    raise UsageError(f"data: expected a .npz, .npy or .csv file or a folder of images, got {path!r}.")


def _floats(array: Any) -> Any:
    return array.astype("float32") if array.dtype.kind == "f" else array


def _load_csv(source: Path, labels: str | None) -> tuple[Any, Any]:
    import pandas as pd

    table = pd.read_csv(source)
    y = None
    if labels is not None:
        if labels not in table.columns:
            raise UsageError(f"--labels: no column {labels!r} in {str(source)!r}; columns: {list(table.columns)[:20]}.")
        y = table.pop(labels).to_numpy()
    text = [c for c in table.columns if table[c].dtype.kind not in "biuf"]
    if text:
        raise UsageError(f"data: the CSV's feature columns must be numeric; {text[:5]} are not (name a label column with --labels).")
    return table.to_numpy("float32"), y


def _load_images(folder: Path, shapes: list[tuple] | None) -> Any:
    """Every image in ``folder`` (sorted by name), resized to the model's input, in [0, 1]."""
    import numpy as np
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"data: no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} images in folder {str(folder)!r}.")
    shape = tuple(shapes[0][1:]) if shapes and len(shapes) == 1 else ()
    if len(shape) != 3 or None in shape:
        raise UsageError(f"data: a folder of images needs a model taking (height, width, channels) images, this one takes {shape}.")
    height, width, channels = shape
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise UsageError(f"data: images need a model with 1 or 3 input channels, this one has {channels}.")
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                images.append(np.asarray(image.convert(mode).resize((width, height)), np.float32) / 255.0)
        except OSError as error:
            raise UsageError(f"data: cannot read image {str(file)!r} ({error}).") from None
    return np.stack(images).reshape((len(images), height, width, channels))


def _method_names() -> tuple[str, ...]:
    """The registry's method names (importing the explainers, and with them TensorFlow)."""
    from tf_explain_kit.explainers import registry

    return registry.names()


def _methods(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UsageError("--methods: name at least one method.")
    known = _method_names()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(f"--methods: unknown method {unknown[0]!r}; choose from {', '.join(known)}.")
    return names


class _HelpWithMethods(argparse.Action):
    """``explain --help``: the usual help, then the method names (read from the registry
    only when help is asked for)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, default: Any = argparse.SUPPRESS, help: str | None = None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: str | None = None) -> None:
        parser.epilog = "methods (--methods): " + ", ".join(_method_names())
        parser.print_help()
        parser.exit()


def _targets(text: str, y: Any) -> int | str | None:
    if text == "predicted":
        return None
    if text == "labels":
        if y is None:
            raise UsageError("--targets labels: the data has no labels (an npz 'y' array, or a CSV column named with --labels).")
        return "labels"
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--targets: expected 'predicted', 'labels' or a class index, got {text!r}.") from None


def _explainers(names: list[str], model: Any, x: Any, samples: int | None) -> list[Any]:
    """Explainers by name; ``samples`` goes to each one's sample-count option, if it has one."""
    from tf_explain_kit.data import kind_of
    from tf_explain_kit.explainers.registry import build

    kind = kind_of(x, model)
    explainers = []
    for name in names:
        explainer = build(name, model, x, kind)
        accepted = set(inspect.signature(type(explainer).__init__).parameters) & set(SAMPLE_OPTIONS)
        if samples is not None and accepted:
            explainer = build(explainer.method, model, x, kind, **{accepted.pop(): samples})
        explainers.append(explainer)
    return explainers


# -- explain: outputs ----------------------------------------------------------------------------
class _Shards:
    """``--output FILE.npz``: one finished shard per batch in ``FILE.npz.parts/`` (written to a
    temporary name, then renamed), merged into ``FILE.npz`` when every batch is done."""

    def __init__(self, output: str, resume: bool):
        self.output = Path(output)
        self.parts = self.output.with_name(self.output.name + ".parts")
        if not resume:
            shutil.rmtree(self.parts, ignore_errors=True)
        self.parts.mkdir(parents=True, exist_ok=True)

    def _shard(self, index: int) -> Path:
        return self.parts / f"batch_{index:06d}.npz"

    def done(self) -> int:
        count = 0
        while self._shard(count).exists():
            count += 1
        return count

    def write(self, index: int, ids: Any, explanations: dict) -> None:
        import keras
        import numpy as np

        arrays = {"ids": ids}
        for method, explanation in explanations.items():
            parts = keras.tree.flatten(explanation.attributions)
            names = ["attributions"] if len(parts) == 1 else [f"attributions.{i}" for i in range(len(parts))]
            arrays.update({f"{method}/{name}": part for name, part in zip(names, parts)})
            arrays.update({f"{method}/targets": explanation.targets, f"{method}/predictions": explanation.predictions})
            arrays.update({f"{method}/{k}": v for k, v in explanation.extras.items() if k != "sample_ids" and isinstance(v, np.ndarray) and len(v) == len(ids)})
        _save_atomically(self._shard(index), arrays)

    def merge(self) -> None:
        import numpy as np

        shards = [np.load(self._shard(i)) for i in range(self.done())]
        _save_atomically(self.output, {key: np.concatenate([s[key] for s in shards]) for key in shards[0].files})
        shutil.rmtree(self.parts)


def _save_atomically(path: Path, arrays: dict) -> None:
    import numpy as np

    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        np.savez(file, **arrays)
    os.replace(temporary, path)


def _logged_batches(logdir: str, methods: list[str], batch_size: int) -> int:
    """How many batches, from the first, an earlier run logged completely in ``logdir``."""
    import tf_explain_kit as tek

    try:
        run = tek.load_run(logdir)
    except (FileNotFoundError, ValueError):
        return 0

    def logged(step: int) -> list:
        try:
            return [run.explanation(method, step) for method in methods]
        except KeyError:
            return []

    done = 0
    while logged(done):
        done += 1
    if done > 1 and len(logged(0)[0].targets) != batch_size:
        raise UsageError(f"--batch-size: resume with the interrupted run's batch size, {len(logged(0)[0].targets)}.")
    return done


# -- explain -------------------------------------------------------------------------------------
def _explain(args: argparse.Namespace) -> int:
    if args.logdir is None and args.output is None:
        raise UsageError("explain: say where results go with --logdir DIR and/or --output FILE.npz.")
    if args.output is not None and not args.output.endswith(".npz"):
        raise UsageError(f"--output: expected a file name ending in .npz, got {args.output!r}.")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size: expected a positive number, got {args.batch_size}.")
    shapes = _input_shapes(args.model)  # files and shapes are checked before TensorFlow loads
    x, y = _load_data(args.data, shapes, args.labels)
    _check_shape(x, shapes)
    targets = _targets(args.targets, y)
    names = _methods(args.methods)
    from tf_explain_kit import tf_backend

    strategy = tf_backend.make_strategy(args.strategy)  # before any other TensorFlow work
    model = _load_model(args.model)
    if x is None:
        x = _load_images(Path(args.data), [tuple(model.inputs[0].shape)] if len(model.inputs) == 1 else None)
    from tf_explain_kit.model import ModelAdapter, num_samples, take

    try:
        ModelAdapter.shared(model).prepare(x, name="data")
        explainers = _explainers(names, model, take(x, slice(0, args.batch_size)), args.samples)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error).splitlines()[0]) from None
    return _run(args, strategy, model, x if y is None else (x, y), num_samples(x), explainers, targets)


def _run(args: argparse.Namespace, strategy: Any, model: Any, data: Any, total: int, explainers: list, targets: Any) -> int:
    import keras

    import tf_explain_kit as tek
    from tf_explain_kit import tf_backend

    methods = [e.method for e in explainers]
    shards = _Shards(args.output, args.resume) if args.output else None
    if args.logdir and not args.resume and storage.isdir(storage.join(args.logdir, "explanations")):
        raise UsageError(f"--logdir: {args.logdir!r} already holds explanations; pass --resume to continue that run, or choose a new folder.")
    done = [d for d in ((shards.done() if shards else None), (_logged_batches(args.logdir, methods, args.batch_size) if args.logdir else None)) if d is not None]
    start = min(done)
    chief = tf_backend.strategy_is_chief(strategy)
    progress = keras.utils.Progbar(total, unit_name="sample", stateful_metrics=["samples/s"], verbose=1 if chief else 0)
    progress.update(min(start * args.batch_size, total))
    clock = {"start": time.perf_counter(), "count": 0}

    def on_batch(index: int, ids: Any, explanations: dict) -> None:
        if shards is not None and chief:
            shards.write(index, ids, explanations)
        clock["count"] += len(ids)
        rate = clock["count"] / max(time.perf_counter() - clock["start"], 1e-9)
        progress.update(min(int(ids[-1]) + 1, total), [("samples/s", rate)])

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = tek.explain_dataset(
            model, data, explainers, args.logdir, strategy, batch_size=args.batch_size, targets=targets, precision=args.precision, channels=args.channels, on_batch=on_batch, start_batch=start
        )
    except KeyboardInterrupt:
        print("\nInterrupted: every finished batch is saved; run the same command with --resume to continue.", file=sys.stderr)
        return 130
    if shards is not None and chief:
        shards.merge()
    where = " and ".join(str(p) for p in (args.logdir, args.output) if p)
    print(f"Explained {result.samples} samples with {', '.join(methods)} in {result.seconds:.1f} s ({result.samples_per_second:.1f} samples/s) → {where}")
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# -- entry point ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tf-explain-kit", description="Explanations for Keras 3 models.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train a CNN on scikit-learn's digits with explanations, then serve TensorBoard")
    demo.add_argument("--logdir", default="runs/demo", help="TensorBoard log directory (default: runs/demo)")
    demo.add_argument("--port", type=int, default=6006, help="TensorBoard port on 127.0.0.1 (default: 6006)")
    demo.add_argument("--epochs", type=int, default=12)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-serve", action="store_true", help="stop after training")

    explain = commands.add_parser("explain", help="explain every sample of a dataset with a saved Keras model", add_help=False)
    explain.add_argument("-h", "--help", action=_HelpWithMethods, help="show this help and the method names, then exit")
    explain.add_argument("model", help="a saved Keras model (.keras)")
    explain.add_argument("--data", required=True, help="a .npz (arrays x[, y]) or .npy file, a CSV table, or a folder of images")
    explain.add_argument("--methods", default="integrated_gradients", help="comma-separated method names (default: integrated_gradients)")
    explain.add_argument("--logdir", help="write the tf-explain-kit log format here (TensorBoard, load_run)")
    explain.add_argument("--output", help="write plain arrays to this .npz file")
    explain.add_argument("--targets", default="predicted", help="'predicted' (default), 'labels' (the data's y) or a class index")
    explain.add_argument("--labels", help="the labels: an array name in the .npz (default 'y') or a CSV column")
    explain.add_argument("--batch-size", type=int, default=64, help="samples per batch, split across replicas (default: 64)")
    explain.add_argument("--samples", type=int, help="samples drawn by LIME, SHAP, SmoothGrad and VarGrad (default: each method's own)")
    explain.add_argument("--strategy", choices=STRATEGIES, default="none", help="tf.distribute strategy: none, mirrored (local devices) or multi_worker (TF_CONFIG)")
    explain.add_argument("--precision", choices=("float16", "float32"), default="float16", help="attribution storage in --logdir")
    explain.add_argument("--channels", choices=("sum", "all"), default="sum", help="image attributions in --logdir: their channel sum (default) or every channel")
    explain.add_argument("--resume", action="store_true", help="continue an interrupted run, skipping its finished batches")

    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return {"demo": _demo, "explain": _explain}[args.command](args)
    except UsageError as error:
        print(f"tf-explain-kit: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
