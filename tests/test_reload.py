"""Reload planning: which changed keys apply at once, which wait for a restart (pure, no daemon)."""

from monitor.config import parse
from monitor.reload import plan_reload


def test_changes_are_listed_key_by_key_masked_and_restart_keys_keep_their_running_values():
    old = parse({"model": {"path": "/m/a.safetensors"}, "http": {"port": 8080, "token": "old-secret-token"},
                 "verdict": {"suspicious": 0.9}, "streams": [{"id": "a", "url": "rtsp://u:pw-old-1@h/x"}]})
    new = parse({"model": {"path": "/m/b.safetensors"}, "http": {"port": 9090, "token": "new-secret-token"},
                 "verdict": {"suspicious": 0.8}, "window": {"seconds": 5},
                 "streams": [{"id": "a", "url": "rtsp://u:pw-new-2@h/x"}, {"id": "b", "url": "whip"}]})
    plan = plan_reload(old, new)
    changes = {c.key: c for c in plan.changes}
    assert set(changes) == {"model.path", "http.port", "http.token", "verdict.suspicious", "window.seconds",
                            "streams.a.url", "streams.b.id", "streams.b.url", "streams.b.token", "streams.b.sampling",
                            "streams.b.window", "streams.b.verdict", "streams.b.record", "streams.b.drift_baseline",
                            "streams.b.model", "streams.b.shadow"}
    assert plan.needs_restart == ["http.port", "model.path"]
    assert changes["http.token"].old == changes["http.token"].new == "***"  # changed, never shown
    assert changes["streams.a.url"].new == "rtsp://u:***@h/x"
    running = plan.running
    assert running.model.path == "/m/a.safetensors" and running.http.port == 8080  # until a restart
    assert running.http.token == "new-secret-token" and running.verdict.suspicious == 0.8  # at once
    assert [s.id for s in running.streams] == ["a", "b"]


def test_an_unchanged_file_changes_nothing():
    config = parse({"verdict": {"suspicious": 0.5}})
    assert plan_reload(config, parse({"verdict": {"suspicious": 0.5}})).changes == []
