"""Benchmark: what sending a job to remote workers on Ray costs against running it in a child process here, for a
run, a sweep and a mining job, and what crosses the network for each.

    .venv/bin/python bench/workers.py [--jobs run,sweep,mining] [--steps 300] [--sweep-steps 30] [--photos 12]
                                      [--worker-cpus 2]

In one command, on a Ray cluster it starts on 127.0.0.1 (--worker-cpus CPUs, no GPU: `ray start --head --block`,
stopped by its pid) and a workspace of its own, each job is one `python -m studio ...` command timed from start to exit, here
(the local child) and through `--workers`:
- run: the same `train --preset pocket` run of --steps steps on the pocket concept demo's dataset (docs/pocket.md)
  three times: here, through the workers (the worker receives the base and the dataset), and through them again
  (the worker keeps both from the first time);
- sweep: `sweep --preset pocket --grid lr=2e-4,4e-4` of --sweep-steps steps a cell, on the same dataset: here its
  two runs go one after the other on the CPU, through the workers each is a remote run of its own, as many at once
  as the cluster has CPUs (--worker-cpus 1: one after the other, as here; the worker cache is warm when the runs
  were timed before);
- mining: `mine` over --photos real photos (crops of skimage's astronaut and matplotlib's Grace Hopper, 512 px).
Prints the wall times and their ratio to here, the bytes each sent and copied back (status.json; a sweep's summed
over its runs), and whether the result is the same: the LoRA's tensors, the sweep's kept weights and scores, the
mining job's members and distances. Every process runs on one thread (OMP_NUM_THREADS=1 unless set).
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
sys.path.insert(0, str(HERE / "tests"))  # the photos the face tests use


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


def _moved(folders: list[Path]) -> tuple[int, int]:
    """Bytes sent to the workers and copied back, summed over the status.json of `folders`."""
    statuses = [json.loads((f / "status.json").read_text()) for f in folders]
    return sum(s.get("bytes_sent", 0) for s in statuses), sum(s.get("bytes_fetched", 0) for s in statuses)


def _sweep_result(root: Path, name: str) -> tuple:
    folder = root / "workspace" / "sweeps" / name
    report = json.loads((folder / "report.json").read_text())
    weights = [_tensors(p) for p in sorted(folder.glob("runs/*/steps/*.safetensors"))]
    return [(c["id"], c["state"], c["loss"], c["scores"]) for c in report["cells"]], weights


def _mining_result(root: Path, name: str) -> list:
    report = json.loads((root / "workspace" / "mining" / name / "report.json").read_text())
    return [(m["file"], m["distance"]) for m in report["members"]] + [report["counts"]["rejected"]]


def _photos(folder: Path, count: int) -> None:
    from fixtures_faces import astronaut_variants, hopper_variants

    folder.mkdir(parents=True)
    for i, im in enumerate(astronaut_variants(count - count // 3) + hopper_variants(count // 3)):
        im.save(folder / f"{i:02d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", default="run,sweep,mining", help="which kinds to time, of run, sweep, mining")
    parser.add_argument("--steps", type=int, default=300, help="the run's steps")
    parser.add_argument("--sweep-steps", type=int, default=30, help="each sweep cell's steps")
    parser.add_argument("--photos", type=int, default=12, help="the pictures the mining job looks at")
    parser.add_argument("--worker-cpus", type=int, default=2, help="the Ray cluster's CPUs: jobs it runs at once")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.jobs.split(",") if k.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-workers-", dir="/tmp") as tmp:
        root = Path(tmp)
        (root / "models" / "builtin").mkdir(parents=True)
        (root / "models" / "builtin" / "pocket").symlink_to(HERE / "models" / "builtin" / "pocket")
        _studio(root, "pocket", "concept", "zq")
        _photos(root / "photos", args.photos)
        port, client = _port(), _port()
        env = dict(ENV, STUDIO_WORKER_CACHE=str(root / "worker-cache"))
        head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--node-ip-address",
                                 "127.0.0.1", "--port", str(port), "--ray-client-server-port", str(client),
                                 "--num-cpus", str(args.worker_cpus), "--num-gpus", "0", "--include-dashboard", "false", "--temp-dir",
                                 str(root / "ray"), "--block"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        lines = []
        try:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", client), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.5)
            workers = f"ray://127.0.0.1:{client}"
            runs = root / "workspace" / "runs"
            if "run" in kinds:
                train = ["train", "--preset", "pocket", "--dataset", "zq", "--trigger", "zq", "--steps",
                         str(args.steps)]
                timed = {"here": _studio(root, *train, "--out", "here"),
                         "ray": _studio(root, *train, "--out", "ray", workers=workers),
                         "ray, kept": _studio(root, *train, "--out", "ray2", workers=workers)}
                local = _tensors(root / "models" / "lora" / "here.safetensors")
                lines.append(f"{args.steps}-step pocket run (train --preset pocket):")
                for (label, seconds), out in zip(timed.items(), ("here", "ray", "ray2")):
                    sent, fetched = _moved([runs / out])
                    same = _tensors(root / "models" / "lora" / f"{out}.safetensors") == local
                    moved = f", sent {sent / 1e6:.2f} MB, copied back {fetched / 1e6:.2f} MB" if out != "here" else ""
                    lines.append(f"  {label:10} {seconds:7.1f} s  x{seconds / timed['here']:.2f}{moved}, "
                                 f"LoRA tensors as here: {same}")
            if "sweep" in kinds:
                sweep = ["sweep", "--preset", "pocket", "--dataset", "zq", "--trigger", "zq", "--grid",
                         "lr=2e-4,4e-4", "--steps", str(args.sweep_steps)]
                here = _studio(root, *sweep, "--name", "here")
                there = _studio(root, *sweep, "--name", "ray", workers=workers)
                sent, fetched = _moved(sorted((root / "workspace" / "sweeps" / "ray" / "runs").iterdir()))
                same = _sweep_result(root, "here") == _sweep_result(root, "ray")
                lines.append(f"2-cell pocket sweep of {args.sweep_steps} steps a cell (sweep --preset pocket):")
                lines.append(f"  here       {here:7.1f} s  x1.00")
                lines.append(f"  ray        {there:7.1f} s  x{there / here:.2f}, sent {sent / 1e6:.2f} MB, copied back "
                             f"{fetched / 1e6:.2f} MB, kept weights and scores as here: {same}")
            if "mining" in kinds:
                mine = ["mine", "--candidates", str(root / "photos")]
                here = _studio(root, *mine, "--name", "here")
                there = _studio(root, *mine, "--name", "ray", workers=workers)
                sent, fetched = _moved([root / "workspace" / "mining" / "ray"])
                same = _mining_result(root, "here") == _mining_result(root, "ray")
                lines.append(f"mining {args.photos} photos (mine --candidates):")
                lines.append(f"  here       {here:7.1f} s  x1.00")
                lines.append(f"  ray        {there:7.1f} s  x{there / here:.2f}, sent {sent / 1e6:.2f} MB, copied back "
                             f"{fetched / 1e6:.2f} MB, members and distances as here: {same}")
        finally:
            head.terminate()
            head.wait(timeout=60)
        print(f"one command each, {os.cpu_count()} CPUs, a Ray cluster of {args.worker_cpus} CPU workers:")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
