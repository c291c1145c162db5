"""Serving beyond this machine needs a login (issue 24): on a --host other than a loopback address, or with --share,
the studio refuses to start without --auth-file / $STUDIO_AUTH or an explicit --no-auth, and serves with one. The
Docker image serves on 0.0.0.0, so its HEALTHCHECK is tried here against a studio that asks for a login."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from served import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_loopback_hosts_need_no_login(tmp_path):
    from studio.settings import Settings

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert Settings(root=tmp_path, host=host).local_only
    for host in ("0.0.0.0", "::", "192.168.1.20", "studio.lan"):
        with pytest.raises(ValueError, match=f"--host {re.escape(host)} lets other machines in"):
            Settings(root=tmp_path, host=host)
        assert Settings(root=tmp_path, host=host, no_auth=True).host == host
        assert Settings(root=tmp_path, host=host, auth="alice:pw").auth == "alice:pw"


@pytest.mark.parametrize("argv", [["--host", "0.0.0.0"], ["--host", "192.168.1.20"], ["--host", "::"], ["--share"],
                                  ["--host", "0.0.0.0", "--no-auth", "--auth", "alice:pw"]])
def test_serving_beyond_this_machine_without_a_login_is_refused(tmp_path, monkeypatch, capsys, argv):
    from studio.cli import main

    monkeypatch.delenv("STUDIO_AUTH", raising=False)
    launched = []
    monkeypatch.setattr("studio.ui.launch", lambda *a, **kw: launched.append(a))
    assert main(["--root", str(tmp_path), "--offline", "serve", *argv]) == 2
    err = capsys.readouterr().err
    assert launched == [] and err.count("\n") == 1
    assert ("needs a login" in err and "--auth-file" in err and "--no-auth" in err) or "choose one" in err


def _dockerfile_healthcheck(port: int) -> str:
    """The Python the image's HEALTHCHECK runs, aimed at `port` instead of 7860."""
    found = re.search(r'HEALTHCHECK .*?CMD \["python", "-c", "(.+?)"\]', (ROOT / "Dockerfile").read_text(), re.S)
    assert found and ":7860/" in found.group(1)
    return found.group(1).replace(":7860/", f":{port}/")


@pytest.mark.parametrize("login", ["auth-file", "env", "no-auth"])
def test_a_login_or_no_auth_serves_on_every_address(tmp_path, shared_models_dir, monkeypatch, login):
    from studio.cli import main
    from studio.ui import launch

    port = free_port()
    seen = {}

    def launch_and_probe(studio, share=False):  # the real server, probed over HTTP and then closed
        app = launch(studio, share=share, prevent_thread_lock=True)
        try:
            url = f"http://127.0.0.1:{port}"
            seen["config"] = httpx.get(f"{url}/config", timeout=30).status_code
            seen["login"] = httpx.post(f"{url}/login", data={"username": "alice", "password": "s3cret"},
                                       timeout=30).status_code
            seen["health"] = subprocess.run([sys.executable, "-c", _dockerfile_healthcheck(port)],
                                            timeout=60).returncode
        finally:
            app.close()
        seen["health_after_close"] = subprocess.run([sys.executable, "-c", _dockerfile_healthcheck(port)],
                                                    capture_output=True, timeout=60).returncode

    monkeypatch.setattr("studio.ui.launch", launch_and_probe)
    monkeypatch.delenv("STUDIO_AUTH", raising=False)
    secret = tmp_path / "auth.txt"
    secret.write_text("alice:s3cret\n")
    extra = {"auth-file": ["--auth-file", str(secret)], "env": [], "no-auth": ["--no-auth"]}[login]
    if login == "env":
        monkeypatch.setenv("STUDIO_AUTH", "alice:s3cret")
    assert main(["--root", str(tmp_path), "--models-dir", str(shared_models_dir), "--offline", "serve",
                 "--host", "0.0.0.0", "--port", str(port), "--model", "builtin:tiny", *extra]) == 0
    assert seen["config"] == (200 if login == "no-auth" else 401)  # with a login, nothing answers before it
    if login != "no-auth":
        assert seen["login"] == 200
    assert seen["health"] == 0 and seen["health_after_close"] != 0
