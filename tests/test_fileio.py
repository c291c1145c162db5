"""Atomic writes and unique names: a failed write never damages what was there, two writers never share a name."""

from __future__ import annotations

import threading

import pytest

from studio import fileio


def test_failed_file_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "run.json"
    fileio.write_text(target, "good")
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "good" and [p.name for p in tmp_path.iterdir()] == ["run.json"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    with fileio.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("v1")
    with pytest.raises(RuntimeError):
        with fileio.atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("v2")
            raise RuntimeError("crash mid-save")
    assert (target / "a.txt").read_text() == "v1"
    with fileio.atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("v3")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary or old folders left behind


def test_unique_names_under_contention(tmp_path):
    names, lock = [], threading.Lock()

    def reserve():
        for _ in range(20):
            path = fileio.reserve_unique(tmp_path, "42", ".png")
            with lock:
                names.append(path)

    threads = [threading.Thread(target=reserve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 80 == len(list(tmp_path.glob("*.png")))
