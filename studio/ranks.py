"""Several processes of one job: `python -m studio.ranks --processes N [--cards 0,1] --module MODULE -- FOLDER ARGS`
starts N copies of the job's child (`python -m MODULE FOLDER ARGS`) with torch.distributed's environment (RANK,
WORLD_SIZE, LOCAL_RANK, a free port on 127.0.0.1), process k on the k-th card of `--cards` (or on the CPU, gloo),
waits for every one of them, and only then writes how the job ended (what the first process left in ending.json).
So a job said to be over has no process left, and one process failing never leaves the others waiting in an
all-reduce: they get GRACE_S to end on their own, then SIGTERM, then SIGKILL.

The studio starts them itself rather than through `accelerate launch`, which reads the user's
~/.cache/huggingface/accelerate/default_config.yaml (DeepSpeed or FSDP set up for another project) and their
shell's ACCELERATE_* variables: the processes get neither, so accelerate's choices are the studio's (DDP; NCCL on
GPUs, gloo on the CPU).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from studio.job_child import LAUNCHER_PID
from studio.joblog import ENDING_FILE, JobLog, read_ending

GRACE_S = 30.0  # how long the others may take to end after one process failed, before they are stopped


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for the processes' rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environments(processes: int, cards: list[str], base: dict[str, str], port: int) -> list[dict[str, str]]:
    """Each process's environment: `base` without the user's ACCELERATE_* settings, with torch.distributed's
    variables, the cards it may see (process k uses the k-th: accelerate takes LOCAL_RANK's), and on the CPU the
    cores shared out when OMP_NUM_THREADS does not say."""
    env = {k: v for k, v in base.items() if not k.startswith("ACCELERATE_")}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(processes),
               LOCAL_WORLD_SIZE=str(processes), PYTHONUNBUFFERED="1")
    if cards:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(cards)
    elif not env.get("OMP_NUM_THREADS"):
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
    return [dict(env, RANK=str(k), LOCAL_RANK=str(k)) for k in range(processes)]


def _die_with_parent() -> None:
    """In each process before it runs: SIGTERM when the launcher dies (killed outright), so no process outlives the
    job's claim on its devices (Linux; elsewhere nothing)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def wait_all(procs: list[subprocess.Popen], grace_s: float = GRACE_S) -> list[int]:
    """Every process's exit code, once all have ended; after the first failure the others get `grace_s` to end,
    then SIGTERM, then `grace_s` more before SIGKILL."""
    failed_at, termed = None, False
    while True:
        codes = [p.poll() for p in procs]
        if None not in codes:
            return codes
        if failed_at is None and any(c not in (None, 0) for c in codes):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > grace_s:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL if termed else signal.SIGTERM)
            termed, failed_at = True, time.monotonic()
        time.sleep(0.1)


def verdict(codes: list[int], ending: dict | None) -> tuple[dict, int]:
    """The job's last status and the launcher's exit code from the processes' codes and the first one's ending."""
    first = codes[0]
    odd = [(k, c) for k, c in enumerate(codes) if c not in (0, first)]
    if ending is not None and not odd:
        return ending, first
    k, code = odd[0] if odd else (0, first)
    said = f"; the first process said: {ending['message']}" if ending else ""
    return ({"state": "failed", "message": f"process {k + 1} of {len(codes)} ended with code {code} without a word "
                                            f"(see log.txt){said}", "exit_code": 1}, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.ranks")
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--cards", default="", help="the GPUs' numbers, one per process (none: on the CPU)")
    parser.add_argument("--module", required=True, help="the job's child module")
    parser.add_argument("child", nargs=argparse.REMAINDER, help="-- FOLDER ARGS: the child's arguments")
    args = parser.parse_args(argv)
    child = args.child[1:] if args.child[:1] == ["--"] else args.child
    folder, cards = Path(child[0]), [c for c in args.cards.split(",") if c]
    if cards and len(cards) != args.processes:
        raise SystemExit(f"`--cards` {args.cards!r} names {len(cards)} cards for {args.processes} processes")
    dropped = sorted(k for k in os.environ if k.startswith("ACCELERATE_"))
    if dropped:
        print(f"not passed to the processes (the studio's own settings apply): {', '.join(dropped)}", flush=True)
    (folder / ENDING_FILE).unlink(missing_ok=True)
    base = dict(os.environ, **{LAUNCHER_PID: str(os.getpid())})
    procs = [subprocess.Popen([sys.executable, "-m", args.module, *child], env=env, preexec_fn=_die_with_parent)
             for env in environments(args.processes, cards, base, free_port())]
    signal.signal(signal.SIGTERM, lambda signum, frame: [p.send_signal(signal.SIGTERM) for p in procs
                                                         if p.poll() is None])
    codes = wait_all(procs)
    status, code = verdict(codes, read_ending(folder))
    JobLog(folder, "events.jsonl").status(**{**status, "ended": time.time()})
    (folder / ENDING_FILE).unlink(missing_ok=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
