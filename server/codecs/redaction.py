"""MLflow's error messages, freed of anything the client sent.

MLflow, pandas and pyarrow quote input into their messages ("could not convert string to float:
'…'", "Got {'columns', '…'}"). The README promises that no error echoes the client's data, so
every MLflow message is rewritten before it leaves:

- whole input frames that MLflow quotes are cut out (`redact`);
- the message is cut to `MAX_MESSAGE_CHARS`, at a space, so no token is left half-checked;
- every escape sequence (`\\x00`, `\\u00e9`, `\\n`: how repr() writes what it cannot show) and every
  token holding a non-ASCII or control character is replaced by `…` outright: MLflow's own words
  are plain ASCII;
- every other token (a run of characters between ASCII spaces and punctuation) is replaced when the
  client sent it: when it is a whole token of the client's text, the text MLflow's parsers saw
  (`ClientText`: the decoded JSON document with its escapes undone, the CSV text, the Parquet
  file's decoded names and values), however short it is. A token MLflow cut short (`abc...`)
  counts when it begins a client token; a number counts when any common spelling of its value
  (`1e+100`, `1e100`, `100`, `100.0`) is one;
- a quoted value of ASCII punctuation and spaces alone (`';'`, `'{}'`), which holds no token to
  look up, is replaced whoever wrote it: MLflow's own messages quote no such thing;
- feature names stay: they say where the problem is, and they are not data (nor are the
  protocol's keys where the protocol puts them, which `ClientText` leaves out).

So a word of MLflow's own that the client also happened to send (say, a value `to`) is replaced
too: a message may lose a word, never leak one.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable
from typing import Any

import orjson

MAX_MESSAGE_CHARS = 1000
REDACTED = "…"

# ASCII spaces and punctuation end a token; `.`, `-`, `_`, `+` and `/` do not (`float64`,
# `1e-5`, `feature_1`, `utf-8`, `text/csv` stay whole).
_BOUNDARY = " \t\n\r\x0b\x0c,;:{}[]()\"'`=<>|\\"
_CONTROL = "".join(map(chr, range(0x20))) + "\x7f"
_ESCAPE = r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|N\{[^}]*\}|.)"
_MESSAGE_PART = re.compile(rf"({_ESCAPE})|([^{re.escape(_BOUNDARY)}]+)", re.DOTALL)
_SAFE_TOKEN = re.compile(r"[\x21-\x7e]+")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# In the client's text, control characters end a token too (they join the values gathered).
_CLIENT_BOUNDARY = re.escape(_BOUNDARY + _CONTROL)
# orjson writes quotes, backslashes and control characters in strings as escapes; undone to a
# boundary, the strings' tokens are the ones MLflow saw.
_JSON_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|.)")
_SEPARATOR = "\n"

# A quoted value of nothing but ASCII punctuation and spaces: opened after a space, an opening
# bracket or a separator, closed before anything but a letter (so never the gap between two
# quoted words, `'a', 'b'`, nor the quotes that close one and what follows, `'…'")`).
_QUOTED_PUNCTUATION = re.compile(r"""(?:^|(?<=[\s(\[{,:=]))(['"])((?:(?!\1)[ !-/:-@\[-`{-~])+)\1(?!\w)""")

# MLflow quotes whole input frames and values into some messages; none of it may leave the server.
_ENFORCE = re.compile(r"Failed to enforce schema of data .*? with schema .*?\. Error: ", re.DOTALL)
_CONVERT = re.compile(r"Failed to convert data `.*?` to type", re.DOTALL)


def redact(message: str) -> str:
    """Drop the parts of an MLflow message that repeat the request's input frame."""
    message = _ENFORCE.sub("Failed to enforce the model signature. Error: ", message)
    return _CONVERT.sub("Failed to convert the input to type", message)


class ClientText:
    """What the client sent, as MLflow's parsers read it: one string to look tokens up in.

    Built only when an error message needs checking, from whatever the request got as far as:
    the decoded JSON document, the CSV text, the Parquet file's names and values, or failing
    those the body's bytes.
    """

    def __init__(self, text: str) -> None:
        self._text = text

    @classmethod
    def of_body(cls, body: bytes) -> ClientText:
        return cls(body.decode("utf-8", errors="replace"))

    @classmethod
    def of_document(cls, document: Any) -> ClientText:
        try:
            dumped = orjson.dumps(document).decode()
        except TypeError:  # an integer beyond 64 bits, which orjson does not write
            dumped = json.dumps(document, ensure_ascii=False)
        return cls(_JSON_ESCAPE.sub(_SEPARATOR, dumped))

    @classmethod
    def of_strings(cls, strings: Iterable[str]) -> ClientText:
        out = io.StringIO()
        for string in strings:
            out.write(string)
            out.write(_SEPARATOR)
        return cls(out.getvalue())

    def holds(self, token: str, *, prefix: bool = False, suffix: bool = False) -> bool:
        """Whether `token` is a whole token of the text (or begins one, or ends one)."""
        if token not in self._text:
            return False
        before = "" if suffix else rf"(?<![^{_CLIENT_BOUNDARY}])"
        after = "" if prefix else rf"(?![^{_CLIENT_BOUNDARY}])"
        return re.search(before + re.escape(token) + after, self._text) is not None

    def sent(self, token: str, *, prefix: bool = False, suffix: bool = False) -> bool:
        """Whether the client sent `token` (a number: any common spelling of its value)."""
        return any(self.holds(form, prefix=prefix, suffix=suffix) for form in _spellings(token))


def _spellings(token: str) -> list[str]:
    """`token`, and when it is a number the other ways a client or a library writes its value."""
    forms = [token]
    if _NUMBER.fullmatch(token):
        value = float(token)
        forms += [repr(value), orjson.dumps(value).decode()]
        if value.is_integer() and abs(value) < 2**63:
            forms += [str(int(value)), f"{int(value)}.0"]
    return list(dict.fromkeys(forms))


def _bounded(message: str) -> str:
    """One line, at most MAX_MESSAGE_CHARS, cut at a space so that no token is left in part."""
    message = " ".join(message.split())
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    cut = message.rfind(" ", 0, MAX_MESSAGE_CHARS)
    return (message[:cut] if cut > 0 else "") + f" {REDACTED}"


def scrub(message: str, client: ClientText, allowed: frozenset[str]) -> str:
    """`message` with every escape, every token that is not plain printable ASCII and every token
    the client sent replaced by `…`; the names in `allowed` stay."""
    message = _bounded(redact(message))

    def replace(match: re.Match[str]) -> str:
        token = match[2]
        if token is None:  # an escape sequence: repr() of something the client sent
            return REDACTED
        core = token.strip(".")  # a sentence's full stop is not part of a name
        if token in allowed or core in allowed:
            return token
        if not _SAFE_TOKEN.fullmatch(token):
            return REDACTED
        if not core:
            return token
        cut_after, cut_before = token.endswith("..."), token.startswith("...")  # `…` is not ASCII
        if client.sent(token) or client.sent(core, prefix=cut_after, suffix=cut_before):
            return REDACTED + token[len(token.rstrip(".")) :] if not cut_after else REDACTED
        return token

    return _QUOTED_PUNCTUATION.sub(rf"\1{REDACTED}\1", _MESSAGE_PART.sub(replace, message))
