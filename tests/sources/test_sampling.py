"""RateSampler: the one sampling schedule of every source."""

from monitor.sources.sampling import RateSampler


def test_rate_sampler_keeps_the_rate_and_restarts_after_gaps():
    sampler = RateSampler(fps=2)  # every 0.5 s
    due = [t / 10 for t in range(0, 21) if sampler.due(t / 10)]  # frames every 0.1 s
    assert due == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert sampler.due(5.0)  # a gap: due at once,
    assert not sampler.due(5.2) and sampler.due(5.5)  # then on the new schedule, not a catch-up burst
