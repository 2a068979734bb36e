"""One face track's judge (window, verdicts and alert lifecycle: `TrackJudge`, the code path the pipeline, a shadow
model and calibration's replay all run) against a reference model (hypothesis state machine).

Random crop scores (and skipped crops) arrive at random times; after each, the track is judged; now and then the
track ends. Checked
against the history the machine keeps:
- the window's statistic is the mean of the scores of the last `seconds` (at most `max_crops` of them);
- a level is entered only after `enter_crops` consecutive evaluations at or above its threshold spanning
  `enter_seconds`, and left only after `exit_seconds` below its threshold minus the hysteresis;
- every alert opens once, its events' `seq` run 0, 1, 2, ... without a gap, it closes exactly once (recovered,
  or when the track ends), nothing follows its close, and `updated` comes only on a change of verdict at most
  once per `update_interval_s`.
"""

from __future__ import annotations

import statistics

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from monitor.contracts import ModelTag
from monitor.scoring import (
    ALERTING,
    AUTHENTIC,
    MANIPULATED,
    SUSPICIOUS,
    Judgement,
    TrackJudge,
    VerdictPolicy,
    WindowPolicy,
    severity,
)

POLICY = VerdictPolicy(suspicious=0.6, manipulated=0.8, hysteresis=0.1, enter_crops=3, enter_seconds=1.0,
                       exit_seconds=2.0)
WINDOW = WindowPolicy(seconds=3.0, max_crops=6, min_crops=2)
UPDATE_INTERVAL_S = 2.5


class TrackMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.now = 1000.0
        self.judge = self._new_judge()
        self.scores: list[tuple[float, float]] = []  # the reference window: (frame time, p_fake), all of them
        self.evaluations: list[tuple[float, float | None, bool, str]] = []  # (time, statistic, enough, verdict)
        self.events: dict[str, list] = {}  # alert id -> its events in order
        self.open_alert: str | None = None

    # --- rules ----------------------------------------------------------------------------------------------

    @rule(p=st.floats(0, 1), dt=st.floats(0.05, 1.5), lag=st.floats(0, 0.5))
    def crop_scored(self, p, dt, lag):
        self.now += dt
        self.scores.append((self.now - lag, p))
        self._check(self.judge.score(self.now - lag, p, self.now))

    @rule(dt=st.floats(0.05, 1.5), reason=st.sampled_from(["low_quality", "stale"]))
    def crop_skipped(self, dt, reason):
        self.now += dt
        self._check(self.judge.abstain(self.now, reason, self.now))

    @rule(dt=st.floats(0, 6))
    def quiet(self, dt):
        """No face for a while; the track is judged again (the window empties with time)."""
        self.now += dt
        self._check(self.judge.evaluate(self.now))

    @rule(reason=st.sampled_from(["track_ended", "stream_ended", "shutdown"]))
    def track_ends(self, reason):
        event = self.judge.end(reason, self.now)
        if self.open_alert is None:
            assert event is None, "a close without an open alert"
            return
        assert event is not None and event.type == "closed" and event.close_reason == reason
        self._record(event)
        # The pipeline starts a new track afresh.
        self.judge = self._new_judge()
        self.scores = []
        self.evaluations.append((self.now, None, False, "ended"))

    # --- the step under test --------------------------------------------------------------------------------

    @staticmethod
    def _new_judge() -> TrackJudge:
        return TrackJudge("cam", 1, WINDOW, POLICY, ModelTag("m", "fp32"), "host", UPDATE_INTERVAL_S)

    def _check(self, judgement: Judgement) -> None:
        stats = judgement.stats
        # The window keeps the newest max_crops by frame time, then ages them out by frame time.
        kept = sorted(self.scores, key=lambda s: s[0])[-WINDOW.max_crops:]
        expected = [p for t, p in kept if t >= self.now - WINDOW.seconds]
        if expected:
            assert stats.crops == len(expected)
            assert abs(stats.value - statistics.fmean(expected)) < 1e-9
        else:
            assert stats.value is None and stats.crops == 0
        enough = stats.crops >= WINDOW.min_crops
        before = self.evaluations[-1][3] if self.evaluations and self.evaluations[-1][3] != "ended" else "no_face"
        assert judgement.verdict == self.judge.verdict
        self.evaluations.append((self.now, stats.value, enough, judgement.verdict))
        self._check_transition(before, judgement.verdict)
        if judgement.event is not None:
            self._record(judgement.event)
        self._check_lifecycle_follows(judgement.verdict, judgement.event)

    def _record(self, event) -> None:
        history = self.events.setdefault(event.alert_id, [])
        if event.type == "opened":
            assert not history, "an alert opened twice"
            assert self.open_alert is None, "a second alert opened while one is open on the same track"
            self.open_alert = event.alert_id
        else:
            assert history and history[-1].type != "closed", f"{event.type} after the alert closed (or before it opened)"
            assert event.alert_id == self.open_alert
        assert event.seq == len(history), f"seq {event.seq} after {len(history)} events: a gap or a repeat"
        history.append(event)
        if event.type == "closed":
            self.open_alert = None

    # --- reference checks -----------------------------------------------------------------------------------

    def _streak(self, condition) -> list[tuple[float, float | None, bool, str]]:
        """The evaluations, newest first, for which `condition(statistic)` held without a break; evaluations
        short of evidence are passed over while an alert stands (they do not end one) and break it otherwise."""
        streak = []
        for when, value, enough, verdict in reversed(self.evaluations[:-1]):
            if verdict == "ended":
                break
            if not enough:
                if verdict in ALERTING:
                    continue
                break
            if not condition(value):
                break
            streak.append((when, value, enough, verdict))
        return streak

    def _check_transition(self, before: str, after: str) -> None:
        now, value, enough, _ = self.evaluations[-1]
        if severity(after) > severity(before) and after in ALERTING:
            threshold = POLICY.threshold(after)
            assert enough and value >= threshold
            streak = [(now, value)] + [(w, v) for w, v, _, _ in self._streak(lambda v: v >= threshold)]
            assert len(streak) >= POLICY.enter_crops, f"entered {after} after {len(streak)} evaluations above"
            assert now - streak[-1][0] >= POLICY.enter_seconds - 1e-9, "entered before enter_seconds"
        if before in ALERTING and severity(after) < severity(before):
            bar = POLICY.threshold(before) - POLICY.hysteresis
            assert enough and value < bar, f"left {before} at {value} (bar {bar})"
            streak = [(now, value)] + [(w, v) for w, v, _, _ in self._streak(lambda v: v < bar)]
            assert now - streak[-1][0] >= POLICY.exit_seconds - 1e-9, "left before exit_seconds below the bar"
            if before == MANIPULATED:
                keeps = value >= POLICY.suspicious - POLICY.hysteresis
                assert after == (SUSPICIOUS if keeps else AUTHENTIC)
        if before in ALERTING and after not in ALERTING:
            assert after == AUTHENTIC, "only recovery (or the track's end) ends an alert"

    def _check_lifecycle_follows(self, verdict: str, event) -> None:
        if verdict in ALERTING:
            assert self.open_alert is not None, "an alerting verdict with no open alert"
        else:
            assert self.open_alert is None, "an alert stays open after the verdict recovered"
        if event is not None and event.type == "updated":
            history = self.events[event.alert_id]
            assert event.verdict != history[-2].verdict, "an update without a change of verdict"
            assert event.times["scored_at"] - history[-2].times["scored_at"] >= UPDATE_INTERVAL_S - 1e-9

    @invariant()
    def every_alert_but_the_open_one_is_closed_exactly_once(self):
        for alert_id, history in self.events.items():
            closes = [e for e in history if e.type == "closed"]
            if alert_id == self.open_alert:
                assert not closes
            else:
                assert len(closes) == 1 and history[-1].type == "closed"

    def teardown(self):
        # The daemon stops: the open alert closes, once.
        if self.open_alert is not None:
            alert = self.open_alert
            self.track_ends("shutdown")
            assert [e.type for e in self.events[alert]].count("closed") == 1


TrackMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestTrackModel = TrackMachine.TestCase
