"""`sagekit lab`: JupyterLab on a working copy of the study notebooks.

The repository's notebooks stay as committed (without outputs); a person works in copies
in a folder of their own (default ``lab/`` beside ``notebooks/``, so a notebook's
relative ``store_dir`` names the same results store as ``sagekit run``'s: a verdict given
in the lab shows in the next report). A copy already there is kept (it may hold the
person's edits); missing ones are copied. The server listens on 127.0.0.1 only, with a
fresh token, and runs the notebooks on sagekit's own kernel (this interpreter).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .studies import NOTEBOOKS
from .studies.parameters import unwritable

DEFAULT_DIR = NOTEBOOKS.parent / "lab"
HOST = "127.0.0.1"
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never goes through a proxy


class LabError(ValueError):
    """Bad input to ``sagekit lab`` (a port in use, a folder that cannot be written)."""


def port_problem(port: int) -> str | None:
    """Why ``port`` cannot be listened on at 127.0.0.1, or None (0: any free port)."""
    if not 0 <= port < 65536:
        return f"--port must be from 0 to 65535, got {port}"
    with socket.socket() as s:
        # as the server binds: a port whose last connections linger in TIME_WAIT is free
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as e:
            return f"port {port} is in use ({e.strerror or e}); choose another with --port, or 0 for any free one"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def working_copy(folder: Path) -> tuple[list[str], list[str]]:
    """Copy every study notebook into ``folder`` unless a copy is there already:
    ``(copied, kept)`` file names. Raises :class:`LabError` for a folder that cannot be
    written."""
    problem = unwritable(folder)
    if problem:
        raise LabError(f"--dir: {problem}")
    folder.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        target = folder / nb.name
        if target.exists():
            kept.append(nb.name)
        else:
            shutil.copyfile(nb, target)
            copied.append(nb.name)
    return copied, kept


@dataclass
class Lab:
    """A running JupyterLab server (``process``) and the URL that opens it."""

    process: subprocess.Popen
    url: str
    folder: Path
    log: Path

    def stop(self, wait: float = 20) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(wait)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(folder: Path | str = DEFAULT_DIR, port: int = 0, ready_within: float = 120) -> Lab:
    """Start JupyterLab on ``folder``'s working copy and wait until it answers; its log
    goes to ``folder/jupyter.log``. Raises :class:`LabError` for bad input or a server
    that does not come up."""
    from .report import ensure_kernel

    folder = Path(folder).resolve()
    problem = port_problem(port)
    if problem:
        raise LabError(problem)
    working_copy(folder)
    ensure_kernel()  # the notebooks name sagekit's kernel: this interpreter
    port = port or free_port()
    token = secrets.token_hex(24)
    log = folder / "jupyter.log"
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.ip={HOST}", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", "--ServerApp.open_browser=False", f"--ServerApp.root_dir={folder}",
           f"--IdentityProvider.token={token}",
           # no calls home: the lab works offline, and no news pop-up covers the notebook
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly",
           # the layout (open tabs, the current one) is the working copy's own: a lab on another
           # folder restoring its tabs over the notebook asked for would hide that notebook
           f"--LabApp.workspaces_dir={folder / '.workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # a container's root (CI): Jupyter refuses it unless told
        cmd.append("--ServerApp.allow_root=True")
    with open(log, "w") as out:
        # its own session: a Ctrl-C reaches sagekit, which stops the server (no "shut down? y/n" prompt)
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=folder,
                                   start_new_session=True)
    base = f"http://{HOST}:{port}"
    lab = Lab(process, f"{base}/lab?token={token}", folder, log)
    deadline = time.monotonic() + ready_within
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LabError(f"JupyterLab stopped at start (exit {process.returncode}); see {log}")
            try:
                with _direct.open(f"{base}/api/status?token={token}", timeout=2):
                    return lab
            except OSError:
                time.sleep(0.3)
        raise LabError(f"JupyterLab did not answer within {ready_within:.0f} s; see {log}")
    except BaseException:  # not up, or Ctrl-C while it came up: no server is left behind
        lab.stop()
        raise
