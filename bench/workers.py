"""Benchmark: what sending a run to a remote worker on Ray costs against training it in a child process here.

    .venv/bin/python bench/workers.py [--steps 300]

In one command, on a Ray cluster it starts on 127.0.0.1 (two CPUs, no GPU: `ray start --head --block`, stopped by
its pid) and a workspace of its own: the pocket concept demo's dataset (docs/pocket.md), then the same `python -m
studio train --preset pocket` run three times, each timed as one command from start to exit: here (the local
child), through `--workers` (the worker receives the base and the dataset), and through `--workers` again (the
worker keeps both from the first time). Prints the wall times and their ratio to the local run, the bytes each
remote run sent and copied back (status.json), and whether the LoRA each exported has the local one's tensors.
Every process runs on one thread (OMP_NUM_THREADS=1 unless set).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Every process of the benchmark (the commands, their children, the Ray workers) on one thread each: on a small
# shared machine two threads per process fight over the cores and the figures say more about that than the path.
ENV = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))


def _studio(root: Path, *args: str, workers: str = "") -> float:
    """Run `python -m studio ...` on `root` to its end; its wall seconds."""
    argv = [sys.executable, "-m", "studio", "--root", str(root), "--models-dir", str(root / "models"), "--offline"]
    argv += ["--workers", workers] if workers else []
    started = time.perf_counter()
    done = subprocess.run(argv + list(args), cwd=HERE, capture_output=True, text=True, env=ENV)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - started


def _tensors(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k).numpy().tobytes() for k in f.keys()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-workers-", dir="/tmp") as tmp:
        root = Path(tmp)
        (root / "models" / "builtin").mkdir(parents=True)
        (root / "models" / "builtin" / "pocket").symlink_to(HERE / "models" / "builtin" / "pocket")
        _studio(root, "pocket", "concept", "zq")
        port, client = _port(), _port()
        env = dict(ENV, STUDIO_WORKER_CACHE=str(root / "worker-cache"))
        head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--node-ip-address",
                                 "127.0.0.1", "--port", str(port), "--ray-client-server-port", str(client),
                                 "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false", "--temp-dir",
                                 str(root / "ray"), "--block"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", client), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.5)
            workers = f"ray://127.0.0.1:{client}"
            train = ["train", "--preset", "pocket", "--dataset", "zq", "--trigger", "zq", "--steps", str(args.steps)]
            timed = {"here": _studio(root, *train, "--out", "here"),
                     "ray": _studio(root, *train, "--out", "ray", workers=workers),
                     "ray, kept": _studio(root, *train, "--out", "ray2", workers=workers)}
        finally:
            head.terminate()
            head.wait(timeout=60)
        local = _tensors(root / "models" / "lora" / "here.safetensors")
        print(f"{args.steps}-step pocket run (train --preset pocket), one command each, {os.cpu_count()} CPUs:")
        for (label, seconds), out in zip(timed.items(), ("here", "ray", "ray2")):
            status = json.loads((root / "workspace" / "runs" / out / "status.json").read_text())
            same = _tensors(root / "models" / "lora" / f"{out}.safetensors") == local
            moved = (f", sent {status['bytes_sent'] / 1e6:.2f} MB, copied back {status['bytes_fetched'] / 1e6:.2f} MB"
                     if "bytes_sent" in status else "")
            print(f"  {label:10} {seconds:7.1f} s  x{seconds / timed['here']:.2f}{moved}, LoRA tensors as here: {same}")


if __name__ == "__main__":
    main()
