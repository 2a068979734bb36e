"""Verdicts with persistence and hysteresis, as a pure state-transition function.

Entering a more severe level (suspicious, manipulated) needs the window statistic at or above that
level's threshold for `enter_crops` consecutive evaluations *and* `enter_seconds`. Leaving a level needs the
statistic below its threshold minus `hysteresis` for `exit_seconds`. So a statistic wandering around a
threshold cannot make the verdict flap.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

NO_FACE, INSUFFICIENT, AUTHENTIC, SUSPICIOUS, MANIPULATED = (
    "no_face", "insufficient_evidence", "authentic", "suspicious", "manipulated")
VERDICTS = (NO_FACE, INSUFFICIENT, AUTHENTIC, SUSPICIOUS, MANIPULATED)  # ascending severity
ALERTING = (SUSPICIOUS, MANIPULATED)


def severity(verdict: str) -> int:
    return VERDICTS.index(verdict)


class VerdictPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    suspicious: float = Field(0.90, gt=0, lt=1, description="window statistic that makes a track suspicious")
    manipulated: float = Field(0.97, gt=0, lt=1, description="window statistic that makes it manipulated")
    hysteresis: float = Field(0.05, ge=0, lt=1, description="leave a level only below its threshold minus this")
    enter_crops: int = Field(3, ge=1, description="consecutive evaluations above threshold to enter a level")
    enter_seconds: float = Field(1.0, ge=0, description="... and for at least this long")
    exit_seconds: float = Field(3.0, ge=0, description="below threshold minus hysteresis this long to leave")

    @model_validator(mode="after")
    def _ordered(self):
        if self.manipulated < self.suspicious:
            raise ValueError("manipulated threshold must be >= suspicious threshold")
        return self

    def threshold(self, verdict: str) -> float:
        return {SUSPICIOUS: self.suspicious, MANIPULATED: self.manipulated}[verdict]

    def level(self, statistic: float) -> str:
        if statistic >= self.manipulated:
            return MANIPULATED
        return SUSPICIOUS if statistic >= self.suspicious else AUTHENTIC


@dataclass(frozen=True)
class Run:
    """A run of consecutive evaluations with the statistic at or above one threshold."""

    since: float | None = None
    count: int = 0

    def extend(self, above: bool, now: float) -> "Run":
        return Run(self.since if self.count else now, self.count + 1) if above else Run()

    def confirmed(self, now: float, policy: VerdictPolicy) -> bool:
        return self.count >= policy.enter_crops and now - self.since >= policy.enter_seconds


@dataclass(frozen=True)
class VerdictState:
    verdict: str = NO_FACE
    suspicious_run: Run = Run()
    manipulated_run: Run = Run()
    below_since: float | None = None  # when the statistic fell below the exit bar of the current level


def step(state: VerdictState, statistic: float | None, enough: bool, now: float, policy: VerdictPolicy,
         faces_seen: bool = False) -> VerdictState:
    """One evaluation. `statistic` is the window statistic (None: no crops scored), `enough` whether the window
    holds the minimum number of crops, `faces_seen` whether faces were seen but skipped (the monitor abstains:
    insufficient evidence, not no face)."""
    if statistic is None or not enough:
        if state.verdict in ALERTING:  # a gap in evidence does not end an alert; recovery or the track's end does
            return state
        return VerdictState(NO_FACE if statistic is None and not faces_seen else INSUFFICIENT)

    sus = state.suspicious_run.extend(statistic >= policy.suspicious, now)
    man = state.manipulated_run.extend(statistic >= policy.manipulated, now)
    current = state.verdict if state.verdict in (AUTHENTIC, *ALERTING) else AUTHENTIC
    confirmed = MANIPULATED if man.confirmed(now, policy) else SUSPICIOUS if sus.confirmed(now, policy) else AUTHENTIC
    if severity(confirmed) > severity(current):
        return VerdictState(confirmed, sus, man)
    if current in ALERTING and statistic < policy.threshold(current) - policy.hysteresis:
        since = state.below_since if state.below_since is not None else now
        if now - since < policy.exit_seconds:
            return VerdictState(current, sus, man, since)
        # Leave to the level the statistic still supports, judged with the same hysteresis.
        keeps_suspicious = current == MANIPULATED and statistic >= policy.suspicious - policy.hysteresis
        return VerdictState(SUSPICIOUS if keeps_suspicious else AUTHENTIC, sus, man)
    return VerdictState(current, sus, man)


def most_severe(verdicts: list[str]) -> str:
    """A stream's verdict: that of its most suspicious track; no tracks means no face."""
    return max(verdicts, key=severity) if verdicts else NO_FACE
