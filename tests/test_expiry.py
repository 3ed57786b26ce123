"""expire_time -> wire xt: the one mapping every client call uses."""

from __future__ import annotations

import datetime
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kt.expiry import NO_EXPIRY_XT, XT_MAX, from_stored_xt, to_binary_xt, to_xt

UTC = datetime.timezone.utc


def test_none_means_never():
    assert to_xt(None) is None
    assert to_binary_xt(None) == NO_EXPIRY_XT == 0x7FFFFFFFFFFFFFFF


@given(st.integers(min_value=1, max_value=XT_MAX))
def test_seconds_are_relative(seconds):
    assert to_xt(seconds) == seconds
    assert to_binary_xt(seconds) == seconds


@given(st.floats(min_value=1e-6, max_value=1e9))
def test_fractions_round_up_so_records_never_expire_early(seconds):
    xt = to_xt(seconds)
    assert xt == math.ceil(seconds)
    assert xt >= seconds


def test_timedelta_is_relative():
    assert to_xt(datetime.timedelta(minutes=2)) == 120
    assert to_xt(datetime.timedelta(milliseconds=1)) == 1


def test_aware_datetime_is_absolute_negative():
    moment = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    assert to_xt(moment) == -1893456000


def test_naive_datetime_is_taken_as_utc():
    assert to_xt(datetime.datetime(2030, 1, 1)) == -1893456000


def test_other_timezones_are_converted():
    tz = datetime.timezone(datetime.timedelta(hours=2))
    assert to_xt(datetime.datetime(2030, 1, 1, 2, 0, tzinfo=tz)) == -1893456000


def test_huge_values_are_clamped_to_never():
    assert to_xt(10**30) == XT_MAX


@pytest.mark.parametrize("bad", [0, -1, -0.5, float("nan"), float("inf")])
def test_non_positive_or_non_finite_seconds_are_rejected(bad):
    with pytest.raises(ValueError, match="expire_time"):
        to_xt(bad)


def test_datetime_before_epoch_is_rejected():
    with pytest.raises(ValueError, match="1970"):
        to_xt(datetime.datetime(1960, 1, 1))


@pytest.mark.parametrize("bad", [True, "10", b"10", [10]])
def test_wrong_types_are_rejected(bad):
    with pytest.raises(TypeError, match="expire_time"):
        to_xt(bad)


def test_stored_xt_back_to_datetime():
    assert from_stored_xt(XT_MAX) is None
    assert from_stored_xt(NO_EXPIRY_XT) is None
    assert from_stored_xt(1893456000) == datetime.datetime(2030, 1, 1, tzinfo=UTC)
