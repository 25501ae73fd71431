"""Views of a trace, in pure matplotlib: each function takes an Axes and trace data, draws, and
returns the artists it drew (so a live view can update or remove them).

Nothing here imports pyplot or changes global matplotlib state, so the views work under any
backend: Agg in tests and scripts, ipympl (``%matplotlib widget``) in notebooks. Layering:
viz reads sdeilab.trace, and the SDEI state table (sdeilab.firmware.sdei.table) for the state
machine view, which draws the very table the firmware enforces.
"""

from sdeilab.viz.sequence import sequence
from sdeilab.viz.state_machine import state_machine, state_table, update_state_machine
from sdeilab.viz.timeline import TimelineData, figure_legend, timeline

__all__ = ["TimelineData", "figure_legend", "sequence", "state_machine", "state_table", "timeline",
           "update_state_machine"]
