"""save_pretrained / from_pretrained for getkern's own format (config.json + model.safetensors)."""
from __future__ import annotations


class PretrainedMixin:
    """Adds getkern's directory checkpoint format to a model that keeps its kwargs in ``self.config``."""

    @classmethod
    def from_pretrained(cls, directory, **overrides):
        """Build from ``directory/config.json`` and load ``directory/model.safetensors``."""
        from getkern.checkpoint import load_pretrained
        return load_pretrained(cls, directory, **overrides)

    def save_pretrained(self, directory) -> None:
        """Write ``config.json`` and ``model.safetensors`` (each atomically) into ``directory``."""
        from getkern.checkpoint import save_pretrained
        save_pretrained(self, directory)
