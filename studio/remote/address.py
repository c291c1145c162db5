"""Where remote workers are: a Ray cluster's address, checked before anything is sent. The photos of every dataset
trained remotely cross the network, so an address beyond the local network (not loopback, private or link-local)
is refused while Ray's TLS is off, unless the user says it is fine (--insecure-workers)."""

from __future__ import annotations

import ipaddress
import os
import re
import socket

TLS_ENV = "RAY_USE_TLS"  # Ray's own switch: its gRPC channels (Ray Client's included) use TLS when set to 1


def tls_on() -> bool:
    return os.environ.get(TLS_ENV, "0").strip().lower() in ("1", "true")


def _addresses(host: str) -> list:
    """Every IP address `host` stands for; a name that does not resolve is a ValueError naming it."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as e:
        raise ValueError(f"`workers` host {host!r} does not resolve: {e}") from None
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def is_local(host: str) -> bool:
    """Whether every address of `host` is this machine's or the local network's (loopback, private, link-local)."""
    return all(a.is_loopback or a.is_private or a.is_link_local for a in _addresses(host))


def check_workers(address: str, insecure: bool = False) -> str:
    """`address` (ray://HOST:PORT for Ray Client, or HOST:PORT of a cluster's head) once it may be used; a
    ValueError naming it otherwise: not an address, or beyond the local network without TLS and without `insecure`."""
    address = address.strip()
    found = re.fullmatch(r"(ray://)?(\[[0-9a-fA-F:.]+\]|[^:/\s]+):(\d{1,5})", address)
    if not found or not 0 < int(found.group(3)) < 65536:
        raise ValueError(f"`workers` must be ray://HOST:PORT (Ray Client) or HOST:PORT (a Ray cluster's head) but is "
                         f"{address!r}")
    host = found.group(2)
    if not insecure and not tls_on() and not is_local(host):
        raise ValueError(f"`workers` {address!r} is beyond the local network and Ray's TLS is off ({TLS_ENV}): the "
                         f"photos of every dataset trained there would cross it unencrypted. Turn on Ray's TLS on both "
                         f"ends (README, \"Remote workers\"), or pass --insecure-workers if that is fine")
    return address


def where_jobs_run(settings) -> str:
    """Where the queue's runs, sweeps and mining jobs run, in one line for the Train and Mine tabs and the commands."""
    if settings.workers:
        return (f"Jobs run on the Ray workers at {settings.workers} (runs, each run of a sweep, mining jobs; the "
                f"datasets' photos cross the network to them), not on this machine.")
    return f"Jobs run on this machine (device {settings.device})."
