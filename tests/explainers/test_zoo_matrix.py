"""The method × model-kind matrix, built from the method registry.

Every registered method meets every model of the zoo (``tests/zoo.py``), built the way the
callback builds it (``registry.build`` with defaults from the data). A cell either works —
attributions of the documented shape, finite, not all zero on a briefly trained model, and
the method's axiom where it has one — or is refused when the explainer is built, with a
``ValueError``/``TypeError`` that says why and what to use instead. Which cells are refused
is declared here: by the registry's data kinds, and in :data:`REFUSED` for the few that
depend on the model (each with its reason). No cell may end in any other error.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests import zoo
from tf_explain_kit.data import kind_of
from tf_explain_kit.explainers import registry
from tf_explain_kit.model import flat_inputs, take

N = 3  # samples explained per cell
FAST = {  # fewer samples, steps and evaluations than the defaults: the matrix checks reach, not quality
    "smoothgrad": {"samples": 4},
    "vargrad": {"samples": 4},
    "integrated_gradients": {"steps": 64},
    "lime_image": {"num_samples": 100},
    "lime_tabular": {"num_samples": 200},
    "lime_text": {"num_samples": 100},
    "gradient_shap": {"samples": 16},
    "kernel_shap": {"nsamples": 32, "summarize": 2, "summary": "sample"},
    "partition_shap": {"max_evals": 64},
    "occlusion": {},
}
# Cells refused because of the model, where the method applies to its data kind:
# (case, method) -> what the error says.
REFUSED: dict[tuple[str, str], str] = {
    # Grad-CAM needs a convolution's (N, h, w, C) or (N, T, C) activation; a recurrent layer's
    # last state has no time axis.
    **{(case, cam): "no layer with a" for case in ("lstm_series", "gru_series", "bidirectional_series") for cam in ("gradcam", "gradcam_plus_plus")},
    # Partition SHAP's hierarchy is over one array; several inputs go to KernelShap / LimeTabular groups.
    **{(case, "partition_shap"): "single-input models" for case in ("multi_input_list", "multi_input_dict")},
}
# Where the method's axiom is exact up to float32 rounding (relative to |f(x) − f(reference)|).
EXACT = {"deeplift": 1e-3, "deep_shap": 1e-3}
IG_COMPLETENESS = 0.05  # 64 steps of the quadrature on briefly trained, non-smooth networks
# keras.applications with random weights: the straight path crosses so many ReLU kinks that 64
# steps leave gaps of up to 7x the score change (IG reports it in convergence_delta and warns).
IG_UNCONVERGED = {"resnet50v2", "efficientnetb0", "mobilenetv2", "mobilenetv3small", "convnexttiny", "densenet121"}


def _cells():
    for case in zoo.CASES:
        for method in registry.METHODS:
            yield pytest.param(case, method, id=f"{case}-{method}")


@pytest.mark.parametrize("case, method", list(_cells()))
def test_cell(case, method):
    model, data = zoo.built(case)
    kind = kind_of(data, model)
    options = {**FAST.get(method, {}), **zoo.CASES[case].options}
    if zoo.CASES[case].tokens:
        options["vocabulary"] = zoo.corpus()[2]  # as the callback's vocabulary= passes it
    declared = registry.METHODS[method]
    if not declared.applies_to(kind) or (case, method) in REFUSED:
        reason = "does not apply to" if not declared.applies_to(kind) else REFUSED[case, method]
        with pytest.raises((ValueError, TypeError), match=reason) as refused:
            registry.build(method, model, data, kind, **options)
        assert "use" in str(refused.value).lower() or "methods for" in str(refused.value).lower(), f"the refusal names no alternative: {refused.value}"
        return

    explainer = registry.build(method, model, data, kind, **options)
    x = take(data, slice(0, N))
    explanation = explainer.explain(x)

    arrays = flat_inputs(explanation.attributions)
    assert all(len(a) == N for a in arrays)
    assert all(a.dtype == np.float32 for a in arrays), [a.dtype for a in arrays]
    assert all(np.isfinite(a).all() for a in arrays)
    assert any(np.abs(a).max() > 0 for a in arrays), "all-zero attributions"
    assert explanation.targets.shape == (N,)
    _check_axiom(method, explanation, converged=case not in IG_UNCONVERGED)


def _check_axiom(method: str, explanation, converged: bool) -> None:
    extras = explanation.extras
    if method in EXACT or method == "integrated_gradients" and converged:
        reference = extras["baseline_score"] if "baseline_score" in extras else extras["base_values"]
        change = np.abs(np.asarray(extras["score"]) - reference)
        tolerance = EXACT.get(method, IG_COMPLETENESS)
        assert np.all(np.abs(extras["convergence_delta"]) <= tolerance * change + 1e-4), (extras["convergence_delta"], change)
    if method == "kernel_shap":  # efficiency: the values sum to f(x) − E f(background)
        total = sum(np.asarray(v).reshape(N, -1).sum(axis=1) for v in flat_inputs(extras.get("shap_values", explanation.attributions)))
        np.testing.assert_allclose(total, np.asarray(extras["score"]) - extras["base_values"], rtol=1e-3, atol=1e-4)



CALLBACK_CASES = ["augmented_cnn", "multi_input_dict", "multi_output", "conv1d_series", "lstm_series", "text_conv1d", "transformer", "raw_strings", "tabular_sigmoid", "regression", "mixed_float16"]
CALLBACK_METHODS = ["integrated_gradients", "gradcam", "lime", "shap"]


@pytest.mark.parametrize("case", CALLBACK_CASES)
def test_callback_on_every_model_kind(case, tmp_path):
    """One epoch of ``fit`` with the callback and generic method names: each method is
    logged with finite attributions or logged once as refused, and training ends."""
    import tensorflow as tf

    import tf_explain_kit as tek

    model, data = zoo.built(case)
    predicted = model.predict(tf.constant(data.tolist()) if case == "raw_strings" else data, verbose=0)
    predicted = predicted["classes"] if case == "multi_output" else predicted
    task = "regression" if case == "regression" else "binary" if predicted.shape[1] == 1 else "classes"
    labels = {"regression": predicted[:, 0], "binary": (predicted[:, 0] > 0.5).astype(np.int64), "classes": predicted.argmax(axis=1)}[task]
    options = {"output": "classes"} if case == "multi_output" else {}
    if zoo.CASES[case].tokens:
        options["vocabulary"] = zoo.corpus()[2]
    callback = tek.ExplainCallback((data, labels), CALLBACK_METHODS, log_dir=str(tmp_path), max_samples=3, **options)

    weights = model.get_weights()
    loss = {"regression": "mse", "binary": "binary_crossentropy", "classes": "sparse_categorical_crossentropy"}[task]
    model.compile("sgd", {"classes": loss, "size": "mse"} if case == "multi_output" else loss)
    targets = {"classes": labels, "size": np.zeros(len(labels), np.float32)} if case == "multi_output" else labels
    history = model.fit(tf.constant(data.tolist()) if case == "raw_strings" else data, targets, epochs=2, batch_size=8, verbose=0, callbacks=[callback])
    model.set_weights(weights)  # the zoo's model stays as the matrix expects it
    assert len(history.history["loss"]) == 2

    run = tek.load_run(str(tmp_path))
    logged, refused = run.methods, run.errors
    assert len(logged) + len(refused) == len(CALLBACK_METHODS), (logged, refused)
    for method in logged:
        assert run.epochs_of(method) == [0, 1]
        assert all(np.isfinite(a).all() for a in flat_inputs(run.explanation(method, 1).attributions))
    for method, by_epoch in refused.items():
        assert method not in logged and list(by_epoch) == [0], (method, by_epoch)
        assert "refused" in by_epoch[0]
