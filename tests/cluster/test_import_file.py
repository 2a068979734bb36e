"""`monitor streams import FILE`: a file that cannot be read is refused, naming the file and why."""

import pytest

from monitor.cluster.commands import read_streams
from monitor.errors import EXIT_BAD_INPUT, MonitorError


@pytest.mark.parametrize("text, message", [
    (None, "no such config file"),
    ("[[streams]\nid = 'a'\n", "not valid TOML"),
    ("[model]\nname = 'x'\n", "no [[streams]] tables"),
    ("streams = 3\n", "no [[streams]] tables"),
])
def test_unreadable_files_are_refused(tmp_path, text, message):
    path = tmp_path / "streams.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(MonitorError) as raised:
        read_streams(str(path))
    assert raised.value.exit_code == EXIT_BAD_INPUT
    assert str(path) in str(raised.value) and message in str(raised.value)


def test_tables_are_returned_as_written(tmp_path):
    path = tmp_path / "streams.toml"
    path.write_text('[[streams]]\nid = "lobby"\nurl = "rtsp://cam:${PW}@10.0.0.5/live"\n')
    assert read_streams(str(path)) == [{"id": "lobby", "url": "rtsp://cam:${PW}@10.0.0.5/live"}]
