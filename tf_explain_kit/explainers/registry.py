"""The one registration point of the explanation methods.

Each method declares itself once, next to its class::

    @register(kinds=("image", "sequence", "tabular"), defaults=background_rows, serves={"shap": ("tabular",)})
    class KernelShap(Explainer):
        method = "kernel_shap"

The declaration says which data kinds (:data:`~tf_explain_kit.data.KINDS`) the method
applies to, which constructor options it takes by default for a model and its data, and
for which kinds it is what a generic name (``"lime"``, ``"shap"``) means. The package
exports, the callback's method names, the command line's ``--methods`` and the test
matrices all read :data:`METHODS`; adding a method is one module (found by
:mod:`tf_explain_kit.explainers` on import) plus its tests.

Enumerate with :data:`METHODS` (``{name: Method}``) or :func:`methods` (``kind=`` filters),
resolve a name with :func:`method_for`, build with :func:`build` / :func:`resolve`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np

from ..data import KIND_DESCRIPTIONS, KINDS
from ..data import TEXT_KINDS as TEXT  # noqa: F401  (for declarations: token ids and strings)
from ..model import Inputs, embedding_layers, map_inputs, path_of, take
from .base import Explainer

BACKGROUND = 50  # reference samples taken from the data for SHAP
NUMERIC = ("image", "sequence", "tabular")  # the kinds of float data


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a method's defaults are derived from: the model, data drawn from the
    validation set (backgrounds, training statistics), its kind, and the token vocabulary
    when the caller knows one (token strings by id)."""

    model: keras.Model
    data: Inputs
    kind: str
    vocabulary: Sequence[str] | None = None


Defaults = Callable[[Setting], dict]


@dataclasses.dataclass(frozen=True)
class Method:
    """One registered method: its explainer class, the data kinds it applies to, its
    default constructor options, and ``serves``: generic name → the kinds it stands for."""

    name: str
    cls: type[Explainer]
    kinds: tuple[str, ...]
    defaults: Defaults
    serves: Mapping[str, tuple[str, ...]]

    def applies_to(self, kind: str) -> bool:
        return kind in self.kinds


class NotApplicable(ValueError):
    """A method asked for data of a kind it does not declare (the message names those that do)."""


METHODS: dict[str, Method] = {}
GENERIC: dict[str, dict[str, str]] = {}  # generic name → {kind: method name}


def no_defaults(setting: Setting) -> dict:
    return {}


def background_rows(setting: Setting) -> dict:
    """SHAP's reference samples: the first rows of the data (texts too); for token ids, one
    row of padding (id 0), so a hidden token is an absent one."""
    if setting.kind == "tokens":
        return {"background": map_inputs(np.zeros_like, take(setting.data, slice(0, 1)))}
    return {"background": take(setting.data, slice(0, BACKGROUND))}


def at_embedding(setting: Setting) -> dict:
    """Text models are explained at their (first) embedding layer."""
    if setting.kind not in ("tokens", "strings"):
        return {}
    embeddings = embedding_layers(setting.model)
    return {"layer": path_of(setting.model, embeddings[0])} if embeddings else {}


def declared_text_kind(model: keras.Model) -> str | None:
    """``"strings"`` or ``"tokens"`` when ``model`` declares text inputs (strings, or integer
    ids into an Embedding), else None (also when it declares no inputs)."""
    try:
        dtypes = [str(spec.dtype) for spec in keras.tree.flatten(model.inputs)]
    except (AttributeError, ValueError):
        return None
    if any("string" in dtype for dtype in dtypes):
        return "strings"
    return "tokens" if dtypes and "int" in dtypes[0] and embedding_layers(model) else None


