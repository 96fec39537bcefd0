"""Composites: which LRP rule each linear layer gets, and the presets.

A :class:`Composite` maps layer types (or predicates on a layer's
:class:`~.lrp_rules.Site`) to rules, first match wins, with a ``first`` rule for the layers
reading the pixels (as zennit's ``SpecialFirstLayerMapComposite``).
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

from keras import layers as L

from .lrp_rules import KERNEL_LAYERS, SEPARABLE, AlphaBeta, Epsilon, Gamma, Pass, Rule, Site, Zero, ZBox, ZPlus

Match = Union[type, tuple, Callable[[Site], bool]]
DENSE = (L.Dense, L.EinsumDense)
CONVOLUTIONS = tuple(k for k in KERNEL_LAYERS if k not in DENSE)


class Composite:
    """Rules by layer: ``layer_map`` is a list of ``(match, rule)``, ``match`` a layer type,
    a tuple of types or a predicate ``site -> bool``; ``first`` goes to the layers reading
    the pixels (z^B, typically)."""

    def __init__(self, layer_map: Sequence[tuple[Match, Rule]], first: Rule | None = None, name: str = "custom"):
        self.layer_map, self.first, self.name = list(layer_map), first, name

    def rule(self, site: Site) -> Rule | None:
        if self.first is not None and site.reads_pixels:
            return self.first
        for match, rule in self.layer_map:
            if (isinstance(site.layer, match) if isinstance(match, (type, tuple)) else match(site)):
                return rule
        return None

    def __repr__(self) -> str:
        return f"Composite({self.name!r})"


def gamma_well_posed(site: Site) -> bool:
    """γ's denominators keep their sign: the input is >= 0 and a ReLU clips the output. Where
    they mix signs they can come near zero (γ on every convolution of MobileNetV2 gave
    relevance 1e30 for scores near 1)."""
    return site.nonnegative_input and site.clips


def presets(epsilon: float, gamma: float) -> dict[str, Composite]:
    """The composites ``LRP(rule=name)`` offers."""
    eps, gam = Epsilon(epsilon), Gamma(gamma, epsilon)
    separable = (SEPARABLE, eps)  # two kernels: only the gradient-form rules apply
    return {
        "zero": Composite([(KERNEL_LAYERS + SEPARABLE, Zero())], name="zero"),
        "epsilon": Composite([(KERNEL_LAYERS + SEPARABLE, eps)], name="epsilon"),
        "gamma": Composite([separable, (KERNEL_LAYERS, gam)], name="gamma"),
        "zplus": Composite([separable, (KERNEL_LAYERS, ZPlus(epsilon))], name="zplus"),
        "alpha_beta": Composite([separable, (KERNEL_LAYERS, AlphaBeta(2.0, 1.0, epsilon))], name="alpha_beta"),
        # z^B at the pixels, ε for dense layers, γ for convolutions where it is well posed, else ε.
        "composite": Composite([separable, (DENSE, eps), (lambda site: isinstance(site.layer, CONVOLUTIONS) and gamma_well_posed(site), gam), (KERNEL_LAYERS, eps)], first=ZBox(epsilon), name="composite"),
        # zennit's EpsilonGammaBox: z^B first, γ for every convolution, ε for dense layers.
        "epsilon_gamma_box": Composite([separable, (DENSE, eps), (CONVOLUTIONS, gam)], first=ZBox(epsilon), name="epsilon_gamma_box"),
        # zennit's EpsilonPlus and EpsilonAlpha2Beta1: ε for dense layers, z⁺ or α2β1 for convolutions.
        "epsilon_plus": Composite([separable, (DENSE, eps), (CONVOLUTIONS, ZPlus(epsilon))], name="epsilon_plus"),
        "epsilon_alpha2_beta1": Composite([separable, (DENSE, eps), (CONVOLUTIONS, AlphaBeta(2.0, 1.0, epsilon))], name="epsilon_alpha2_beta1"),
    }


def rule_named(name: str, epsilon: float, gamma: float) -> Rule:
    """A single rule by name, for ``layer_rules``."""
    rules = {"zero": Zero(), "epsilon": Epsilon(epsilon), "gamma": Gamma(gamma, epsilon), "zplus": ZPlus(epsilon), "alpha_beta": AlphaBeta(2.0, 1.0, epsilon), "zbox": ZBox(epsilon), "pass": Pass()}
    if name not in rules:
        raise ValueError(f"layer_rules: expected a rule object or one of {sorted(rules)}, got {name!r}.")
    return rules[name]
