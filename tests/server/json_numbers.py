"""JSON number texts that the fast readers must read exactly as Python's `json` and `float` do:
signed zeros, exponents, underflow, integers past 2**53, the lowest 64-bit integer, the smallest
normal double, more digits than a double holds."""

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
