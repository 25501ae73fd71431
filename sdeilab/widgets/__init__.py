"""The dashboard: ipywidgets views over the debugger session (sdeilab.firmware.session).

The only layer that imports ipywidgets; every button calls a public method of ``Lab``.
"""

from sdeilab.widgets.lab import Lab

__all__ = ["Lab"]
