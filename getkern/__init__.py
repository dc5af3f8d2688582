"""getkern: fast one-step image generation with Generative Equilibrium Transformers."""
from getkern.models import GET, ViT

__version__ = "0.1.0"
__all__ = ["GET", "ViT", "__version__"]
