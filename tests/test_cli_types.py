"""The argparse value types every command line shares."""

import argparse

import pytest

from occupancy.cli import non_negative_float, positive_float, positive_int


@pytest.mark.parametrize(
    "convert, good, bad",
    [
        (positive_int, {"1": 1, "100000": 100000}, ["0", "-3", "1.5", "x"]),
        (positive_float, {"0.5": 0.5, "60": 60.0}, ["0", "-1", "nan", "inf", "x"]),
        (non_negative_float, {"0": 0.0, "2.5": 2.5}, ["-0.1", "nan", "inf", "x"]),
    ],
)
def test_accepts_only_finite_values_in_range(convert, good, bad):
    for text, value in good.items():
        assert convert(text) == value
    for text in bad:
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            convert(text)
