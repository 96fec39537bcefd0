"""Text end to end on a raw-string model (a TextVectorization inside): every form of texts,
one tokenisation, attributions per shown token, axioms and planted words."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_explain_kit as tek
from tests import text_models
from tests.text_models import NEGATIVE, POSITIVE



@pytest.fixture(scope="module")
def string_model():
    texts, labels = text_models.reviews()
    model = text_models.string_model(texts)
    model.fit(text_models.as_tensor(texts), labels, epochs=12, batch_size=32, verbose=0)
    assert model.evaluate(text_models.as_tensor(texts), labels, verbose=0)[1] > 0.95
    return model


TEXTS = ["<b>the</b> movie, was Great! really", "awful, (film) and actors,", "quite good", "the <b>plot</b> was poor ... really!"]
TOKENS = [["<b>the</b>", "movie,", "was", "Great!", "really"], ["awful,", "(film)", "and", "actors,"], ["quite", "good"], ["the", "<b>plot</b>", "was", "poor", "really!"]]


def _forms(texts):
    array = np.array(texts)
    return {
        "(N,) unicode": array,
        "(N, 1) unicode": array[:, None],
        "(N, 1) object, as pandas .values": array.astype(object)[:, None],
        "(N,) object": array.astype(object),
        "list of str": list(texts),
        "bytes": [t.encode() for t in texts],
        "tf.data (x, y) batches": tf.data.Dataset.from_tensor_slices((array[:, None], np.zeros(len(texts)))).batch(3),
        "tf.data texts": tf.data.Dataset.from_tensor_slices(array),
    }


def test_integrated_gradients_at_the_embedding_for_every_form_of_texts(string_model):
    """One value per shown token, the same for every form of the texts, and complete: the sum
    is score(text) − score(empty text)."""
    explainer = tek.IntegratedGradients(string_model, steps=16, layer="embedding")
    reference = explainer.explain(TEXTS)
    assert reference.extras["tokens"] == TOKENS
    assert reference.attributions.shape == (4, 5)
    for name, form in _forms(TEXTS).items():
        explanation = explainer.explain(form)
        np.testing.assert_array_equal(explanation.attributions, reference.attributions, err_msg=name)
        assert explanation.extras["tokens"] == TOKENS, name
    scores = explainer.adapter.forward(explainer.adapter.prepare(TEXTS + [""] * 4))[1]
    gap = scores[:4, reference.targets].diagonal() - scores[4:, reference.targets].diagonal()
    np.testing.assert_allclose(reference.attributions.sum(axis=1), gap, atol=1e-5)
    np.testing.assert_allclose(reference.extras["convergence_delta"], 0, atol=1e-5)
    assert not reference.attributions[1, 4:].any() and not reference.attributions[2, 2:].any()  # padding
    from_the = tek.IntegratedGradients(string_model, steps=16, layer="embedding", baseline=["the"]).explain(TEXTS)
    np.testing.assert_allclose(from_the.extras["convergence_delta"], 0, atol=1e-5)  # a text as baseline
    for i, tokens in enumerate(TOKENS):  # the planted word carries the most of its class's score
        planted = next(j for j, t in enumerate(tokens) if t.strip("!,").lower() in POSITIVE + NEGATIVE)
        assert int(np.argmax(reference.attributions[i])) == planted


def test_integrated_gradients_on_a_string_model_without_layer_points_to_the_embedding(string_model):
    with pytest.raises(TypeError, match=r"needs float inputs, got strings.*layer=<embedding layer name>\) \(this model's embedding layers: 'embedding'\)"):
        tek.IntegratedGradients(string_model).explain(TEXTS)


def _token_effects(model, texts):
    """The model's logits are additive in its tokens: average pooling over the 10 positions
    of embeddings, then a dense layer, so token t adds w · (e_t − e_padding) / 10 to the
    logit of a class. Returns those effects per shown token, for the predicted class."""
    vectorize, embedding, dense = model.get_layer("vectorize"), model.get_layer("embedding"), model.layers[-1]
    ids = keras.ops.convert_to_numpy(vectorize(np.array(texts)))
    e, (w, _) = embedding.get_weights()[0], dense.get_weights()
    logits = e[ids].mean(axis=1) @ w
    target = logits.argmax(axis=1)
    return np.einsum("nld,nd->nl", e[ids] - e[0], w[:, target].T) / ids.shape[1], target


def test_every_text_method_gives_the_analytic_token_effects(string_model):
    """On a model additive in its tokens, IG and expected gradients at the embedding,
    Kernel SHAP and Partition SHAP over the tokens all give each shown token its exact
    effect on the logit, at its position; they sum to score(text) − score(empty text)."""
    effects, target = _token_effects(string_model, TEXTS)
    explanations = {
        "integrated_gradients": tek.IntegratedGradients(string_model, steps=8, layer="embedding").explain(TEXTS),
        "gradient_shap": tek.GradientShap(string_model, [""], samples=20, layer="embedding").explain(TEXTS),
        "kernel_shap": tek.KernelShap(string_model, None).explain(TEXTS),
        "partition_shap": tek.PartitionShap(string_model, max_evals=200).explain(TEXTS),
    }
    for method, explanation in explanations.items():
        assert explanation.extras["tokens"] == TOKENS, method
        assert explanation.attributions.shape == (4, 5), method
        np.testing.assert_array_equal(explanation.targets, target)
        np.testing.assert_allclose(explanation.attributions, effects[:, :5], atol=2e-5, err_msg=method)
    assert not effects[:, 5:].any()  # padding positions carry nothing and are dropped


def test_text_methods_refuse_what_does_not_apply_to_a_string_model(string_model):
    with pytest.raises(ValueError, match="background: model .* takes strings; KernelShap plays its tokens .* Pass background=None"):
        tek.KernelShap(string_model, np.array(["the movie"]))
    with pytest.raises(TypeError, match="GradientShap without layer= needs float inputs, got strings"):
        tek.GradientShap(string_model, [""]).explain(TEXTS)
    with pytest.raises(ValueError, match="inputs: texts \\[0\\] have no tokens"):
        tek.KernelShap(string_model, None).explain(["... !"])
    with pytest.raises(TypeError, match="inputs: expected texts: a list of str .* got shape \\(2,\\) of \\['int'\\]"):
        tek.IntegratedGradients(string_model, layer="embedding").explain(np.array([1, 2], dtype=object))


def _vectorized_model(**options):
    vectorize = keras.layers.TextVectorization(max_tokens=20, **options)
    vectorize.adapt(np.array(["good movie", "bad plot"]))
    strings = keras.Input((1,), dtype="string")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4, name="embedding")(vectorize(strings)))
    return keras.Model(strings, keras.layers.Dense(2)(h))


def test_vectorizations_without_a_position_per_token_refuse_layer_attributions_at_construction():
    open_length = _vectorized_model()
    with pytest.raises(ValueError, match="layer: attributions at 'embedding' are per token position.*output_sequence_length=None"):
        tek.IntegratedGradients(open_length, layer="embedding")
    with pytest.raises(ValueError, match="output_sequence_length=None"):
        tek.GradientShap(open_length, [""], layer="embedding")
    assert tek.LimeText(open_length, num_samples=20).explain(["good movie plot"]).attributions.shape == (1, 3)  # removal needs no positions
    bigrams = _vectorized_model(ngrams=2, output_sequence_length=6)
    with pytest.raises(ValueError, match="layer: attributions at 'embedding' are per token position.*ngrams=2"):
        tek.IntegratedGradients(bigrams, layer="embedding")
    for explainer in (tek.LimeText(bigrams, num_samples=20), tek.KernelShap(bigrams, None), tek.PartitionShap(bigrams, max_evals=20)):
        explanation = explainer.explain(["good movie plot"])  # removing words needs no positions
        assert explanation.extras["tokens"] == [["good", "movie", "plot"]] and explanation.attributions.shape == (1, 3)
