"""Explainers: each turns (model, inputs, targets) into an :class:`~tf_explain_kit.Explanation`."""

from .base import Explainer
from .cam import GradCAM, GradCAMPlusPlus
from .deeplift import DeepLift
from .gradients import GradientInput, Saliency
from .integrated_gradients import IntegratedGradients
from .lime import LimeImage, LimeTabular, LimeText
from .lrp import LRP
from .noise import SmoothGrad, VarGrad
from .occlusion import Occlusion
from .shap import DeepShap, GradientShap, KernelShap, PartitionShap

__all__ = ["DeepLift", "DeepShap", "Explainer", "GradCAM", "GradCAMPlusPlus", "GradientInput", "GradientShap", "IntegratedGradients", "KernelShap", "LimeImage", "LimeTabular", "LimeText", "LRP", "Occlusion", "PartitionShap", "Saliency", "SmoothGrad", "VarGrad"]
