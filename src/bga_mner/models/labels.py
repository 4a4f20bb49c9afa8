"""Profiler labels: ``torch.profiler.record_function`` scopes named ``bga:<part>`` around the parts of
the network (text layers, samplers, each generator pass, ...), read by ``bga-mner bench --profile``
(``profiling.profile_step``). Outside a profiler a scope costs a few microseconds; while
``torch.compile`` or an ONNX export traces, none is opened (dynamo would only drop it with a
warning; the ONNX exporter has no operator for it).
"""

from __future__ import annotations

import contextlib

import torch
from torch.profiler import record_function

PREFIX = "bga:"


def label(name: str) -> contextlib.AbstractContextManager:
    """The profiler scope ``bga:<name>`` (a no-op while ``torch.compile`` or ``torch.jit`` traces).

    Args:
        name: the part of the step, e.g. ``"t2v recon"``.
    """
    if torch.compiler.is_compiling() or torch.jit.is_tracing():  # an ONNX export traces
        return contextlib.nullcontext()
    return record_function(PREFIX + name)
