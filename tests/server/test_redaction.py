"""MLflow's error messages lose whatever the client sent, however it was written (`redaction.py`).

The old scrubber looked for a message's tokens in the raw body: a value written with `\\u`
escapes, or compressed in a Parquet file, was not found there; a token of one or two
characters was never looked for. These hold each of those, message by message; the property
test over whole requests is test_no_echo.py.
"""

from __future__ import annotations

import json

import pytest

from server.codecs.redaction import MAX_MESSAGE_CHARS, ClientText, scrub

NAMES = frozenset({"feature_1", "feature_2", "dataframe_split", "columns", "data"})
CONVERT = "Error: 'ValueError(\"could not convert string to float: '{}'\")'"


def _document(text: str) -> ClientText:
    return ClientText.of_document(json.loads(text))


@pytest.mark.parametrize(
    ("client", "quoted"),
    [
        (_document(r'{"v": "\u0073ecretval"}'), "secretval"),  # escaped in the body
        (_document(r'{"v": "s\u00e9cret"}'), "sécret"),  # non-ASCII, escaped
        (ClientText.of_body(b"x"), "sécret"),  # non-ASCII, whatever the client sent
        (_document('{"v": "ab"}'), "ab"),  # two characters
        (_document('{"v": "x"}'), "x"),  # one
        (ClientText.of_strings(["zstd-compressed"]), "zstd-compressed"),  # a Parquet value
        (_document('{"v": "a\\u0000b"}'), "a\\x00b"),  # repr()'s escape, and the letters around it
    ],
)
def test_what_the_client_sent_is_replaced(client: ClientText, quoted: str) -> None:
    message = scrub(CONVERT.format(quoted), client, NAMES)
    assert quoted not in message
    assert message.startswith("Error: 'ValueError(\"could not convert string to float: '")


def test_the_message_keeps_its_words_and_names() -> None:
    client = _document('{"dataframe_split": {"columns": ["feature_2"], "data": [["secret-77"]]}}')
    message = "Failed to convert column feature_2 to type 'float64'. " + CONVERT.format("secret-77")
    assert scrub(message, client, NAMES) == (
        "Failed to convert column feature_2 to type 'float64'. "
        "Error: 'ValueError(\"could not convert string to float: '…'\")'"
    )


def test_a_feature_name_at_the_end_of_a_sentence_stays() -> None:
    client = ClientText.of_strings(["feature_2", "secret"])  # a Parquet file's names and values
    message = "Incompatible input types for column feature_2. Can not safely convert str to float64."
    assert scrub(message, client, NAMES) == message


def test_a_word_of_the_message_the_client_also_sent_is_replaced_too() -> None:
    """Better a message short of a word than one that repeats the client."""
    assert scrub("Failed to convert 'to'", _document('{"v": "to"}'), NAMES) == "Failed … convert '…'"


def test_escape_sequences_are_replaced_whatever_was_sent() -> None:
    assert scrub("value 'a\\x00b\\u00e9\\n'", ClientText.of_body(b""), NAMES) == "value 'a…b……'"


def test_a_value_cut_short_by_the_library_is_still_recognized() -> None:
    client = _document('{"v": "secretsecretsecretsecret"}')
    assert scrub("data 'secretsecr...' and 'secretsecr…'", client, NAMES) == "data '…' and '…'"


@pytest.mark.parametrize(("sent", "shown"), [("1e100", "1e+100"), ("100", "100.0"), ("2.50", "2.5")])
def test_a_number_is_recognized_however_it_is_spelled(sent: str, shown: str) -> None:
    client = _document(f'{{"v": [{sent}]}}')  # the number as the client spelled it
    assert scrub(f"bad value {shown} here", client, NAMES) == "bad value … here"


def test_tokens_the_client_did_not_send_stay() -> None:
    client = _document('{"v": "secret"}')
    assert (
        scrub("Model is missing inputs ['feature_1'].", client, NAMES)
        == "Model is missing inputs ['feature_1']."
    )
    assert scrub("30 columns passed, passed data had 2 columns", client, NAMES) == (
        "30 columns passed, passed data had 2 columns"
    )


def test_the_message_is_bounded_at_a_space() -> None:
    message = "word " * 1000
    scrubbed = scrub(message, ClientText.of_body(b""), NAMES)
    assert len(scrubbed) <= MAX_MESSAGE_CHARS + 2
    assert scrubbed.endswith("word …")


def test_whole_input_frames_are_cut_out() -> None:
    message = "Failed to enforce schema of data '   feature_1\n0  secret' with schema '...'. Error: boom"
    assert (
        scrub(message, ClientText.of_body(b""), NAMES) == "Failed to enforce the model signature. Error: boom"
    )


@pytest.mark.parametrize("quoted", ["';'", "'{}'", '"\'"', "', '"])
def test_a_quoted_value_of_punctuation_alone_is_replaced(quoted: str) -> None:
    """It holds no token to look up; MLflow's own messages quote no such thing."""
    message = scrub(f"could not convert string to float: {quoted}", ClientText.of_body(b""), NAMES)
    assert message == f"could not convert string to float: {quoted[0]}…{quoted[0]}"


def test_the_gap_between_two_quoted_words_is_not_a_quoted_value() -> None:
    message = "Got {'columns', 'data'}."
    assert scrub(message, ClientText.of_body(b""), NAMES) == message
