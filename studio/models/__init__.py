"""The model store: model ids -> files on disk, builtin models, families, hashes and weight formats."""

from studio.models.refs import ModelRef
from studio.models.store import ModelStore

__all__ = ["ModelRef", "ModelStore"]
