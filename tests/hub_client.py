"""Driving ``sdeilab hub`` as a room would: start it, log students in, start their servers and run
notebooks in their kernels through the Jupyter server API (tests/test_hub.py,
benchmarks/hub_sizing.py).

Everything waits with a deadline: a hub that does not answer fails the caller, it never hangs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import psutil
import requests
import websocket

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "room-password-17"  # SharedPasswordAuthenticator wants 8 characters or more
START_S = 120  # the hub up and answering
SPAWN_S = 240  # a student's server ready (three JupyterLabs starting at once on two cores)
STOP_S = 90  # the hub gone after SIGTERM, its servers and kernels stopped
REQUEST_S = 60  # one REST call


class HubFailure(AssertionError):
    """The hub or a student's server did not do what was asked in time; the message says what."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Hub:
    """``sdeilab hub`` running in ``folder`` (its --data is ``folder/hub``), with an admin API token."""

    folder: Path
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.folder / "hub"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "hub.log"

    def user_folder(self, name: str) -> Path:
        return self.data / "users" / name

    def start(self) -> None:
        env = {**os.environ, "SDEILAB_HUB_PASSWORD": PASSWORD, "SDEILAB_HUB_ADMIN_TOKEN": self.token}
        with open(self.log, "wb") as log:
            # A session of its own: should everything else fail, the whole tree can still be ended.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sdeilab.cli", "hub", "--data", str(self.data), "--port", str(self.port),
                 *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.folder, env=env,
                start_new_session=True)
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HubFailure(f"sdeilab hub exited with status {self.process.returncode} while starting")
            try:
                if self.api("GET", "/").status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise HubFailure(f"the hub did not answer within {START_S} s")

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The hub's REST API with the admin service's token."""
        return requests.request(method, f"{self.url}/hub/api{path}", timeout=REQUEST_S,
                                headers={"Authorization": f"token {self.token}"}, **kwargs)

    def descendants(self) -> list[psutil.Process]:
        assert self.process is not None
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> list[str]:
        """SIGTERM to ``sdeilab hub`` (what Ctrl-C's neighbour, a service manager, sends); returns the
        processes of the hub's tree still alive afterwards, which are then killed."""
        assert self.process is not None
        tree = self.descendants()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):  # what is left is reported below
            self.process.wait(timeout=STOP_S)
        _, alive = psutil.wait_procs(tree, timeout=30)
        left = [_describe(p) for p in alive]
        self.kill()
        return left

    def kill(self) -> None:
        """End whatever of the hub's tree is left (after a failure): its session, then stragglers."""
        if self.process is None:
            return
        tree = self.descendants()
        for target in tree:
            with contextlib.suppress(psutil.Error):  # gone meanwhile
                target.kill()
        if self.process.poll() is None:
            with contextlib.suppress(OSError):  # gone meanwhile
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        psutil.wait_procs(tree, timeout=30)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:160]}"
    except psutil.Error:
        return f"{process.pid} (gone)"


