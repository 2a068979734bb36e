"""Credential redaction: URL user info up to the last '@', secret query parameters, and remembered secrets."""

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.redact import redact, remember_secret, url_password

HOSTILE = ["S3cret@Pa55", "a/b@c", "x:y:z", "p%40ss", "frag#ment", "que?ry", "all@/:%#?of-them", "trailing@"]


@pytest.mark.parametrize("password", HOSTILE)
@pytest.mark.parametrize("scheme", ["rtsp", "rtsps", "redis", "rediss", "rtmp", "https", "whep+https"])
def test_hostile_passwords_are_hidden_up_to_the_last_at(scheme, password):
    for written in (password, quote(password, safe="")):
        url = f"{scheme}://viewer:{written}@cam.example:554/live?x=1"
        shown = redact(f"error opening {url}: refused")
        assert shown == f"error opening {scheme}://viewer:***@cam.example:554/live?x=1: refused"
        assert url_password(url) == written


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc"),
                                      blacklist_characters="'\"<>`"), min_size=1, max_size=40))
def test_no_password_survives_in_a_url(password):
    url = f"rtsp://user:{password}@192.0.2.1/stream"
    assert redact(url) == "rtsp://user:***@192.0.2.1/stream"
    assert redact(repr(url)) == "'rtsp://user:***@192.0.2.1/stream'"


def test_token_only_user_info_query_secrets_and_plain_text():
    assert redact("rtsp://t0ken@host/x") == "rtsp://***@host/x"
    assert redact("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact("http://h/live.m3u8?token=abc&b=1") == "http://h/live.m3u8?token=***&b=1"
    assert redact("rtsp://cam.local/live and user@example.org") == "rtsp://cam.local/live and user@example.org"
    assert url_password("rtsp://cam.local/live") is None


def test_remembered_secrets_are_hidden_in_any_text_and_shape():
    remember_secret("Remembered-S3cret@x/y")
    text = redact("libfoo said: auth Remembered-S3cret@x/y failed (Remembered-S3cret%40x%2Fy)")
    assert "Remembered" not in text and text.count("***") == 2
    remember_secret("abc")  # too short to replace in free text without garbling it
    assert redact("abcdef") == "abcdef"