def _refusing_text_models(cls: type[Explainer]) -> None:
    """``cls``, a method that differentiates with respect to its inputs, refuses at
    construction a model that declares text inputs (instead of at its first ``explain``)."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Explainer, model: keras.Model, *args: Any, **kwargs: Any) -> None:
        kind = declared_text_kind(model)
        if kind is not None:
            raise NotApplicable(f"model: {cls.__name__} needs float inputs, and model '{model.name}' takes {KIND_DESCRIPTIONS[kind]}. {alternatives(kind)}")
        init(self, model, *args, **kwargs)

    cls.__init__ = __init__


def register(
    kinds: Sequence[str], defaults: Defaults = no_defaults, serves: Mapping[str, Sequence[str]] | None = None, float_inputs: bool = False
) -> Callable[[type[Explainer]], type[Explainer]]:
    """Class decorator declaring an explainer (named by its ``method`` attribute).
    ``float_inputs``: the method differentiates with respect to its inputs, so it refuses,
    when built, a model that declares token ids or strings."""

    def declare(cls: type[Explainer]) -> type[Explainer]:
        name = cls.method
        unknown = [k for k in kinds if k not in KINDS] + [k for ks in (serves or {}).values() for k in ks if k not in kinds]
        if unknown:
            raise ValueError(f"register: {name} declares kinds {unknown}; kinds are {KINDS} and a method serves a generic name only for its own kinds.")
        if name in METHODS and METHODS[name].cls is not cls:
            raise ValueError(f"register: method {name!r} is already declared by {METHODS[name].cls.__name__}.")
        for generic, for_kinds in (serves or {}).items():
            clash = {k: GENERIC[generic][k] for k in for_kinds if GENERIC.get(generic, {}).get(k, name) != name}
            if clash:
                raise ValueError(f"register: {name} would serve {generic!r} for {sorted(clash)}, already served by {sorted(set(clash.values()))}.")
        for generic, for_kinds in (serves or {}).items():
            GENERIC.setdefault(generic, {}).update(dict.fromkeys(for_kinds, name))
        METHODS[name] = Method(name, cls, tuple(kinds), defaults, {g: tuple(ks) for g, ks in (serves or {}).items()})
        if float_inputs:
            _refusing_text_models(cls)
        return cls

    return declare


def methods(kind: str | None = None) -> list[Method]:
    """The registered methods, in declaration order; ``kind`` keeps those applying to it."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}.")
    return [m for m in METHODS.values() if kind is None or m.applies_to(kind)]


def names() -> tuple[str, ...]:
    """Every name the callback and the command line accept: methods, then generic names."""
    return tuple(METHODS) + tuple(GENERIC)


def method_for(name: str, kind: str) -> Method:
    """The method ``name`` stands for on data of ``kind`` (generic names resolve by kind).

    Raises ``ValueError`` for an unknown name, and :class:`NotApplicable` (a ``ValueError``)
    for a generic name without a variant for ``kind`` or a method that does not apply to
    ``kind`` (naming the ones that do).
    """
    if name in GENERIC:
        if kind not in GENERIC[name]:
            raise NotApplicable(f"{name}: no {name} method applies to {KIND_DESCRIPTIONS[kind]}. {alternatives(kind)}")
        name = GENERIC[name][kind]
    if name not in METHODS:
        raise ValueError(f"explainers: unknown method {name!r}; choose from {', '.join(names())}, or pass an explainer instance.")
    method = METHODS[name]
    if not method.applies_to(kind):
        raise NotApplicable(f"{name}: {method.cls.__name__} does not apply to {KIND_DESCRIPTIONS[kind]}. {alternatives(kind)}")
    return method


def alternatives(kind: str, besides: str | None = None) -> str:
    """A sentence naming the methods for ``kind`` (other than ``besides``)."""
    usable = [m.name for m in methods(kind) if m.name != besides]
    return f"Methods for {KIND_DESCRIPTIONS[kind]}: {', '.join(usable)}." if usable else ""


def build(name: str, model: keras.Model, data: Inputs, kind: str, vocabulary: Sequence[str] | None = None, **options: Any) -> Explainer:
    """The explainer called ``name`` for ``model`` on data of ``kind``.

    ``data`` supplies backgrounds (SHAP) and training statistics (LIME tabular);
    ``vocabulary`` (token strings by id) lets text methods read token ids as words;
    ``options`` go to the explainer's constructor, over the method's defaults.
    """
    method = method_for(name, kind)
    return method.cls(model, **{**method.defaults(Setting(model, data, kind, vocabulary)), **options})


def resolve(item: str | Explainer, model: keras.Model, data: Inputs, kind: str, **options: Any) -> Explainer:
    """An explainer instance as given (checked to belong to ``model``), or built by name."""
    if isinstance(item, Explainer):
        if item.model is not model:
            raise ValueError(f"explainers: {item!r} was built for model '{item.model.name}', not for '{model.name}'; build it for this model.")
        return item
    if not isinstance(item, str):
        raise TypeError(f"explainers: expected explainer instances or method names, got {type(item).__name__}.")
    return build(item, model, data, kind, **options)
