"""Voila as ``sdeilab dashboard`` serves it: Voila's app with the kernel list of Jupyter's REST API.

Standalone Voila answers ``/api/kernels/<id>`` but not the list, ``GET /api/kernels``; this adds
that one read-only route (behind the same token), so that a user, or a test, can see which
kernels the server keeps (a closed page's kernel must go: tests/test_browser.py). Starting a
kernel through the API stays impossible: only GET is answered. It also lets the page's own
shutdown request through (``_ShutdownOnClose``).

Run as ``python -m sdeilab.voila_app NOTEBOOK [Voila's options]`` (sdeilab/cli.py does).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.services.kernels.handlers import MainKernelHandler
from jupyter_server.utils import url_path_join
from voila.app import Voila
from voila.shutdown_kernel_handler import VoilaShutdownKernelHandler


class _KernelList(MainKernelHandler):
    """``GET /api/kernels``: the running kernels (id, last activity, connections, state)."""

    SUPPORTED_METHODS = ("GET",)


class _ShutdownOnClose(VoilaShutdownKernelHandler):
    """Voila's ``POST /voila/api/shutdown/<kernel id>``, which its page sends on "beforeunload",
    accepted without an XSRF argument.

    Voila 0.5's page sends that request without one, and jupyter_server 2 refuses it ("'_xsrf'
    argument missing from POST", 403): so every closed page left its kernel running. The token
    (or its cookie) is still required, and the request names a kernel by its random id, which a
    page of another site cannot know; the worst a forged one could do is end a dashboard's kernel.
    """

    def check_xsrf_cookie(self) -> None:
        return None


class DashboardVoila(Voila):
    """Voila with ``GET /api/kernels``, and a closed page's kernel shut down (``_ShutdownOnClose``)."""

    def init_handlers(self) -> list[Any]:
        # Tornado takes the first route that matches: these come before Voila's own.
        return [(url_path_join(self.server_url, r"/api/kernels"), _KernelList),
                (url_path_join(self.server_url, r"/voila/api/shutdown/(.*)"), _ShutdownOnClose),
                *super().init_handlers()]


main = DashboardVoila.launch_instance

if __name__ == "__main__":
    main()
