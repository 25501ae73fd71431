"""JupyterHub configuration for a workshop room: one JupyterLab per student, each on a private copy
of the curriculum (docs/workshop.md).

``sdeilab hub`` runs ``jupyterhub -f deploy/jupyterhub_config.py`` with the settings below taken
from its options through environment variables; the file also works on its own
(``.venv/bin/jupyterhub -f deploy/jupyterhub_config.py`` with the variables you want set).

========================================  =============================================================
variable (``sdeilab hub`` option)          meaning (default)
========================================  =============================================================
SDEILAB_HUB_PASSWORD                       the students' shared password, 8 characters or more
                                           (``sdeilab hub`` makes one up and prints it when unset)
SDEILAB_HUB_ADMIN_PASSWORD                 the instructor's password (32 characters or more): the user
                                           ``instructor`` logs in with it and gets the admin page
                                           (no admin login when unset)
SDEILAB_HUB_DATA (``--data``)              the hub's folder: its database, cookie secret, logs, and
                                           ``users/NAME``, each student's folder (``./sdeilab-hub``)
SDEILAB_HUB_IP, SDEILAB_HUB_PORT           the address students open (127.0.0.1, 8000)
(``--ip``, ``--port``)
SDEILAB_HUB_API_PORT,                      the hub's internal API and the proxy's API, on 127.0.0.1
SDEILAB_HUB_PROXY_API_PORT                 (8081, 8001; ``sdeilab hub`` chooses free ones)
SDEILAB_HUB_SPAWNER (``--spawner``)        ``simple``: every student runs as the system user that runs
                                           the hub, in ``users/NAME`` (a workshop on one machine);
                                           ``local``: each student is a system account of that name
                                           and works in ``~/sdeilab`` (the hub runs as root)
SDEILAB_HUB_CULL_AFTER (``--cull-after``)  stop a student's server idle this many seconds (3600)
SDEILAB_HUB_MEM_LIMIT, SDEILAB_HUB_CPU_LIMIT  per-student limits, e.g. ``2G`` and ``1.0`` (none); see
(``--mem-limit``, ``--cpu-limit``)         the note at ``c.Spawner.mem_limit`` below
SDEILAB_HUB_ADMIN_TOKEN                    an API token for the ``sdeilab-admin`` service, with the
                                           admin role (tests and benchmarks drive the hub with it;
                                           no such service when unset)
SDEILAB_CHP                                the configurable-http-proxy command (the one scripts/setup.sh
                                           installs in .cache/npm)
========================================  =============================================================
"""

# ruff: noqa: F821 -- ``c`` is the configuration object JupyterHub defines before running this file
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # sdeilab itself, when this file is used without the project installed
from sdeilab.hub import proxy_command  # noqa: E402

env = os.environ.get
data = Path(env("SDEILAB_HUB_DATA") or "sdeilab-hub").resolve()
data.mkdir(parents=True, exist_ok=True)

