"""Outline and section hygiene: the model's output is never trusted as it comes."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from reportsvc.domain import JobOptions
from reportsvc.errors import StepError
from reportsvc.pipeline.outline import (
    clean_title,
    is_placeholder,
    normalize_outline,
    outline_max_tokens,
    parse_outline,
    roman,
)
from reportsvc.pipeline.prompts import (
    OUTLINE_JSON_SCHEMA,
    OUTLINE_SCHEMA,
    outline_messages,
    outline_response_format,
    section_messages,
)
from reportsvc.pipeline.text import clean_section, comparable, section_problem, strip_reasoning


def test_roman_numerals() -> None:
    assert [roman(n) for n in (1, 2, 4, 9, 12, 14, 19, 20, 40)] == [
        "I", "II", "IV", "IX", "XII", "XIV", "XIX", "XX", "XL",
    ]  # fmt: skip


def test_outline_is_numbered_by_us() -> None:
    titles = normalize_outline(["Rise", "Fall"], wanted=5, max_title_length=80)
    assert titles == ["I. Rise", "II. Fall"]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("1. The Republic", "The Republic"),
        ("IV) The Principate", "The Principate"),
        ("Section 3: Trade", "Trade"),
        ("- Bullet point", "Bullet point"),
        ("## Heading", "Heading"),
        ("2 - Dash", "Dash"),
        ("1. I. Doubly numbered", "Doubly numbered"),
        ('"Quoted"', "Quoted"),
        ("  spaced \n  out  ", "spaced out"),
        # Words that only look like numbering stay.
        ("Civil: War and Peace", "Civil: War and Peace"),
        ("1848: Revolutions", "1848: Revolutions"),
        ("Mix of cultures", "Mix of cultures"),
        ("I, Claudius", "I, Claudius"),
    ],
)
def test_numbering_the_model_added_is_removed(raw: str, clean: str) -> None:
    assert clean_title(raw, 200) == clean


def test_duplicate_titles_are_dropped_ignoring_case_and_spacing() -> None:
    titles = normalize_outline(
        ["Origins", "ORIGINS", " origins ", "1. Origins", "Legacy"], wanted=5, max_title_length=80
    )
    assert titles == ["I. Origins", "II. Legacy"]


def test_blank_titles_are_dropped() -> None:
    assert normalize_outline(["", "   ", "Real"], wanted=3, max_title_length=80) == ["I. Real"]


def test_too_many_titles_are_cut_to_the_number_wanted() -> None:
    titles = normalize_outline([f"Era {i}" for i in range(100)], wanted=6, max_title_length=80)
    assert len(titles) == 6
    assert titles[-1] == "VI. Era 5"


def test_absurdly_long_titles_are_cut_at_a_word_boundary() -> None:
    title = clean_title("word " * 200, 60)
    assert len(title) <= 60
    assert title.endswith("…")
    assert title.removesuffix("…").split() == ["word"] * len(title.removesuffix("…").split())


def test_empty_outline_normalises_to_nothing() -> None:
    assert normalize_outline([], wanted=5, max_title_length=80) == []


@given(st.lists(st.text(max_size=300), max_size=60), st.integers(1, 20))
def test_normalised_outlines_are_always_distinct_bounded_and_numbered(
    raw: list[str], wanted: int
) -> None:
    titles = normalize_outline(raw, wanted=wanted, max_title_length=120)
    assert len(titles) <= wanted
    assert len(set(titles)) == len(titles)
    bare = [t.split(". ", 1)[1] for t in titles]
    assert len({b.casefold() for b in bare}) == len(bare)
    for i, title in enumerate(titles):
        assert title.startswith(f"{roman(i + 1)}. ")
        assert bare[i].strip() == bare[i]
        assert bare[i]
        assert len(bare[i]) <= 120


def test_parse_outline_accepts_the_schema_shape() -> None:
    assert parse_outline('{"sections": ["A", "B"]}') == ["A", "B"]


def test_a_numbered_or_bulleted_list_is_the_last_resort() -> None:
    assert parse_outline("Sure!\n1. Rise\n2. Fall\n") == ["Rise", "Fall"]
    assert parse_outline("- Rise\n- Fall") == ["Rise", "Fall"]
    assert parse_outline("<think>x</think>I) Rise\nII) Fall") == ["Rise", "Fall"]


def test_parse_outline_tolerates_fences_and_reasoning() -> None:
    assert parse_outline('<think>hmm</think>\n```json\n{"sections": ["A"]}\n```') == ["A"]


@pytest.mark.parametrize(
    "content",
    [
        '{"sections": ["unterminated',
        '{"outline": ["A"]}',
        '{"sections": "A, B"}',
        '{"sections": [1, 2]}',
        '{"sections": ["A"], "extra": 1}',
        "Here is an outline with no list in it.",
        "",
    ],
)
def test_malformed_outlines_are_retryable_errors(content: str) -> None:
    with pytest.raises(StepError) as caught:
        parse_outline(content)
    assert caught.value.retryable
    assert "outline" in caught.value.message


def _objects(schema: object) -> list[dict[str, object]]:
    found = []
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            found.append(schema)
        for value in schema.values():
            found.extend(_objects(value))
    return found


def test_outline_schema_is_strict_mode_compatible() -> None:
    assert OUTLINE_JSON_SCHEMA["type"] == "json_schema"
    assert OUTLINE_JSON_SCHEMA["json_schema"]["strict"] is True
    assert OUTLINE_SCHEMA["type"] == "object"
    for obj in _objects(OUTLINE_SCHEMA):
        assert obj["additionalProperties"] is False
        assert set(obj["required"]) == set(obj["properties"])  # type: ignore[call-overload]


def test_section_prompt_carries_topic_outline_and_position() -> None:
    outline = ["I. Rise", "II. Peak", "III. Fall"]
    messages = section_messages("Rome", outline, 1, JobOptions(sections=3))
    system, user = messages[0].content, messages[1].content
    assert "Rome" not in system  # the topic is data, never instructions
    assert '"Rome"' in user
    for title in outline:
        assert title in user
    assert 'section 2 of 3: "II. Peak"' in user


def test_reasoning_tags_are_stripped() -> None:
    assert strip_reasoning("<think>plan\nmore</think>Answer") == "Answer"
    assert strip_reasoning("<THINKING>x</THINKING> A <think>y</think>B") == " A B"
    assert strip_reasoning("<think>cut off before answering") == ""


def test_section_text_is_trimmed_and_a_repeated_title_dropped() -> None:
    assert clean_section("\n\n## II. Peak\n\nBody text.\n", "II. Peak") == "Body text."
    assert clean_section("**Peak**\nBody", "II. Peak") == "Body"
    assert clean_section("Peak performance was reached.", "II. Peak") == (
        "Peak performance was reached."
    )
    assert clean_section("<think>x</think>   ", "II. Peak") == ""


@pytest.mark.parametrize(
    "title",
    ["Title 1", "second title", "The First Title", "Section III", "Part One", "sections",
     "<title>", "string", ", ", "...", "Tides", "The tides", "TIDES!"],
)  # fmt: skip
def test_placeholder_titles_and_the_bare_topic_are_refused(title: str) -> None:
    assert is_placeholder(title, "Tides")
    assert normalize_outline(
        [title, "Tidal Power"], wanted=2, max_title_length=80, topic="Tides"
    ) == ["I. Tidal Power"]


@pytest.mark.parametrize(
    "title",
    ["Tidal Power", "The Final Chapter of Sail", "Tides and the Moon", "Part-Time Sailors",
     "Sections of the Coast", "Title Deeds and Land"],
)  # fmt: skip
def test_titles_that_merely_contain_placeholder_words_stay(title: str) -> None:
    assert not is_placeholder(title, "Tides")


def test_raw_newlines_in_json_strings_are_read_leniently() -> None:
    # What llama-cpp-python's JSON grammar let through on the real server.
    assert parse_outline('{ "sections": [ "Rise\nof Tea" , "Trade" ] }') == [
        "Rise\nof Tea",
        "Trade",
    ]


def test_text_mode_accepts_a_single_listed_title_and_says_list_when_it_fails() -> None:
    assert parse_outline("- Rise", "text") == ["Rise"]
    with pytest.raises(StepError) as caught:
        parse_outline("Tea has a long history.", "text")
    assert caught.value.message == "the model's outline was not a list of titles"
    assert "JSON" not in caught.value.message


def test_a_json_parse_failure_keeps_the_parsers_words_for_operators() -> None:
    with pytest.raises(StepError) as caught:
        parse_outline('{"outline": 1}')
    assert caught.value.message == "the model's outline was not JSON of the expected shape"
    assert caught.value.detail is not None
    assert "outline" in caught.value.detail


def test_llama_cpp_schema_form_holds_the_titles_asked_for() -> None:
    form = outline_response_format("json_object_schema", sections=4, max_title_length=90)
    assert form is not None
    assert form["type"] == "json_object"
    titles = form["schema"]["properties"]["sections"]
    assert (titles["minItems"], titles["maxItems"], titles["items"]["maxLength"]) == (4, 4, 90)
    assert outline_response_format("json_schema", sections=4, max_title_length=90) == (
        OUTLINE_JSON_SCHEMA
    )
    assert outline_response_format("text", sections=4, max_title_length=90) is None


def test_outline_bound_grows_with_the_titles_asked_for() -> None:
    assert outline_max_tokens(3, 120) == 324
    assert outline_max_tokens(6, 120) < outline_max_tokens(12, 120)


def test_the_outline_prompt_fits_its_format_and_has_no_example_titles() -> None:
    options = JobOptions(sections=3)
    for fmt in ("json_schema", "json_object_schema", "json_object"):
        system = outline_messages("Tea", options, fmt)[0].content
        assert "JSON only" in system
        assert 'title"' not in system
    text = outline_messages("Tea", options, "text")[0].content
    assert "JSON" not in text
    assert "first title" not in text


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("", "empty"),
        ("<think>plan</think>  ", "empty"),
        ("II. Peak", "only the section's title"),
        ("Peak.", "only the section's title"),
        ("## II. Peak\n", "only the section's title"),
        ("1. I. Rise\n2. II. Peak\n3. III. Fall", "the outline repeated back"),
        ("Outline:\n- Rise\n- Peak\n- Fall\nThat is all.", "the outline repeated back"),
        ("Rise\nPeak", "the outline repeated back"),
    ],
)
def test_answers_that_are_not_sections_are_recognised(answer: str, problem: str) -> None:
    assert section_problem(answer, "II. Peak", ["I. Rise", "II. Peak", "III. Fall"]) == problem


def _title_only(answer: str, title: str) -> bool:
    """The title check on the whole answer, folded at once (what `section_problem` skips
    for answers with enough prose)."""
    text = strip_reasoning(answer).strip()
    key = re.sub(r"^(?:(?:[0-9]{1,2}|[ivxlc]{1,6})\s+)+", "", comparable(text))
    title_key = re.sub(r"^(?:(?:[0-9]{1,2}|[ivxlc]{1,6})\s+)+", "", comparable(title))
    return key == title_key or not clean_section(text, title)


_LINES = st.lists(
    st.one_of(
        st.sampled_from(["I. Rise", "II. Peak", "## II. Peak", "III. Fall", "1.", "iv", "", "**"]),
        st.text(alphabet="ab ,.\n", max_size=40),
        st.just("word " * 30),
        st.just("A very long title " * 4),  # half of the long title below
    ),
    max_size=8,
)


@given(_LINES, st.sampled_from(["II. Peak", "Peak", "A very long title " * 8]))
@example(["A very long title " * 4] * 2, "A very long title " * 8)  # the title over two lines
def test_an_answer_is_only_the_title_exactly_when_folding_all_of_it_says_so(
    lines: list[str], title: str
) -> None:
    answer = "\n".join(lines)
    problem = section_problem(answer, title, ["I. Rise", title, "III. Fall"])
    if _title_only(answer, title) and strip_reasoning(answer).strip():
        assert problem == "only the section's title"
    else:
        assert problem != "only the section's title"


def test_a_section_that_mentions_other_titles_in_prose_is_a_section() -> None:
    body = (
        "Peak years followed the Rise. " * 3
        + "\n\nI. Rise\nIII. Fall\n\n"
        + "Trade grew, cities swelled and the empire reached its largest extent. " * 2
    )
    assert section_problem(body, "II. Peak", ["I. Rise", "II. Peak", "III. Fall"]) is None
