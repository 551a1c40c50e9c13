"""Start the project's MONAI Label app (``monailabel_app/``) as a server and talk to it over HTTP.

Standard library only (no MONAI Label import): the server runs from the MONAI Label environment
(``scripts/monailabel_env.sh``), this side from any. Used by ``tests/test_monailabel.py`` and
``benchmarks/monailabel_calipers.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["APP_DIR", "MonaiLabelServer", "free_port", "request", "form_request"]

#: the project's MONAI Label app (next to the package in a checkout or editable install)
APP_DIR = Path(__file__).resolve().parents[1] / "monailabel_app"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _send(req: urllib.request.Request, timeout: float) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def request(url: str, method: str = "GET", body: Mapping[str, Any] | None = None,
            timeout: float = 600.0) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of an HTTP request; ``body``, if given, is sent as JSON. HTTP errors are
    returned (their status and body), not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    return _send(req, timeout)


def form_request(url: str, params: Mapping[str, Any], timeout: float = 600.0) -> tuple[int, dict[str, str], bytes]:
    """POST ``params`` as MONAI Label's ``params`` form field, as its clients send inference parameters."""
    data = urllib.parse.urlencode({"params": json.dumps(params)}).encode()
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    return _send(req, timeout)


class MonaiLabelServer:
    """``monailabel start_server`` on 127.0.0.1 (a free port) for an app folder; stop() ends its process group.

    Args:
        venv: the MONAI Label environment (``bin/monailabel`` in it).
        app: the app folder (a copy of :data:`APP_DIR`: the server writes into it).
        studies: the studies folder.
        conf: ``--conf`` pairs (e.g. ``{"models": "crbnet_us_2d_segmentation"}``).
        log_path: the server's stdout and stderr.
        env: the environment of the server process (default: this one without PYTHONPATH).
    """

    def __init__(self, venv: Path, app: Path, studies: Path, conf: Mapping[str, str], log_path: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.venv, self.app, self.studies = Path(venv), Path(app), Path(studies)
        self.conf = dict(conf)
        self.log_path = Path(log_path)
        base = dict(os.environ if env is None else env)
        base.pop("PYTHONPATH", None)
        base["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{base.get('PATH', '')}"
        base["VIRTUAL_ENV"] = str(self.venv)
        self.env = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log: Any = None

    def start(self, timeout: float = 240.0) -> None:
        """Start the server and wait until ``/info/`` answers.

        Raises:
            RuntimeError: the server exited, or did not answer within ``timeout`` seconds (with its log's tail).
        """
        cmd = [str(self.venv / "bin" / "monailabel"), "start_server", "--app", str(self.app),
               "--studies", str(self.studies), "--host", "127.0.0.1", "--port", str(self.port)]
        for key, value in self.conf.items():
            cmd += ["--conf", key, str(value)]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.app,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"monailabel exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if request(self.url + "/info/", timeout=5)[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(2)
        raise RuntimeError(f"monailabel did not answer /info/ within {timeout:.0f} s:\n{self.log()}")

    def log(self, tail: int = 8000) -> str:
        """The last ``tail`` characters of the server's log."""
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the server's whole process group (uvicorn workers, training subprocesses)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> MonaiLabelServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
