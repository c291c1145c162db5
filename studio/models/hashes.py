"""A1111-compatible short hashes: `Model hash` (sha256 of the file, 10 hex) and `Lora hashes` (sha256 of the tensor
data after the safetensors header, 12 hex, as A1111's "addnet" hash). Results are cached by path, size and mtime."""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from pathlib import Path

from studio import fileio

_lock = threading.Lock()
_CHUNK = 1 << 20


def _sha256(path: Path, skip_safetensors_header: bool) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if skip_safetensors_header:
            header_len = struct.unpack("<Q", f.read(8))[0]
            f.seek(8 + header_len)
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class HashCache:
    def __init__(self, cache_file: Path):
        self.cache_file = cache_file
        self._entries: dict | None = None

    def _load(self) -> dict:
        if self._entries is None:
            try:
                self._entries = json.loads(self.cache_file.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                self._entries = {}
        return self._entries

    def sha256(self, path: Path, *, tensor_data_only: bool = False) -> str:
        path = Path(path).resolve()
        stat = path.stat()
        key = f"{path}|{'data' if tensor_data_only else 'file'}"
        with _lock:
            entry = self._load().get(key)
            if entry and entry["size"] == stat.st_size and entry["mtime"] == stat.st_mtime:
                return entry["sha256"]
        digest = _sha256(path, tensor_data_only)
        with _lock:
            entries = self._load()
            entries[key] = {"size": stat.st_size, "mtime": stat.st_mtime, "sha256": digest}
            fileio.write_json(self.cache_file, entries)
        return digest

    def forget(self, paths: list[Path]) -> int:
        """Drop the entries of these files (and of files under these folders); returns how many went. Call it with
        paths as they were before the files were removed (the entries are keyed by resolved path)."""
        gone = [str(Path(p).resolve()) for p in paths]
        with _lock:
            entries = self._load()
            kept = {k: v for k, v in entries.items()
                    if not any(k.split("|")[0] == g or k.startswith(g.rstrip("/") + "/") for g in gone)}
            dropped = len(entries) - len(kept)
            if dropped:
                self._entries = kept
                fileio.write_json(self.cache_file, kept)
        return dropped

    def model_hash(self, path: Path) -> str:
        return self.sha256(path)[:10]

    def lora_hash(self, path: Path) -> str:
        return self.sha256(path, tensor_data_only=Path(path).suffix == ".safetensors")[:12]
