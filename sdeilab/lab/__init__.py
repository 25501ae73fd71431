"""The lab layer (DESIGN.md section 1): composition and the debugger, between the firmware and
the pictures. ``platform`` builds a board with its firmware for a profile (the composition root),
``session`` is the debugger every front end drives (notebooks, the dashboard, gdb through
``gdb_server``), and ``compare`` runs guests against QEMU."""
