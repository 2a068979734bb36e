"""Windows and verdicts: exact transitions for hand-made sequences, and properties over random ones."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from monitor.scoring import (
    AUTHENTIC,
    INSUFFICIENT,
    MANIPULATED,
    NO_FACE,
    SUSPICIOUS,
    TrackWindow,
    VerdictPolicy,
    VerdictState,
    WindowPolicy,
    most_severe,
    step,
)

POLICY = VerdictPolicy(suspicious=0.8, manipulated=0.9, hysteresis=0.1, enter_crops=3, enter_seconds=1.0,
                       exit_seconds=2.0)


def run(statistics, policy=POLICY, dt=0.5, enough=True):
    """Evaluate a sequence of window statistics every `dt` seconds; return the verdict after each."""
    state, verdicts = VerdictState(), []
    for i, value in enumerate(statistics):
        state = step(state, value, enough, i * dt, policy)
        verdicts.append(state.verdict)
    return verdicts


def test_entering_needs_crops_and_seconds():
    # 3 evaluations above 0.8 spanning 1.0 s: enters on the third.
    assert run([0.85, 0.85, 0.85, 0.85]) == [AUTHENTIC, AUTHENTIC, SUSPICIOUS, SUSPICIOUS]
    # Enough crops but not enough time (dt 0.1 s): enters only once a second has passed.
    assert run([0.85] * 12, dt=0.1).index(SUSPICIOUS) == 10
    # An interruption restarts the count.
    assert run([0.85, 0.85, 0.5, 0.85, 0.85, 0.85]) == [AUTHENTIC] * 5 + [SUSPICIOUS]


def test_manipulated_needs_its_own_persistence():
    verdicts = run([0.85, 0.85, 0.85, 0.95, 0.95, 0.95, 0.95])
    assert verdicts == [AUTHENTIC, AUTHENTIC, SUSPICIOUS, SUSPICIOUS, SUSPICIOUS, MANIPULATED, MANIPULATED]


def test_leaving_needs_hysteresis_and_time():
    enter = [0.85] * 3
    # 0.75 is below 0.8 but not below 0.8 - 0.1: stays suspicious forever.
    assert set(run(enter + [0.75] * 20)[3:]) == {SUSPICIOUS}
    # 0.6 is below 0.7: leaves after 2 s (4 evaluations at 0.5 s), on the fifth.
    assert run(enter + [0.6] * 6)[3:] == [SUSPICIOUS] * 4 + [AUTHENTIC] * 2
    # A single return above the bar restarts the exit clock.
    assert run(enter + [0.6, 0.6, 0.6, 0.75, 0.6, 0.6, 0.6, 0.6, 0.6])[3:] == [SUSPICIOUS] * 8 + [AUTHENTIC]


def test_manipulated_steps_down_to_suspicious_with_hysteresis():
    verdicts = run([0.95] * 3 + [0.78] * 6)
    assert verdicts[2] == MANIPULATED
    assert verdicts[-1] == SUSPICIOUS  # 0.78 < 0.9 - 0.1, but >= 0.8 - 0.1


def test_evidence_states():
    assert run([None]) == [NO_FACE]
    assert run([0.5], enough=False) == [INSUFFICIENT]
    # A gap in evidence does not end an alert.
    state = VerdictState()
    for i in range(3):
        state = step(state, 0.85, True, i * 0.5, POLICY)
    assert step(state, None, False, 2.0, POLICY).verdict == SUSPICIOUS


def test_stream_verdict_is_most_severe_track():
    assert most_severe([AUTHENTIC, SUSPICIOUS, INSUFFICIENT]) == SUSPICIOUS
    assert most_severe([]) == NO_FACE


def test_policy_validation():
    with pytest.raises(ValidationError, match="manipulated threshold must be >= suspicious"):
        VerdictPolicy(suspicious=0.9, manipulated=0.8)
    with pytest.raises(ValidationError):
        VerdictPolicy(suspicious=1.5)
    with pytest.raises(ValidationError):
        WindowPolicy(seconds=-1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=80))
def test_properties_over_random_sequences(values):
    verdicts = run(values)
    for i, verdict in enumerate(verdicts):
        if verdict != AUTHENTIC and (i == 0 or verdicts[i - 1] == AUTHENTIC):
            # Entered an alert level: the last enter_crops statistics were above its threshold, 1 s apart.
            threshold = POLICY.threshold(verdict)
            assert i >= 2 and all(v >= threshold for v in values[i - 2:i + 1])
        if verdict == AUTHENTIC and i and verdicts[i - 1] != AUTHENTIC:
            # Left an alert level: the last exit_seconds of statistics were below the exit bar.
            bar = POLICY.threshold(verdicts[i - 1]) - POLICY.hysteresis
            assert all(v < bar for v in values[i - 4:i + 1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.71, 0.89), min_size=10, max_size=80))
def test_no_flapping_inside_the_hysteresis_band(values):
    # Once suspicious, values inside (0.7, 0.9) can never leave it or escalate it.
    verdicts = run([0.85] * 3 + values)
    assert set(verdicts[2:]) == {SUSPICIOUS}


def test_window_by_time_and_count_mean_and_median():
    window = TrackWindow(WindowPolicy(seconds=10, max_crops=4, statistic="mean"))
    for t, p in [(0, 0.1), (1, 0.2), (2, 0.3), (3, 0.4), (4, 0.9)]:
        window.add(t, p)
    stats = window.stats(now=4)
    assert stats.crops == 4 and stats.value == pytest.approx((0.2 + 0.3 + 0.4 + 0.9) / 4)
    assert (stats.first_frame, stats.last_frame, stats.span_s) == (1, 4, 3)
    assert window.stats(now=12.5).crops == 2  # frames at 3 and 4 remain
    median = TrackWindow(WindowPolicy(statistic="median"))
    for t, p in enumerate([0.1, 0.9, 0.2]):
        median.add(t, p)
    assert median.stats(now=3).value == 0.2
    window.skip(11, "low_quality")
    window.skip(12, "low_quality")
    assert window.stats(now=12.5).skipped == {"low_quality": 2}
    assert TrackWindow(WindowPolicy()).stats(now=0).value is None
