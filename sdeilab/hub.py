"""The workshop hub: ``sdeilab hub`` (JupyterHub with deploy/jupyterhub_config.py) and each
student's server start-up (``python -m sdeilab.hub``, the spawner's command).

docs/workshop.md is the instructor's guide; the configuration file documents every setting.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from sdeilab.curriculum import CurriculumError, copy_curriculum

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "deploy" / "jupyterhub_config.py"
# Where scripts/setup.sh puts configurable-http-proxy (npm install --prefix .cache/npm).
BUNDLED_PROXY = REPO / ".cache" / "npm" / "node_modules" / ".bin" / "configurable-http-proxy"
PROXY_SETUP = "run ./scripts/setup.sh, which installs it with npm into .cache/npm"
DEFAULT_PORT = 8000  # JupyterHub's own default
DEFAULT_CULL_S = 3600
# A kernel nobody has used for this long is shut down inside a running server: notebook 40's Linux
# boot holds several hundred MB, and a student who moved on to the next notebook rarely closes it.
KERNEL_CULL_S = 1200
MIN_PASSWORD = 8  # SharedPasswordAuthenticator's minimum
MIN_ADMIN_PASSWORD = 32


class HubError(Exception):
    """The hub cannot start as asked; the message says why, in one line."""


def proxy_command() -> list[str]:
    """configurable-http-proxy: ``$SDEILAB_CHP``, the set-up's copy in .cache/npm, or one on PATH."""
    chosen = os.environ.get("SDEILAB_CHP")
    if chosen:
        return [chosen]
    if BUNDLED_PROXY.is_file():
        return [str(BUNDLED_PROXY)]
    found = shutil.which("configurable-http-proxy")
    return [found] if found else [str(BUNDLED_PROXY)]


def _port_free(ip: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family) as probe:
        try:
            probe.bind((ip, port))
        except OSError:
            return False
    return True


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class HubLaunch:
    command: list[str]
    env: dict[str, str]
    url: str
    password: str
    made_up_password: bool
    data: Path


def plan(*, data: Path, ip: str, port: int, spawner: str, cull_after: int, mem_limit: str | None,
         cpu_limit: float | None) -> HubLaunch:
    """Check the request and say how to start the hub; raises :class:`HubError` for a bad one."""
    import ipaddress

    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise HubError(f"--ip {ip!r} is not an IP address") from None
    if not _has_module("jupyterhub") or not _has_module("jupyterhub_idle_culler"):
        raise HubError("JupyterHub is not installed: run the README's set-up command (pip install -e '.[hub]')")
    proxy = proxy_command()[0]
    if not (os.path.isfile(proxy) and os.access(proxy, os.X_OK)):
        raise HubError(f"configurable-http-proxy is not installed ({proxy}): {PROXY_SETUP}")
    if shutil.which("node") is None and shutil.which("nodejs") is None:
        raise HubError("Node.js, which runs configurable-http-proxy, is not installed: run ./scripts/setup.sh")
    if spawner == "local" and os.geteuid() != 0:
        raise HubError("--spawner local starts each student's server as their own system account: run the hub "
                       "as root, or use --spawner simple")
    password = os.environ.get("SDEILAB_HUB_PASSWORD", "")
    made_up = not password
    if made_up:
        password = secrets.token_urlsafe(9)
    elif len(password) < MIN_PASSWORD:
        raise HubError(f"SDEILAB_HUB_PASSWORD must be at least {MIN_PASSWORD} characters")
    admin = os.environ.get("SDEILAB_HUB_ADMIN_PASSWORD", "")
    if admin and (len(admin) < MIN_ADMIN_PASSWORD or admin == password):
        raise HubError(f"SDEILAB_HUB_ADMIN_PASSWORD must be at least {MIN_ADMIN_PASSWORD} characters and differ "
                       "from the students' password")
    if data.exists() and not data.is_dir():
        raise HubError(f"--data {data} is not a folder")
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HubError(f"--data: cannot create {data}: {error.strerror or error}") from None
    if not os.access(data, os.W_OK | os.X_OK):
        raise HubError(f"--data {data} is not writable")
    if not _port_free(ip, port):
        raise HubError(f"port {port} on {ip} is in use (choose another with --port)")
    env = {**os.environ,
           "SDEILAB_HUB_PASSWORD": password,
           "SDEILAB_HUB_DATA": str(data.resolve()),
           "SDEILAB_HUB_IP": ip,
           "SDEILAB_HUB_PORT": str(port),
           # The hub's and the proxy's internal APIs: free loopback ports, so that two hubs (or a
           # hub and something else on 8081) can share a machine.
           "SDEILAB_HUB_API_PORT": str(_free_loopback_port()),
           "SDEILAB_HUB_PROXY_API_PORT": str(_free_loopback_port()),
           "SDEILAB_HUB_SPAWNER": spawner,
           "SDEILAB_HUB_CULL_AFTER": str(cull_after),
           "SDEILAB_CHP": proxy}
    if mem_limit:
        env["SDEILAB_HUB_MEM_LIMIT"] = mem_limit
    if cpu_limit:
        env["SDEILAB_HUB_CPU_LIMIT"] = str(cpu_limit)
    host = f"[{ip}]" if ":" in ip else ip
    command = [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)]
    return HubLaunch(command, env, f"http://{host}:{port}/", password, made_up, data)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def singleuser(argv: list[str]) -> int:
    """A student's server: bring the curriculum into their folder, then run jupyterhub-singleuser there.

    The folder is ``$SDEILAB_CURRICULUM`` (``~`` expanded against the student's home, which the
    spawner set); notebooks the student already has are left as they are.
    """
    dest = Path(os.path.expanduser(os.environ.get("SDEILAB_CURRICULUM") or "~/sdeilab"))
    try:
        copy_curriculum(dest)
    except CurriculumError as error:
        print(f"sdeilab: {error}", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "jupyterhub.singleuser", f"--ServerApp.root_dir={dest}",
               f"--MappingKernelManager.cull_idle_timeout={KERNEL_CULL_S}",
               "--MappingKernelManager.cull_interval=60", *argv]
    if os.geteuid() == 0:
        command.append("--allow-root")  # the simple spawner in a container, where everything is root
    os.chdir(dest)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)  # the spawner watches this process: the server must be it


if __name__ == "__main__":
    sys.exit(singleuser(sys.argv[1:]))