@dataclass
class Student:
    """One student: logged in through the hub's login form, with an API token of their own."""

    hub: Hub
    name: str
    session: requests.Session = field(default_factory=requests.Session)
    token: str = ""

    def log_in(self) -> None:
        """The login form with the shared password, then a token made with the login's cookie."""
        login = f"{self.hub.url}/hub/login"
        self.session.get(login, timeout=REQUEST_S).raise_for_status()  # sets the _xsrf cookie
        reply = self.session.post(login, data={"username": self.name, "password": PASSWORD, "_xsrf": self._xsrf()},
                                  allow_redirects=False, timeout=REQUEST_S)
        if reply.status_code != 302:
            raise HubFailure(f"{self.name}: login answered {reply.status_code}, not a redirect")
        reply = self.session.post(f"{self.hub.url}/hub/api/users/{self.name}/tokens",
                                  json={"note": "hub test", "expires_in": 3600},
                                  headers={"X-XSRFToken": self._xsrf()}, timeout=REQUEST_S)
        if reply.status_code != 201:
            raise HubFailure(f"{self.name}: making a token answered {reply.status_code}: {reply.text[:200]}")
        self.token = reply.json()["token"]

    def _xsrf(self) -> str:
        """The hub's current _xsrf cookie: logging in replaces the anonymous one with the user's."""
        values = [cookie.value for cookie in self.session.cookies if cookie.name == "_xsrf" and cookie.value]
        return values[-1] if values else ""

    def _hub_api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.hub.url}/hub/api{path}", timeout=REQUEST_S,
                                headers={"Authorization": f"token {self.token}"}, **kwargs)

    def server_api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The student's own Jupyter server, through the hub's proxy."""
        return requests.request(method, f"{self.hub.url}/user/{self.name}/api{path}", timeout=REQUEST_S,
                                headers={"Authorization": f"token {self.token}"}, **kwargs)

    def start_server(self) -> float:
        """Ask for the server and wait until it is ready; returns the seconds that took."""
        began = time.monotonic()
        reply = self._hub_api("POST", f"/users/{self.name}/server")
        if reply.status_code not in (201, 202):
            raise HubFailure(f"{self.name}: starting the server answered {reply.status_code}: {reply.text[:200]}")
        deadline = began + SPAWN_S
        while time.monotonic() < deadline:
            model = self._hub_api("GET", f"/users/{self.name}").json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                if self.server_api("GET", "/status").status_code == 200:
                    return time.monotonic() - began
            elif not model.get("pending") and not server and time.monotonic() - began > 5:
                raise HubFailure(f"{self.name}: the server stopped while starting (the hub's log says why)")
            time.sleep(0.5)
        raise HubFailure(f"{self.name}: the server was not ready within {SPAWN_S} s")

    def stop_server(self) -> None:
        reply = self._hub_api("DELETE", f"/users/{self.name}/server")
        if reply.status_code not in (202, 204):
            raise HubFailure(f"{self.name}: stopping the server answered {reply.status_code}")
        deadline = time.monotonic() + STOP_S
        while time.monotonic() < deadline:
            if not self._hub_api("GET", f"/users/{self.name}").json().get("servers"):
                return
            time.sleep(0.5)
        raise HubFailure(f"{self.name}: the server did not stop within {STOP_S} s")

    def read_notebook(self, path: str) -> nbformat.NotebookNode:
        reply = self.server_api("GET", f"/contents/{path}", params={"content": "1"})
        reply.raise_for_status()
        return nbformat.from_dict(reply.json()["content"])

    def save_notebook(self, path: str, notebook: nbformat.NotebookNode) -> None:
        reply = self.server_api("PUT", f"/contents/{path}",
                                json={"type": "notebook", "format": "json", "content": notebook})
        if reply.status_code not in (200, 201):
            raise HubFailure(f"{self.name}: saving {path} answered {reply.status_code}: {reply.text[:200]}")

    def open_kernel(self, path: str) -> Kernel:
        """A kernel for the notebook at ``path``, as JupyterLab opens one (a session: its working
        folder is the notebook's)."""
        reply = self.server_api("POST", "/sessions", json={"path": path, "name": Path(path).name, "type": "notebook",
                                                           "kernel": {"name": "python3"}})
        if reply.status_code != 201:
            raise HubFailure(f"{self.name}: opening a kernel answered {reply.status_code}: {reply.text[:200]}")
        model = reply.json()
        url = f"ws://127.0.0.1:{self.hub.port}/user/{self.name}/api/kernels/{model['kernel']['id']}/channels"
        connection = websocket.create_connection(url, header=[f"Authorization: token {self.token}"],
                                                 timeout=REQUEST_S)
        return Kernel(self, model["id"], model["kernel"]["id"], connection)

    def run_notebook(self, path: str, *, timeout: float, extra: list[str] = ()) -> nbformat.NotebookNode:
        """Run the code cells of the student's ``path`` in a new kernel, then the ``extra`` code;
        returns the notebook with its outputs (not saved). The kernel is shut down afterwards."""
        notebook = self.read_notebook(path)
        kernel = self.open_kernel(path)
        deadline = time.monotonic() + timeout
        try:
            for cell in notebook.cells:
                if cell.cell_type == "code":
                    cell.outputs = kernel.execute(cell.source, deadline, where=f"{path} cell {cell.get('id')}")
            for code in extra:
                kernel.execute(code, deadline, where=f"{path} extra code")
        finally:
            kernel.close()
        return notebook


def _decode(frame: str | bytes) -> dict[str, Any]:
    """A kernel message from Jupyter server's websocket: JSON text, or, for a message carrying binary
    buffers (ipywidgets, ipympl), a binary frame: the number of parts and their offsets as 32-bit
    big-endian integers, then the JSON message and the buffers (the buffers are not needed here)."""
    if isinstance(frame, str):
        return json.loads(frame)
    count = int.from_bytes(frame[:4], "big")
    offsets = [int.from_bytes(frame[4 + 4 * i:8 + 4 * i], "big") for i in range(count)]
    end = offsets[1] if count > 1 else len(frame)
    return json.loads(frame[offsets[0]:end])


@dataclass
class Kernel:
    student: Student
    session_id: str
    kernel_id: str
    connection: websocket.WebSocket
    client_session: str = field(default_factory=lambda: uuid.uuid4().hex)

    def execute(self, code: str, deadline: float, *, where: str) -> list[nbformat.NotebookNode]:
        """Run ``code``; its outputs as nbformat outputs. A cell that raises fails the caller."""
        msg_id = uuid.uuid4().hex
        self.connection.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": self.student.name,
                       "session": self.client_session, "date": "", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        outputs: list[nbformat.NotebookNode] = []
        replied = idle = False
        while not (replied and idle):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HubFailure(f"{self.student.name}: {where} did not finish in time")
            self.connection.settimeout(remaining)
            try:
                message = _decode(self.connection.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["msg_type"]
            if message["channel"] == "shell" and kind == "execute_reply":
                replied = True
                if message["content"]["status"] != "ok":
                    content = message["content"]
                    raise HubFailure(f"{self.student.name}: {where} raised {content.get('ename')}: "
                                     f"{content.get('evalue')}")
            elif kind == "status" and message["content"]["execution_state"] == "idle":
                idle = True
            elif kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append(nbformat.v4.output_from_msg(message))
        return outputs

    def close(self) -> None:
        try:
            self.connection.close()
        finally:
            self.student.server_api("DELETE", f"/sessions/{self.session_id}")  # and its kernel with it
