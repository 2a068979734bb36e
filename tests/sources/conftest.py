import logging

import pytest


@pytest.fixture(autouse=True)
def every_state_change_is_one_the_table_allows(caplog):
    """Every source test doubles as a check of the state table: a change it does not allow is logged as a bug."""
    caplog.set_level(logging.INFO)
    yield
    impossible = [r.getMessage() for r in caplog.records if "impossible stream state change" in r.getMessage()]
    assert not impossible, impossible
