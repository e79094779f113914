"""Title normalisation, scrubbing, the prompt guard and the leak detector on generated dialogues."""

from __future__ import annotations

import pytest

from crsdata.backends.base import ChatRequest
from crsdata.schema import item_ref, new_dialogue, new_turn
from crsdata.simulate.base import DialogueState
from crsdata.simulate.leak import (
    LEAK_THRESHOLD,
    TargetLeakError,
    assert_no_target_leak,
    contains_title,
    find_leaks,
    fuzzy_title_match,
    leak_rate,
    leak_report,
    normalize_text,
    scrub_titles,
    split_title,
    title_variants,
)


def test_normalize_text():
    assert normalize_text("<movie_title>Schindler's List  (1993)</movie_title>!") == "schindlers list 1993"
    assert normalize_text("Amélie & Co.") == "amelie and co"
    assert normalize_text("SPIDER-MAN: Into the Spider-Verse") == "spider man into the spider verse"
    assert normalize_text("") == ""


def test_split_title_moves_articles_and_reads_years():
    assert split_title("Shining, The (1980)") == ("The Shining", 1980)
    assert split_title("The Shining  (1980)") == ("The Shining", 1980)
    assert split_title("Heat") == ("Heat", None)


def test_title_variants():
    assert title_variants("The Shining (1980)") == ["the shining 1980", "shining 1980", "the shining", "shining"]
    # Short one-word titles are only searched with their year: "it" and "up" are ordinary words.
    assert title_variants("It (2017)") == ["it 2017"]
    assert title_variants("Up") == []
    assert title_variants("Heat", year=1995) == ["heat 1995", "heat"]
    assert "shining" not in title_variants("The Shining (1980)", bare_article_drop=False)


def test_contains_title_is_whole_word_and_punctuation_insensitive():
    assert contains_title("I loved THE SHINING, 1980!", "The Shining (1980)")
    assert contains_title("watch the-shining tonight", "The Shining")
    assert not contains_title("the shiningly good cast", "The Shining")
    assert contains_title("Up (2009) made me cry", "Up (2009)")
    assert not contains_title("cheer up, it is fine", "Up (2009)")


def test_scrub_titles_keeps_the_rest_of_the_text():
    text = "I loved The Shining  (1980), the shining was scary. Shining, The? Also It Follows (2014)."
    out = scrub_titles(text, ["The Shining (1980)"])
    assert out == "I loved that movie, that movie was scary. that movie, The? Also It Follows (2014)."
    assert not contains_title(out, "The Shining (1980)")
    assert scrub_titles("I saw it yesterday", ["It (2017)"]) == "I saw it yesterday"
    assert scrub_titles("I saw It (2017) yesterday", ["It (2017)"]) == "I saw that movie yesterday"


def test_scrub_with_a_placeholder_that_contains_the_title_terminates():
    assert (
        scrub_titles("I like That Movie a lot", ["That Movie"], placeholder="that movie") == "I like that movie a lot"
    )


@pytest.mark.parametrize(
    ("text", "title", "expected"),
    [
        ("i think the shinning was great", "The Shining (1980)", True),  # one typo
        ("The Babadok is so creepy", "The Babadook (2014)", True),
        ("the ringing phone woke me", "The Ring (2002)", False),  # a longer word is another word
        ("the sun was shining", "The Shining (1980)", False),  # no one-word article-less form in the detector
        ("loved the dark knight", "The Dark Knight (2008)", True),
        ("loved dark knight", "The Dark Knight (2008)", True),  # multi-word article-less form is kept
        ("Up (2009) is a great one", "Up (2009)", True),
        ("let me look it up", "Up (2009)", False),
        ("", "Heat", False),
    ],
)
def test_fuzzy_title_match(text, title, expected):
    assert fuzzy_title_match(text, title) is expected


def test_threshold_is_what_the_doc_says():
    assert LEAK_THRESHOLD == 90.0
    assert fuzzy_title_match("the shinning", "The Shining", threshold=99) is False


def _dialogue(turns, targets, dialogue_id="d1"):
    return new_dialogue(
        dialogue_id,
        "interplay-sim",
        "test",
        [new_turn(i, role, text, items=items or []) for i, (role, text, items) in enumerate(turns)],
        target_items=targets,
    )


SHINING = item_ref("202190", "The Shining (1980)")


def test_user_naming_the_target_first_is_a_leak():
    record = _dialogue(
        [
            ("recommender", "Hi! What do you like?", None),
            ("user", "Something like The Shining, a hotel horror.", None),
            ("recommender", "Then watch The Shining (1980)!", [SHINING]),
            ("user", "The Shining it is.", None),
        ],
        [SHINING],
    )
    leaks = find_leaks(record)
    assert [(leak.turn_index, leak.target_id) for leak in leaks] == [(1, "202190")]
    assert leak_rate([record]) == 1.0