# -- Where the hub listens and keeps its state. Students reach only the proxy's public address;
# the hub's own API and the proxy's API stay on loopback whatever --ip says.
c.JupyterHub.ip = env("SDEILAB_HUB_IP") or "127.0.0.1"
c.JupyterHub.port = int(env("SDEILAB_HUB_PORT") or 8000)
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(env("SDEILAB_HUB_API_PORT") or 8081)
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{int(env('SDEILAB_HUB_PROXY_API_PORT') or 8001)}"
c.ConfigurableHTTPProxy.command = proxy_command()
c.ConfigurableHTTPProxy.pid_file = str(data / "jupyterhub-proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{data / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(data / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(data / "jupyterhub.pid")
# When the hub stops (Ctrl-C on `sdeilab hub`, SIGTERM) it stops every student's server and the proxy:
# a workshop leaves no process behind (tests/test_hub.py checks it).
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True

# -- Who may log in. SharedPasswordAuthenticator (JupyterHub 5.3; it replaces DummyAuthenticator's
# deprecated password): any name with the room's password gets a server of that name, made on the
# first login. Anyone with the password can log in under any student's name: it is for a room of
# people who trust each other for a day, not for a server on the internet. Names are kept to what
# makes a safe folder name.
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = env("SDEILAB_HUB_PASSWORD") or None
if env("SDEILAB_HUB_ADMIN_PASSWORD"):
    c.SharedPasswordAuthenticator.admin_password = env("SDEILAB_HUB_ADMIN_PASSWORD")
    c.Authenticator.admin_users = {"instructor"}
c.Authenticator.allow_all = True
c.Authenticator.username_pattern = r"^[a-z0-9][a-z0-9_-]{0,31}$"

# -- Each student's server: JupyterLab on a private copy of the curriculum. The command copies the
# notebooks a student does not have yet into the folder (sdeilab.hub.singleuser, the same work as
# `sdeilab notebooks`), then becomes `jupyterhub-singleuser` there. It runs as the student's
# process, so with real accounts the files belong to the student.
spawner = env("SDEILAB_HUB_SPAWNER") or "simple"
if spawner == "simple":
    # All students are the hub's system user, each with a folder of their own as home and working
    # folder: isolation by convention only (a student's code can read the others' folders).
    c.JupyterHub.spawner_class = "simple"
    c.SimpleLocalProcessSpawner.home_dir_template = str(data / "users" / "{username}")
    c.Spawner.environment = {"SDEILAB_CURRICULUM": "~"}  # the student's folder is their home
elif spawner == "local":
    # Real accounts: the hub runs as root and starts each server as the system user of the same name
    # (create them beforehand, e.g. `useradd -m student01`); the curriculum goes to ~/sdeilab.
    c.JupyterHub.spawner_class = "localprocess"
    c.Spawner.environment = {"SDEILAB_CURRICULUM": "~/sdeilab"}
else:
    raise ValueError(f"SDEILAB_HUB_SPAWNER={spawner!r}: use 'simple' or 'local'")
c.Spawner.cmd = [sys.executable, "-m", "sdeilab.hub"]
c.Spawner.default_url = "/lab"
# A room starts its servers in the same minute; on two cores a JupyterLab takes several seconds.
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.JupyterHub.concurrent_spawn_limit = 200

# -- Limits. JupyterHub passes them to the server (MEM_LIMIT and CPU_LIMIT in its environment, shown
# by the resource panel), but the local spawners do not enforce them: nothing stops one student's
# notebook 40 from taking the machine's memory. To enforce them on one machine use
# jupyterhub-systemdspawner (each server in a systemd scope with MemoryMax and CPUQuota;
# c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"), on a cluster KubeSpawner
# (Zero to JupyterHub's singleuser.memory.limit and singleuser.cpu.limit). docs/workshop.md
# gives what one student uses.
if env("SDEILAB_HUB_MEM_LIMIT"):
    c.Spawner.mem_limit = env("SDEILAB_HUB_MEM_LIMIT")
if env("SDEILAB_HUB_CPU_LIMIT"):
    c.Spawner.cpu_limit = float(env("SDEILAB_HUB_CPU_LIMIT") or 0)

# -- Services: the idle culler stops servers nobody has used for a while (a student who left
# without logging out gives the memory back); the admin service, when a token is given, lets a
# script (the hub tests, benchmarks/hub_sizing.py) manage users and servers through the REST API.
cull_after = int(env("SDEILAB_HUB_CULL_AFTER") or 3600)
c.JupyterHub.services = [
    {"name": "idle-culler",
     "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={cull_after}",
                 f"--cull-every={max(10, min(300, cull_after // 2))}"]},
]
c.JupyterHub.load_roles = [
    {"name": "idle-culler", "services": ["idle-culler"],
     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]},
]
if env("SDEILAB_HUB_ADMIN_TOKEN"):
    c.JupyterHub.services.append({"name": "sdeilab-admin", "api_token": env("SDEILAB_HUB_ADMIN_TOKEN")})
    c.JupyterHub.load_roles.append({"name": "admin", "services": ["sdeilab-admin"]})
