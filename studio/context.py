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

    def for_web(self) -> "Studio":
        """Serve the web: from now on inputs name only what the studio lists (server paths stay a CLI feature)."""
        self._change(server_paths=False)
        return self

    def _change(self, **changes) -> None:
        self.settings = self.settings.with_(**changes)
        self.store.settings = self.cache.settings = self.settings  # one settings object, seen by every part

    def set_when_busy(self, when_busy: str) -> None:
        """While a job holds the GPU, the studio's own GPU work "wait"s for it or runs on the "cpu"."""
        self._change(when_busy=when_busy)

    def set_default_model(self, model_id: str) -> None:
        """Make `model_id` the base every tab uses when the user names none (checked before it is taken)."""
        self.store.resolve(model_id)
        self._change(default_model=model_id)
