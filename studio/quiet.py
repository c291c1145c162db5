"""Third-party chatter off for the command line and the server: a verb prints what it did, not a screen of other
libraries' deprecation notices, registry warnings and progress bars. Errors and the studio's own notes still show.
`STUDIO_VERBOSE=1` leaves everything on (for a bug report)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import warnings

# (category, message regex) of warnings the studio cannot act on: they are about the libraries' own imports.
_WARNINGS = (
    (UserWarning, r"pkg_resources is deprecated"),  # face_recognition_models
    (FutureWarning, r"`torch\.jit\.(script|trace)` is deprecated"),  # timm / controlnet_aux
    (FutureWarning, r"Importing from timm\.models\.\w+ is deprecated"),
    (UserWarning, r"Overwriting \w+ in registry"),  # timm registries re-registered by controlnet_aux
    (UserWarning, r".*register_model"),
    (DeprecationWarning, r".*"),
)
# Named loggers whose warnings are about the libraries themselves (torchao registering its enums with torch's
# pytree, diffusers probing torchao's tensor classes, transformers' tokenizer length notes).
_LOGGERS = ("torch.utils._pytree", "torch._dynamo", "diffusers", "transformers", "torchao", "absl", "timm")


def quiet_third_party() -> None:
    if os.environ.get("STUDIO_VERBOSE"):
        return
    for key, value in (("TRANSFORMERS_VERBOSITY", "error"), ("DIFFUSERS_VERBOSITY", "error"),
                       ("GLOG_minloglevel", "2"), ("TF_CPP_MIN_LOG_LEVEL", "3"),  # mediapipe's C++ logs
                       ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TQDM_DISABLE", "1")):
        os.environ.setdefault(key, value)
    for category, message in _WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


_NATIVE_LOCK = threading.Lock()


@contextlib.contextmanager
def native_stderr_quiet():
    """Silence what native code writes to the process's stderr (MediaPipe's absl and TFLite lines, which no
    Python setting reaches) for the duration of a call. Python's own errors are raised, not printed, meanwhile."""
    if os.environ.get("STUDIO_VERBOSE"):
        yield
        return
    with _NATIVE_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
