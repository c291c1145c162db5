"""The model store: model ids -> files on disk, builtin models, families, hashes and weight formats."""

from studio.models.refs import Family, ModelRef
from studio.models.store import ModelStore

__all__ = ["Family", "ModelRef", "ModelStore"]
