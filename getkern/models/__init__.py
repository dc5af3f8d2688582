from getkern.models.get import GET
from getkern.models.vit import ViT

__all__ = ["GET", "ViT"]
