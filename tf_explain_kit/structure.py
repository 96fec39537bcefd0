"""A Keras model's parts: the layers and operations it calls, nested ones included.

Keras lists a model's layers (``model.layers``; ``model.operations`` for a Functional
model also lists the raw operations such as ``x + 3`` between them), but not the layers a
custom layer holds as attributes (an ``Embedding`` inside a token-and-position layer, the
dense projections of ``MultiHeadAttention``, an RNN's cell). These are found by walking
the layer's attributes, the way Keras' own tracking finds them, without private API.
"""

from __future__ import annotations

from typing import Any, Iterator

import keras


def children(layer: Any) -> list:
    """What ``layer`` calls directly: a Functional model's operations (layers and raw
    operations, in graph order), another model's layers, or a custom layer's sublayers."""
    if isinstance(layer, keras.Model):
        found = getattr(layer, "operations", None)
        return list(found) if found is not None else list(layer.layers)
    return sublayers(layer) if isinstance(layer, keras.layers.Layer) else []


def sublayers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers held in ``layer``'s attributes (directly, or in lists, tuples and dicts)."""
    found: dict[int, keras.layers.Layer] = {}
    for value in vars(layer).values():
        for item in _layers_in(value):
            if item is not layer:
                found.setdefault(id(item), item)
    return list(found.values())


def _layers_in(value: Any) -> Iterator[keras.layers.Layer]:
    if isinstance(value, keras.layers.Layer):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, keras.layers.Layer):
                yield item
    elif isinstance(value, dict):
        for item in value.values():
            if isinstance(item, keras.layers.Layer):
                yield item


def walk(layer: Any) -> Iterator[Any]:
    """Every layer and operation below ``layer``, depth first, each once."""
    seen: set[int] = {id(layer)}
    stack = list(reversed(children(layer)))
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.extend(reversed(children(item)))


def all_layers(model: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """``model`` and every layer below it (operations that are not layers left out)."""
    yield model
    yield from (item for item in walk(model) if isinstance(item, keras.layers.Layer))


def named_sublayers(layer: Any) -> list[tuple[str, keras.layers.Layer]]:
    """What ``layer`` holds, by name: a model's layers by their names, a custom layer's
    sublayers by the attribute that holds them (the layer's own name inside lists and dicts)."""
    if isinstance(layer, keras.Model):
        return [(sub.name, sub) for sub in layer.layers]
    if not isinstance(layer, keras.layers.Layer):
        return []
    held = vars(layer).items()
    found = [(attribute.lstrip("_"), value) for attribute, value in held if isinstance(value, keras.layers.Layer)]
    found += [(item.name, item) for _, value in held if not isinstance(value, keras.layers.Layer) for item in _layers_in(value)]
    return found
