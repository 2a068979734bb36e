"""Sliding-window scores per face track and verdicts with hysteresis."""

from .verdict import (
                      ALERTING,
                      AUTHENTIC,
                      INSUFFICIENT,
                      MANIPULATED,
                      NO_FACE,
                      SUSPICIOUS,
                      VERDICTS,
                      VerdictPolicy,
                      VerdictState,
                      most_severe,
                      severity,
                      step,
)
from .window import TrackWindow, WindowPolicy, WindowStats

__all__ = ["ALERTING", "AUTHENTIC", "INSUFFICIENT", "MANIPULATED", "NO_FACE", "SUSPICIOUS", "VERDICTS",
           "VerdictPolicy", "VerdictState", "most_severe", "severity", "step", "TrackWindow", "WindowPolicy",
           "WindowStats"]
