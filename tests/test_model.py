"""The conversation schema: one source of truth, the shipped file and the decoder agree."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.model import conversation_json_schema, decode_conversation
from tests.conftest import conversation


def _shipped() -> dict[str, Any]:
    text = resources.files("exporter").joinpath("schemas/conversation.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_shipped_schema_matches_the_structs() -> None:
    """exporter/schemas/conversation.schema.json is regenerated (python -m exporter.model)."""
    assert _shipped() == conversation_json_schema()


def test_spec_example_decodes() -> None:
    """The example conversation of docs/api.md is valid."""
    decoded = decode_conversation(json.dumps(conversation()).encode())
    assert decoded.id == "c-7f3a"
    assert decoded.final_answer() == "It ships tomorrow."
    assert decoded.usage is not None
    assert decoded.usage.total_tokens == 970


def _accepts_msgspec(document: Any) -> bool:
    try:
        decode_conversation(json.dumps(document).encode())
    except (msgspec.ValidationError, msgspec.DecodeError):
        return False
    return True


_VALIDATOR = jsonschema.Draft202012Validator(
    _shipped(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)

_values = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "tool", "bot"])},
        optional={
            "content": st.none() | st.text(max_size=5) | st.integers(),
            "error": st.booleans() | st.integers(0, 1),
        },
    ),
    max_size=3,
)
_documents = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=3) | st.integers(),
        "agent": st.text(max_size=3) | st.none(),
        "messages": _messages | _values,
        "signals": st.dictionaries(st.text(max_size=2), _values, max_size=2) | _values,
        "scores": st.dictionaries(st.text(max_size=2), st.integers(0, 5), max_size=2) | _values,
        "usage": st.fixed_dictionaries(
            {}, optional={"input_tokens": st.integers(-2, 5), "cost_usd": st.floats(-1, 1)}
        ),
    },
)


@settings(max_examples=400, deadline=None)
@given(_documents)
def test_decoder_and_shipped_schema_agree(document: dict[str, Any]) -> None:
    """What the fast decoder accepts is exactly what the shipped JSON Schema accepts."""
    assert _accepts_msgspec(document) == _VALIDATOR.is_valid(document)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"id": ""}, "$.id"),
        ({"messages": []}, "$.messages"),
        ({"messages": [{"role": "bot"}]}, "$.messages[0].role"),
        ({"usage": {"input_tokens": -1}}, "$.usage.input_tokens"),
        ({"scores": {"x": "high"}}, "$.scores"),
    ],
)
def test_errors_name_the_field(change: dict[str, Any], where: str) -> None:
    """Validation errors carry the JSON path of the offending field."""
    with pytest.raises(
        msgspec.ValidationError, match=r"at `" + where.replace("[", r"\[").replace("$", r"\$")
    ):
        decode_conversation(json.dumps(conversation(**change)).encode())
