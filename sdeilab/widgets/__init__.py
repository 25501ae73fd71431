"""The dashboard: ipywidgets views over the debugger session (sdeilab.lab.session).

The only layer that imports ipywidgets; every button calls a public method of ``Lab``.
Guest code in notebook cells (``%load_ext sdeilab.widgets.guest_cell``, then ``%%guest_asm`` /
``%%guest_c``; or :func:`make_guest` without IPython) lives in :mod:`sdeilab.widgets.guest_cell`.
"""

from sdeilab.widgets.boot_progress import BootProgress
from sdeilab.widgets.guest_cell import GuestBuildError, GuestCell, build_guest, make_guest
from sdeilab.widgets.lab import Lab

__all__ = ["BootProgress", "GuestBuildError", "GuestCell", "Lab", "build_guest", "make_guest"]
