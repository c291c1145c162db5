"""Settings: where things live on disk, which device and dtype to use, and how much the model cache may hold."""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from studio.names import check_name

# Where a login comes from, for the errors that ask for one.
LOGIN_HINT = ("--auth-file FILE (accounts added with `python -m studio users add NAME --auth-file FILE`, or one line "
              "user:password) or $STUDIO_AUTH, or --no-auth on a network you trust")
WHEN_BUSY = ("wait", "cpu")
# Whether a base model that does not fit the GPU generates offloaded to the CPU: auto (decided by its size against
# the GPU's free memory, and said), none, model (a model at a time), sequential (layer by layer): see
# studio.models.placement
OFFLOADS = ("auto", "none", "model", "sequential")
AUTH_ENV = "STUDIO_AUTH"  # user:password, for those who start the studio from a script or a container


@dataclass(frozen=True)
class Settings:
    # Project root: models/ and workspace/ live below it unless set explicitly.
    root: Path = field(default_factory=lambda: Path(os.environ.get("STUDIO_ROOT", Path.cwd())))
    models_dir: Path | None = None  # default: <root>/models
    # This user's datasets, runs, outputs...: <root>/workspace for the studio's owner (user ""), else
    # <studio_workspace>/users/<user> (see for_user)
    workspace_dir: Path | None = None
    # The studio's own workspace, one for all its users: the queue and device claims, and users/ (default: the
    # owner's workspace_dir)
    studio_workspace: Path | None = None
    # Whose things this is: "" the studio's owner (a single-user studio, or the command line without --user: the
    # workspace and models/ as they have always been), else an account's name (studio.accounts)
    user: str = ""
    # An account's admin role (the owner always has it): removes users, sees every job in the queue
    admin: bool = False
    # "auto" picks cuda when torch sees a GPU, else cpu; decided when first asked, never at import.
    device: str = "auto"
    # "auto" means float32 on cpu (cpu kernels for half precision are slow or missing) and, on cuda, each family's half
    # precision for its base models (fp16 for SD, bf16 for the flow transformers where the GPU has it; see
    # studio.models.placement), float16 for the helper models.
    dtype: str = "auto"
    # Base models that do not fit the GPU: OFFLOADS
    offload: str = "auto"
    # Bytes of weights the model cache may keep loaded before it evicts the least recently used model;
    # 0 means 3/4 of the GPU's memory on CUDA, half the RAM on the CPU (decided when first asked).
    cache_budget_bytes: int = 0
    # While a job (a run, a sweep, mining) holds the device, the studio's own GPU work (Generate, Evaluate, captions,
    # upscaling...) "wait"s for it in the queue, or runs on the "cpu" (slower, but now); either way it says which.
    when_busy: str = "wait"
    # Base model used when the user names none; "" lets the model store pick the best builtin.
    default_model: str = ""
    # Pickle checkpoints (.ckpt/.bin/.pt) can run code when loaded; refused unless the user opts in.
    allow_pickle: bool = False
    # Hub downloads; off means local files and builtin models only.
    allow_downloads: bool = True
    # Paths on this machine may name models, datasets and folders (the command line). The web studio turns this off:
    # there, only names the studio lists (and uploads) are taken, so no one can probe or read the server's files.
    server_paths: bool = True
    # Optional "user:password" for the web UI, one login for the studio's owner (a single-user studio); or `auth_file`.
    # One of them is required when `host` lets other machines in, unless `no_auth`.
    auth: str | None = None
    # Accounts (studio.accounts: name:scrypt-hash[:admin] lines): several people, each with a workspace of their own
    auth_file: Path | None = None
    # Serve beyond this machine with no login (asked for explicitly, for a trusted network): anyone who reaches the
    # port would otherwise use the GPU and see the workspace.
    no_auth: bool = False
    # Largest file one upload may be, in MB (a zip of a few hundred photos fits the default).
    max_upload_mb: int = 1024
    # Largest picture decoded, in pixels (after JPEG's draft scaling): about 500 MB of memory at most with the
    # conversions; bigger photos are refused with the reason, bombs before any decoding.
    max_image_pixels: int = 40_000_000
    host: str = "127.0.0.1"
    port: int = 7860
    # Web pages of other origins that may call the studio from a browser with the user's login (CORS), e.g.
    # "https://tools.example.org"; none by default: only the studio's own page may.
    allow_origins: tuple[str, ...] = ()
    # The web's copies (uploads, and the copies of what it showed, in gradio's cache and the studio's own) are
    # cleaned every few minutes: none kept longer than this, and past the size the oldest go first.
    web_copies_max_age_s: int = 3600
    web_copies_mb: int = 8192
    # Where they lie: gradio's upload and output cache (default $GRADIO_TEMP_DIR, else <tmp>/likeness-web, a folder
    # of the studio's own: launch() points gradio at it) and the studio's served copies (default <tmp>/likeness-served)
    gradio_dir: Path | None = None
    served_dir: Path | None = None
    # Remote workers: a Ray cluster's address (ray://HOST:PORT, or HOST:PORT of its head) that queued runs are sent
    # to instead of a child process here (studio.remote); "" trains here. The datasets' photos cross the network:
    # an address beyond the local network is refused without Ray's TLS unless `insecure_workers` says it is fine.
    workers: str = ""
    insecure_workers: bool = False

    def __post_init__(self) -> None:
        root = Path(self.root).resolve()
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "models_dir", Path(self.models_dir or root / "models").resolve())
        if self.user:
            check_name(self.user, "user")
            studio_workspace = Path(self.studio_workspace or root / "workspace").resolve()
            workspace = Path(self.workspace_dir or studio_workspace / "users" / self.user).resolve()
        else:
            workspace = Path(self.workspace_dir or root / "workspace").resolve()
            studio_workspace = Path(self.studio_workspace or workspace).resolve()
        object.__setattr__(self, "workspace_dir", workspace)
        object.__setattr__(self, "studio_workspace", studio_workspace)
        if self.auth_file is not None:
            object.__setattr__(self, "auth_file", Path(self.auth_file).resolve())
        tmp = Path(tempfile.gettempdir())
        object.__setattr__(self, "gradio_dir", Path(self.gradio_dir or os.environ.get("GRADIO_TEMP_DIR")
                                                    or tmp / "likeness-web").resolve())
        object.__setattr__(self, "served_dir", Path(self.served_dir or tmp / "likeness-served").resolve())
        if self.device not in ("auto", "cpu", "mps") and not self.device.startswith("cuda"):
            raise ValueError(f"`device` must be auto, cpu, mps or cuda[:N] but is {self.device!r}")
        if self.offload not in OFFLOADS:
            raise ValueError(f"`offload` must be one of {', '.join(OFFLOADS)} but is {self.offload!r}")
        if self.when_busy not in WHEN_BUSY:
            raise ValueError(f"`when_busy` must be one of {', '.join(WHEN_BUSY)} but is {self.when_busy!r}")
        if self.dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise ValueError(f"`dtype` must be auto, float32, float16 or bfloat16 but is {self.dtype!r}")
        if self.max_upload_mb < 1:
            raise ValueError(f"`max_upload_mb` must be at least 1 but is {self.max_upload_mb}")
        if self.max_image_pixels < 1_000_000:
            raise ValueError(f"`max_image_pixels` must be at least 1000000 but is {self.max_image_pixels}")
        if self.cache_budget_bytes < 0:
            raise ValueError(f"`cache_budget_bytes` must be positive (or 0 for automatic) but is {self.cache_budget_bytes}")
        if self.auth and self.auth_file:
            raise ValueError("one login (`auth`) and accounts (`auth_file`) were both given: choose one")
        if self.no_auth and (self.auth or self.auth_file):
            raise ValueError("--no-auth and a login (--auth-file, $STUDIO_AUTH or --auth) were both given: choose one")
        if not self.auth and not self.auth_file and not self.no_auth and not self.local_only:
            raise ValueError(f"--host {self.host} lets other machines in, so the studio needs a login: {LOGIN_HINT}")
        if self.web_copies_mb < self.max_upload_mb:
            raise ValueError(f"`web_copies_mb` must be at least `max_upload_mb` ({self.max_upload_mb}) but is "
                             f"{self.web_copies_mb}")
        if self.web_copies_max_age_s < 1:
            raise ValueError(f"`web_copies_max_age_s` must be at least 1 but is {self.web_copies_max_age_s}")
        origins = tuple(o.strip().rstrip("/") for o in self.allow_origins if o.strip())
        for origin in origins:
            if not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"an allowed origin must be scheme://host[:port] (e.g. https://tools.example.org) but "
                                 f"is {origin!r}")
        object.__setattr__(self, "allow_origins", origins)
        if self.workers:
            from studio.remote.address import check_workers

            object.__setattr__(self, "workers", check_workers(self.workers, self.insecure_workers))

    @property
    def local_only(self) -> bool:
        """Whether `host` takes connections from this machine only (a loopback address)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a name other than localhost may resolve to any address
            return False

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    def for_user(self, user: str, *, admin: bool = False) -> "Settings":
        """The same studio as `user` sees it: their workspace (workspace/users/<user>/; the owner's, "", is
        workspace/ itself) and their models (own_models_dir); the queue, the shared models and every other setting
        are the studio's."""
        workspace = self.studio_workspace / "users" / user if user else self.studio_workspace
        return replace(self, user=user, admin=admin or not user, workspace_dir=workspace)

    @property
    def several_users(self) -> bool:
        """Whether people log in with accounts of their own (each sees only their own things)."""
        return self.auth_file is not None

    @property
    def is_admin(self) -> bool:
        return self.admin or not self.user

    @property
    def users_dir(self) -> Path:
        """workspace/users/: one folder per account (the owner's things are workspace/ itself)."""
        return self.studio_workspace / "users"

    @property
    def own_models_dir(self) -> Path:
        """Where what this user trains goes (LoRAs, embeddings, fine-tuned bases): models/ itself for the owner (so
        shared with everyone), models/users/<user>/ for an account (theirs alone until they share it)."""
        return self.models_dir / "users" / self.user if self.user else self.models_dir

    @property
    def outputs_dir(self) -> Path:
        return self.workspace_dir / "outputs"

    @property
    def datasets_dir(self) -> Path:
        return self.workspace_dir / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.workspace_dir / "runs"

    def resolve_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def resolve_cache_budget(self) -> int:
        if self.cache_budget_bytes:
            return self.cache_budget_bytes
        device = self.resolve_device()
        if device.startswith("cuda"):
            import torch

            index = torch.device(device).index or 0
            return int(torch.cuda.get_device_properties(index).total_memory * 0.75)
        import psutil

        return int(psutil.virtual_memory().total * 0.5)

    def resolve_dtype(self, device: str | None = None):
        import torch

        device = device or self.resolve_device()
        if self.dtype == "auto":
            return torch.float16 if device.startswith("cuda") else torch.float32
        return getattr(torch, self.dtype)
