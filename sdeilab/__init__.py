"""sdeilab: a lab for Arm SMCCC, PSCI and SDEI on an emulated multi-vCPU AArch64 virtual machine.

Layers, each importing only those below it (tests/test_layers.py checks this):
trace <- cpu <- machine <- firmware <- viz <- widgets. See ../shared/DESIGN.md.
"""

__version__ = "0.1.0"
