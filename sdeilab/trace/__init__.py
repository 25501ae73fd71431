"""The floor every layer stands on: append-only facts, the log that holds them, and pure analysis.

This package imports no other sdeilab layer.
"""

from sdeilab.trace.log import Subscription, TraceLog, TraceMark
from sdeilab.trace.records import (
    FACT_KINDS,
    ExceptionTaken,
    Fact,
    GuestFault,
    IrqAcknowledged,
    IrqAsserted,
    IrqCompleted,
    LayerExit,
    MachineStopped,
    PowerTransition,
    SdeiBinding,
    SdeiComplete,
    SdeiDispatch,
    SdeiMask,
    SdeiTransition,
    SmcccCall,
    SmcccReturn,
)
from sdeilab.trace.vocabulary import PowerCause, PowerState

__all__ = [
    "FACT_KINDS",
    "ExceptionTaken",
    "Fact",
    "GuestFault",
    "IrqAcknowledged",
    "IrqAsserted",
    "IrqCompleted",
    "LayerExit",
    "MachineStopped",
    "PowerCause",
    "PowerState",
    "PowerTransition",
    "SdeiBinding",
    "SdeiComplete",
    "SdeiDispatch",
    "SdeiMask",
    "SdeiTransition",
    "SmcccCall",
    "SmcccReturn",
    "Subscription",
    "TraceLog",
    "TraceMark",
]
