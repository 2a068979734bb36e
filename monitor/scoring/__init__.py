"""Sliding-window scores per face track, verdicts with hysteresis, and the judge that turns them into alerts."""

from .judge import Judgement, TrackJudge
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
           "WindowStats", "Judgement", "TrackJudge"]