def test_user_repeating_a_recommended_target_is_not_a_leak():
    record = _dialogue(
        [
            ("recommender", "You may enjoy The Shining (1980).", [SHINING]),
            ("user", "Oh, the shining sounds great.", None),
        ],
        [SHINING],
    )
    assert find_leaks(record) == []


def test_leak_through_linked_items_of_a_short_title():
    it = item_ref("it-2017", "It (2017)")
    record = _dialogue(
        [("recommender", "What do you like?", None), ("user", "Maybe It?", [item_ref("it-2017", "It")])], [it]
    )
    assert [leak.turn_index for leak in find_leaks(record)] == [1]
    # Without the linked item a bare "it" is just a word.
    plain = _dialogue([("recommender", "What do you like?", None), ("user", "Maybe it?", None)], [it])
    assert find_leaks(plain) == []


def test_leak_report_over_a_corpus():
    clean = _dialogue([("user", "I want horror.", None), ("recommender", "The Shining (1980)!", [SHINING])], [SHINING])
    leaky = _dialogue([("user", "I want the shining.", None), ("user", "the shining please", None)], [SHINING], "d2")
    untargeted = _dialogue([("user", "The Shining!", None)], [], "d3")
    report = leak_report([clean, leaky, untargeted])
    assert report["dialogues"] == 2  # the record without targets is not counted
    assert report["leaked_dialogues"] == 1 and report["dialogue_rate"] == 0.5
    assert report["user_turns"] == 3 and report["leaked_user_turns"] == 2
    assert report["turn_rate"] == pytest.approx(2 / 3)
    assert leak_rate([clean, leaky, untargeted]) == 0.5
    assert leak_rate([]) == 0.0


def _state(turns=(), titles=("The Shining (1980)",)):
    record = new_dialogue("d1", "redial", "test", [], target_items=[item_ref("1", t) for t in titles])
    state = DialogueState("d1", record, 0)
    state.turns = [new_turn(i, role, text) for i, (role, text) in enumerate(turns)]
    return state


def test_guard_raises_on_a_title_outside_the_conversation():
    state = _state()
    with pytest.raises(TargetLeakError, match="The Shining"):
        assert_no_target_leak(ChatRequest(messages=[{"role": "system", "content": "You like THE SHINING."}]), state)
    with pytest.raises(TargetLeakError):
        assert_no_target_leak(ChatRequest(prompt="[PERSONA]\nWatched: Shining, The (1980)\n"), state)
    assert_no_target_leak(ChatRequest(messages=[{"role": "system", "content": "You like horror."}]), state)


def test_guard_allows_titles_from_the_conversation_but_counts_them():
    state = _state([("recommender", "Try The Shining (1980)."), ("user", "Is the shining scary?")])
    ok = ChatRequest(
        messages=[
            {"role": "system", "content": "You like horror."},
            {"role": "user", "content": "<action><recommend></action><response>Try The Shining (1980).</response>"},
            {"role": "assistant", "content": "Is the shining scary?"},
        ]
    )
    assert_no_target_leak(ok, state)
    leaked = ChatRequest(messages=[{"role": "system", "content": "Your goal: the shining."}, *ok.messages[1:]])
    with pytest.raises(TargetLeakError):
        assert_no_target_leak(leaked, state)


def test_guard_discounts_the_fixed_templates():
    # The recommender template's example names an invented film; a target of that name is not leaked by it.
    from crsdata.simulate.prompts import RECOMMENDER_INSTRUCT

    state = _state(titles=("The Quiet Harbor (2003)",))
    request = ChatRequest(messages=[{"role": "system", "content": RECOMMENDER_INSTRUCT.format(profile="")}])
    assert_no_target_leak(request, state)
    request.messages.append({"role": "user", "content": "I want something like The Quiet Harbor (2003)"})
    with pytest.raises(TargetLeakError):
        assert_no_target_leak(request, state)


def test_guard_uses_catalog_titles_from_the_state():
    state = _state(titles=("Shining",))
    state.context["target_titles"] = ["The Shining (1980)"]
    with pytest.raises(TargetLeakError):
        assert_no_target_leak(ChatRequest(prompt="you loved the shining 1980"), state)


def test_detector_on_real_redial_dialogues():
    from fixtures.simulate_records import redial_record, redial_records

    # ReDial 4362: the seeker asks about Upstream Color (taken as the target here) before the recommender names it.
    record = redial_record("4362")
    record["target_items"] = [{"item_id": "152082", "title": "Upstream Color (2013)"}]
    leaks = find_leaks(record)
    assert [(leak.turn_index, leak.target_id) for leak in leaks] == [(3, "152082")]
    # ReDial 16162: its target (The Shining, for these tests) is first named by the recommender.
    assert find_leaks(redial_record("16162")) == []
    report = leak_report(redial_records(200))
    assert report["dialogues"] == 200 and 0 < report["leaked_dialogues"] < 200
    assert report["dialogue_rate"] == leak_rate(redial_records(200))
