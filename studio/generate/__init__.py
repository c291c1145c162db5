"""Generation: typed requests, samplers by A1111 name, txt2img/img2img/ControlNet runs, PNG parameters."""

from studio.generate.request import ControlUnit, GeneratedImage, GenerationRequest, GenerationResult, LoraChoice
from studio.generate.run import generate

__all__ = ["ControlUnit", "GeneratedImage", "GenerationRequest", "GenerationResult", "LoraChoice", "generate"]
