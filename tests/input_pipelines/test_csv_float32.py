"""float32 CSV columns are the correctly rounded value of their decimal text.

The reader parses float32 columns as float64 and narrows them (faster in pyarrow); narrowing
rounds twice, so these tests compare against an exact oracle (Python's Fraction, rounded to the
nearest float32 by hand, ties to even) and against pyarrow's own direct float32 parse, on
random decimals, on values a hair away from float32 midpoints (where double rounding goes
wrong), on subnormals and on overflow.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from hypothesis import given, settings
from hypothesis import strategies as st

from input_pipelines import CsvDataset

_MAX = Fraction(float(np.finfo(np.float32).max))
_OVERFLOW = _MAX + Fraction(2) ** 103  # half a unit above the largest float32: rounds to inf


def _nearest_float32(text: str) -> np.float32:
    """The float32 nearest to the exact value of `text`, ties to even (IEEE round-to-nearest)."""
    x = Fraction(text)
    if abs(x) >= _OVERFLOW:
        return np.float32(math.copysign(math.inf, x))
    guess = np.float32(float(x))  # within one float32 step of the answer
    with np.errstate(over="ignore"):  # the step past the largest float32 is inf, dropped below
        candidates = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
    candidates = [c for c in candidates if np.isfinite(c)]

    def key(c: np.float32) -> tuple[Fraction, int]:
        return abs(Fraction(float(c)) - x), int(c.view(np.uint32)) & 1  # odd mantissa loses a tie

    best = min(candidates, key=key)
    return np.float32(-0.0 if text.startswith("-") else 0.0) if best == 0 else best  # Fraction has no -0


def _decimal_text(x: Fraction, places: int) -> str:
    """The exact decimal text of `x`, whose denominator divides 10**places."""
    scaled = x * 10**places
    assert scaled.denominator == 1
    digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
    return ("-" if x < 0 else "") + digits[:-places] + "." + digits[-places:]


def _near_midpoint(bits: int, above: bool, extra_places: int) -> str:
    """Text a hair above or below the midpoint between float32 `bits` and the next one up."""
    a = np.array([bits], np.uint32).view(np.float32)[0]
    b = np.nextafter(a, np.float32(np.inf))
    mid = (Fraction(float(a)) + Fraction(float(b))) / 2
    places = mid.denominator.bit_length() - 1 + extra_places  # mid is dyadic: finite decimal
    hair = Fraction(1, 10**places)
    return _decimal_text(mid + hair if above else mid - hair, places)


def _read_float32(tmp_path, texts: list[str], block_size: int = 4 << 20) -> np.ndarray:
    path = tmp_path / "x.csv"
    path.write_text("".join(f"{t}\n" for t in texts))
    out = list(CsvDataset(str(path), column_names=["x"], column_defaults=[0.0], block_size=block_size)
               .batch(len(texts)))[0]
    assert out["x"].dtype == np.float32
    return out["x"]


def _pyarrow_float32(texts: list[str]) -> np.ndarray:
    data = "".join(f"{t}\n" for t in texts).encode()
    table = pacsv.read_csv(pa.py_buffer(data), pacsv.ReadOptions(column_names=["x"]),
                           convert_options=pacsv.ConvertOptions(column_types={"x": pa.float32()}))
    return table.column("x").to_numpy()


def _assert_same_float32(got: np.ndarray, want: list[np.float32] | np.ndarray) -> None:
    np.testing.assert_array_equal(np.asarray(got).view(np.uint32), np.asarray(want, np.float32).view(np.uint32))


def test_double_rounding_counterexample_is_exact(tmp_path):
    # 1 + 2**-24 is the midpoint between 1 and the next float32; this text is above it by
    # 1e-29, so the answer rounds up, while float64 first rounds to the midpoint itself and
    # narrowing then ties to even, down to 1.0.
    text = "1.00000005960464477539062500001"
    assert np.float32(np.float64(text)) == np.float32(1.0)  # the naive narrowing is wrong
    up = np.nextafter(np.float32(1), np.float32(2))
    _assert_same_float32(_read_float32(tmp_path, ["0.5", text, "2.25"]), [0.5, up, 2.25])


# sign, exponent (0: subnormal), mantissa; below the largest float32 so the next one is finite
_finite_float32_bits = st.builds(lambda sign, exponent, mantissa: sign << 31 | exponent << 23 | mantissa,
                                 st.integers(0, 1), st.integers(0, 0xFE), st.integers(0, 2**23 - 2))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_finite_float32_bits, st.booleans(), st.integers(1, 12)), min_size=1, max_size=40))
def test_values_near_float32_midpoints(tmp_path_factory, cases):
    texts = [_near_midpoint(bits, above, extra) for bits, above, extra in cases]
    got = _read_float32(tmp_path_factory.mktemp("mid"), texts)
    _assert_same_float32(got, [_nearest_float32(t) for t in texts])
    _assert_same_float32(got, _pyarrow_float32(texts))


_decimals = st.builds(lambda sign, digits, exp: f"{sign}{digits}e{exp}", st.sampled_from(["", "-"]),
                      st.integers(0, 10**17), st.integers(-60, 40))


@settings(max_examples=60, deadline=None)
@given(st.lists(_decimals | st.floats(width=32, allow_nan=False, allow_infinity=False).map(repr), min_size=1, max_size=60))
def test_random_decimals_subnormals_and_overflow(tmp_path_factory, texts):
    got = _read_float32(tmp_path_factory.mktemp("dec"), texts)
    _assert_same_float32(got, [_nearest_float32(t) for t in texts])
    _assert_same_float32(got, _pyarrow_float32(texts))


def test_only_blocks_with_a_midpoint_are_parsed_again_and_all_stay_exact(tmp_path):
    # Many small blocks; one of them holds a value that float64 rounds onto a midpoint.
    rng = np.random.default_rng(0)
    texts = [f"{v:.6f}" for v in rng.uniform(-74.1, -73.7, 3000)]
    texts[1700] = "1.00000005960464477539062500001"
    got = _read_float32(tmp_path, texts, block_size=2048)
    _assert_same_float32(got, [_nearest_float32(t) for t in texts])


def test_missing_values_take_the_default_and_skipped_rows_count_once(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("1.5,1.00000005960464477539062500001\n2.5\n,7.25\n3.5,1e-40\n")
    it = iter(CsvDataset(str(path), column_names=["a", "b"], column_defaults=[9.0, 0.0], on_error="skip")
              .batch(10))
    out = next(it)
    _assert_same_float32(out["a"], [1.5, 9.0, 3.5])
    _assert_same_float32(out["b"], [np.nextafter(np.float32(1), np.float32(2)), 7.25,
                                    _nearest_float32("1e-40")])
    assert it.skipped_rows == 1  # the short row, though the block was parsed twice
