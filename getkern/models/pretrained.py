"""save_pretrained / from_pretrained / push_to_hub in huggingface_hub's PyTorchModelHubMixin layout.

A folder holds ``config.json`` (the constructor's keyword arguments, flat, plus ``_class_name``,
``_getkern_version`` and ``_weights_sha256``), ``model.safetensors`` and a ``README.md`` model card, as
the mixin writes them: a PyTorchModelHubMixin class with GET's arguments loads getkern's folders and
getkern loads its. huggingface_hub is optional: without it local folders save and load; with it
``from_pretrained`` also takes Hub ids and ``push_to_hub`` uploads. See getkern/checkpoint.py.
"""
from __future__ import annotations

from pathlib import Path


class PretrainedMixin:
    """Adds the Hub folder format to a model that keeps its architecture kwargs in ``self.config``."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, device=None, torch_dtype=None,
                        verify: bool = True, revision: str | None = None, cache_dir=None,
                        token: str | bool | None = None, local_files_only: bool = False,
                        force_download: bool = False, **overrides):
        """Build from ``config.json`` and load ``model.safetensors`` of a local folder or, with
        huggingface_hub installed, a Hub model id ("owner/name"); returns the model in eval mode.

        Args:
            pretrained_model_name_or_path: a folder written by :meth:`save_pretrained` (also the first,
                nested getkern format, and folders of a PyTorchModelHubMixin class), or a Hub id.
            device: where to put the model (default: CPU).
            torch_dtype: a floating torch.dtype or its name ("bfloat16"), "auto" (the dtype the weights
                were saved in) or None (default: float32).
            verify: check model.safetensors against the SHA-256 in config.json (default True; folders
                without one load unchecked).
            revision, cache_dir, token, local_files_only, force_download: passed to
                huggingface_hub.snapshot_download for Hub ids.
            overrides: constructor arguments replacing the config's, e.g. ``backend="torch"``.

        The config is checked against the weights' shapes (read from the safetensors header) before the
        model is built; a mismatch, an invalid field or a digest mismatch raise CheckpointError.
        """
        from getkern.checkpoint import load_pretrained, resolve_pretrained_folder
        folder = resolve_pretrained_folder(pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir,
                                           token=token, local_files_only=local_files_only,
                                           force_download=force_download)
        return load_pretrained(cls, folder, device=device, torch_dtype=torch_dtype, verify=verify, **overrides)

    def save_pretrained(self, save_directory, *, push_to_hub: bool = False, repo_id: str | None = None,
                        model_card: bool = True, **push_to_hub_kwargs) -> str | None:
        """Write ``model.safetensors``, ``config.json`` (each atomically) and, unless one exists or
        ``model_card=False``, a ``README.md`` model card into ``save_directory``. ``push_to_hub=True``
        then uploads the folder's content to ``repo_id`` (default: the folder's name) and returns the
        commit URL (needs huggingface_hub)."""
        from getkern.checkpoint import save_pretrained
        save_pretrained(self, save_directory, model_card_file=model_card)
        if push_to_hub:
            return self.push_to_hub(repo_id or Path(save_directory).name, **push_to_hub_kwargs)
        return None

    def push_to_hub(self, repo_id: str, *, commit_message: str = "Upload model with getkern",
                    private: bool | None = None, token: str | None = None, branch: str | None = None,
                    create_pr: bool | None = None) -> str:
        """Upload this model (save_pretrained layout) to Hub repository ``repo_id``, created if needed;
        returns the commit URL. Needs the optional huggingface_hub package and a write token."""
        from getkern.checkpoint import push_to_hub
        return push_to_hub(self, repo_id, commit_message=commit_message, private=private, token=token,
                           branch=branch, create_pr=create_pr)
