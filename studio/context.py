"""The Studio: one settings object, one model store and one model cache, shared by the UI, the CLI and the API."""

from __future__ import annotations

from dataclasses import dataclass

from studio.cache import ModelCache
from studio.models import ModelStore
from studio.settings import Settings


@dataclass
class Studio:
    settings: Settings
    store: ModelStore
    cache: ModelCache

    @classmethod
    def open(cls, settings: Settings | None = None) -> "Studio":
        settings = settings or Settings()
        store = ModelStore(settings)
        return cls(settings, store, ModelCache(store, settings))

    def set_default_model(self, model_id: str) -> None:
        """Make `model_id` the base every tab uses when the user names none (checked before it is taken)."""
        self.store.resolve(model_id)
        self.settings = self.settings.with_(default_model=model_id)
        self.store.settings = self.cache.settings = self.settings  # one settings object, seen by every part
