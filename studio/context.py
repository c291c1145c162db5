"""The Studio: one settings object, one model store and one model cache, shared by the UI, the CLI and the API; and
each user's view of it (as_user): their workspace and models, the same cache and queue."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from studio.cache import ModelCache
from studio.models import ModelStore
from studio.settings import Settings


@dataclass
class Studio:
    settings: Settings
    store: ModelStore
    cache: ModelCache
    root: "Studio | None" = None  # the studio a user's view was made from (None: this is the studio itself)
    _views: dict = field(default_factory=dict, repr=False)
    _views_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, settings: Settings | None = None) -> "Studio":
        settings = settings or Settings()
        store = ModelStore(settings)
        return cls(settings, store, ModelCache(store, settings))

    def as_user(self, user: str, *, admin: bool = False) -> "Studio":
        """The studio as `user` sees it ("" the owner): their workspace and their own models first (studio.settings
        for_user), the shared models, one cache and one queue for all. Made once per user (again after a change of
        the studio's settings)."""
        base = self.root or self
        with base._views_lock:
            key = (user, admin)
            if key not in base._views:
                settings = base.settings.for_user(user, admin=admin)
                store = ModelStore(settings)
                base._views[key] = Studio(settings, store, base.cache.for_store(store), root=base)
            return base._views[key]

    def page(self) -> "Studio":
        """What a page shows before anyone has logged in on a studio of several users: no one's things (an empty
        workspace), the shared models. Each session's lists come from its own user when the page loads."""
        base = self.root or self
        if not base.settings.several_users:
            return base
        settings = base.settings.with_(workspace_dir=base.settings.users_dir / ".no-one")
        store = ModelStore(settings)
        return Studio(settings, store, base.cache.for_store(store), root=base)

    def for_web(self) -> "Studio":
        """Serve the web: from now on inputs name only what the studio lists (server paths stay a CLI feature)."""
        self._change(server_paths=False)
        return self

    def _change(self, **changes) -> None:
        """Change a setting of the studio itself (from a user's view too): every view is made again from it."""
        base = self.root or self
        base.settings = base.settings.with_(**changes)
        base.store.settings = base.cache.settings = base.settings  # one settings object, seen by every part
        with base._views_lock:
            base._views.clear()
        if self is not base:
            self.settings = self.settings.with_(**changes)
            self.store.settings = self.cache.settings = self.settings

    def set_when_busy(self, when_busy: str) -> None:
        """While a job holds the GPU, the studio's own GPU work "wait"s for it or runs on the "cpu"."""
        self._admin_only("what the studio's GPU work does while a job holds the GPU")
        self._change(when_busy=when_busy)

    def set_default_model(self, model_id: str) -> None:
        """Make `model_id` the base every tab uses when the user names none (checked before it is taken, among
        the models everyone may use: never one user's own)."""
        self._admin_only("the studio's default base model")
        (self.root or self).store.resolve(model_id)
        self._change(default_model=model_id)

    def _admin_only(self, what: str) -> None:
        if not self.settings.is_admin:
            raise ValueError(f"{what} is the studio's, for every user: only an admin may change it")
