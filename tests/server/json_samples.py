"""Samples the body readers' tests share.

`NUMBER_TEXTS`: JSON number texts that the fast readers must read exactly as Python's `json` and
`float` do: signed zeros, exponents, underflow, integers past 2**53, the lowest 64-bit integer,
the smallest normal double, more digits than a double holds.

`ODD_VALUES`: what a client may put where a number belongs, for the property tests: any float
(NaN and infinities too, which Python's json writes as bare words), integers far past 64 bits,
booleans, null, strings, arrays.
"""

from hypothesis import strategies as st

NUMBER_TEXTS = [
    "-0",
    "-0.0",
    "1E2",
    "1e-400",
    "9007199254740993",
    "-9223372036854775808",
    "2.2250738585072011e-308",
    "0.1",
    "123456789.123456789e-3",
]

ODD_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.lists(st.floats(), max_size=2),
)
