"""The registry: one declaration per method drives exports, callback names, the CLI and kinds."""

from __future__ import annotations

import copy

import keras
import numpy as np
import pytest

import tf_explain_kit as tek
from tf_explain_kit import cli
from tf_explain_kit.data import KINDS, kind_of
from tf_explain_kit.explainers import registry
from tf_explain_kit.explainers.base import Explainer

L = keras.layers


def test_every_method_is_declared_once_and_exported():
    assert len(registry.METHODS) == 17
    for name, method in registry.METHODS.items():
        assert method.cls.method == name and getattr(tek, method.cls.__name__) is method.cls
        assert method.cls.__name__ in tek.__all__ and method.cls.__name__ in dir(tek)
        assert method.kinds and set(method.kinds) <= set(KINDS)
    assert registry.names() == tuple(registry.METHODS) + ("lime", "shap")


def test_methods_by_kind():
    names = lambda kind: {m.name for m in registry.methods(kind)}  # noqa: E731
    assert names("tokens") == {"gradcam", "gradcam_plus_plus", "integrated_gradients", "lime_text", "lrp", "occlusion", "gradient_shap", "kernel_shap"}
    assert names("strings") == names("tokens") - {"occlusion"} | {"partition_shap"}
    assert {"gradcam", "gradcam_plus_plus", "occlusion", "lime_image"} <= names("image") and "lime_tabular" not in names("image")
    assert names("sequence") == names("tabular") | {"gradcam", "gradcam_plus_plus", "partition_shap"}
    with pytest.raises(ValueError, match=r"kind: expected one of \('image', 'sequence', 'tabular', 'tokens', 'strings'\), got 'text'"):
        registry.methods("text")


@pytest.mark.parametrize(
    "generic, kind, method",
    [
        ("lime", "image", "lime_image"),
        ("lime", "tabular", "lime_tabular"),
        ("lime", "sequence", "lime_tabular"),
        ("lime", "strings", "lime_text"),
        ("lime", "tokens", "lime_text"),
        ("shap", "image", "gradient_shap"),
        ("shap", "tabular", "kernel_shap"),
        ("shap", "sequence", "kernel_shap"),
        ("shap", "tokens", "kernel_shap"),
        ("shap", "strings", "partition_shap"),
    ],
)
def test_generic_names_resolve_by_kind(generic, kind, method):
    assert registry.method_for(generic, kind).name == method


def test_a_method_off_its_kinds_is_refused_with_the_alternatives():
    with pytest.raises(ValueError, match=r"saliency: Saliency does not apply to token ids \(integer \(N, T\)\)\. Methods for token ids \(integer \(N, T\)\): gradcam, gradcam_plus_plus, integrated_gradients, lime_text, lrp, occlusion, gradient_shap, kernel_shap\."):
        registry.method_for("saliency", "tokens")
    with pytest.raises(ValueError, match="explainers: unknown method 'salency'"):
        registry.method_for("salency", "image")


def _embedding_model():
    return keras.Sequential([keras.Input((6,), dtype="int32"), L.Embedding(20, 4), L.GlobalAveragePooling1D(), L.Dense(2)])


def test_kind_of():
    rng = np.random.default_rng(0)
    conv2d = keras.Sequential([keras.Input((8, 8)), L.Reshape((8, 8, 1)), L.Conv2D(2, 3), L.GlobalAveragePooling2D(), L.Dense(2)])
    conv1d = keras.Sequential([keras.Input((8, 3)), L.Conv1D(2, 3), L.GlobalAveragePooling1D(), L.Dense(2)])
    dense = keras.Sequential([keras.Input((6,)), L.Dense(2)])
    assert kind_of(rng.random((4, 8, 8, 3))) == "image"
    assert kind_of(rng.random((4, 8, 3)), conv1d) == kind_of(rng.random((4, 8, 3))) == "sequence"
    assert kind_of(rng.random((4, 8, 8)), conv2d) == "image"  # grayscale images of a 2-D model
    assert kind_of(rng.random((4, 6))) == "tabular"
    ids = rng.integers(0, 20, (4, 6))
    assert kind_of(ids, _embedding_model()) == kind_of(ids) == "tokens"
    assert kind_of(ids, dense) == "tabular"  # integers into a model without an embedding are numbers
    for texts in (np.array(["a b", "c"]), np.array([["a b"], ["c"]], object), np.array([b"a b", b"c"])):
        assert kind_of(texts) == "strings"
    assert kind_of([rng.random((4, 3)), rng.random((4, 8, 8, 1))]) == "image"  # the image input decides


class Constant(Explainer):
    """Every feature gets 1: a method added in one place, for the test below."""

    method = "constant_test"

    def attribute(self, x, weights):
        return np.ones_like(x), {}


@pytest.fixture
def own_registry(monkeypatch):
    """Registrations made in a test vanish after it."""
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    monkeypatch.setattr(registry, "GENERIC", copy.deepcopy(registry.GENERIC))
    yield registry
    vars(tek).pop("Constant", None)


def test_a_registered_method_is_everywhere(own_registry, tmp_path):
    own_registry.register(kinds=("tabular",), defaults=lambda setting: {})(Constant)
    assert own_registry.names()[-3:] == ("constant_test", "lime", "shap")
    assert tek.Constant is Constant and "Constant" in tek.__all__
    assert [m.name for m in own_registry.methods("tabular")][-1] == "constant_test" and "constant_test" not in {m.name for m in own_registry.methods("image")}
    assert cli._methods("saliency, constant_test") == ["saliency", "constant_test"]

    keras.utils.set_random_seed(0)
    x, y = np.random.default_rng(0).random((20, 5), np.float32), np.arange(20) % 2
    model = keras.Sequential([keras.Input((5,)), L.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[tek.ExplainCallback((x, y), ["constant_test"], str(tmp_path), max_samples=4)])
    run = tek.load_run(tmp_path)
    assert run.methods == ["constant_test"] and run.epochs == [0, 1]
    np.testing.assert_array_equal(run.explanation("constant_test", 1).attributions, np.ones((4, 5)))


def test_registration_errors_are_clear(own_registry):
    with pytest.raises(ValueError, match="register: constant_test declares kinds \\['text'\\]"):
        own_registry.register(kinds=("text",))(Constant)
    with pytest.raises(ValueError, match=r"register: constant_test would serve 'shap' for \['tabular'\], already served by \['kernel_shap'\]"):
        own_registry.register(kinds=("tabular",), serves={"shap": ("tabular",)})(Constant)
    with pytest.raises(ValueError, match="register: constant_test declares kinds \\['image'\\]"):
        own_registry.register(kinds=("tabular",), serves={"lime": ("image",)})(Constant)
    own_registry.register(kinds=("tabular",), serves={"constant": ("tabular",)})(Constant)
    assert own_registry.method_for("constant", "tabular").cls is Constant
    with pytest.raises(own_registry.NotApplicable, match=r"constant: no constant method applies to images \(N, H, W\[, C\]\)\. Methods for images"):
        own_registry.method_for("constant", "image")
