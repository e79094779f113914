"""Markdown and HTML for the page: chat turns with the catalog cards of the films they name, the persona as
shown before the end, the outcome when a chat ends, and a browsed corpus (header, turns, statistics, plot).

Everything a corpus or a visitor wrote is escaped, so a turn cannot change the page's markup."""

from __future__ import annotations

import base64
import dataclasses
import html
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crsdata.catalog import Catalog
from crsdata.schema import Role
from crsdata.simulate.grounding import film_fact_parts
from crsdata.simulate.leak import find_leaks, fuzzy_title_match
from crsdata.simulate.persona import Persona, catalog_row, display_title
from crsdata.space.chat import Chat
from crsdata.space.corpora import Corpus

_END_REASONS = {
    "accept": "accepted",
    "max_turns": "not accepted: the turn limit was reached or the chat was ended",
    "parse_error": "not accepted: a simulator could not write a readable turn",
    "empty": "not accepted: a simulator wrote an empty turn",
}


def esc(text: str) -> str:
    """Text for a Markdown component: markup characters escaped, quotes left readable."""
    return html.escape(text, quote=False)


def item_text(catalog: Catalog | None, item: Mapping[str, str]) -> str:
    return display_title(catalog_row(catalog, item.get("item_id", "")), item.get("title", ""))


def item_card(catalog: Catalog | None, item: Mapping[str, str]) -> str:
    """Markdown for a film named in a chat: its title linked to its catalog entry, then the facts the grounded
    user simulator is shown (:func:`crsdata.simulate.grounding.film_fact_parts`: genres, director, stars, plot)."""
    row = catalog_row(catalog, item.get("item_id", ""))
    title = esc(display_title(row, item.get("title", "")))
    if row is None:
        return f"**{title}** (not in the catalog)"
    link = f"https://www.imdb.com/title/{row['imdb_id']}/" if row.get("imdb_id") else ""
    head = f"[**{title}**]({link})" if link else f"**{title}**"
    return " · ".join([head, *(esc(part) for part in film_fact_parts(row))])


def turn_markdown(turn: Mapping[str, Any], catalog: Catalog | None, show_role: bool = True) -> str:
    who = f"**{turn['role']}** " if show_role else ""
    # Corpora without act labels (ReDial) say "none": nothing worth a badge.
    action = f"`{turn['action']}` " if turn["action"] not in ("", "none") else ""
    text = f"{who}{action}{esc(turn['text'])}"
    if turn["items"]:  # a film named by either side shows its catalog facts
        text += "\n\n" + "\n\n".join(f"Catalog: {item_card(catalog, i)}" for i in turn["items"])
    return text


def messages(chat: Chat) -> list[dict[str, str]]:
    """The chat as Chatbot messages: the person (or, when watching, the user simulator) on the right. Each turn
    shows its action; recommended titles come with their catalog card."""
    right = chat.human_role or Role.USER.value
    return [
        {
            "role": "user" if turn["role"] == right else "assistant",
            "content": turn_markdown(turn, chat.catalog, show_role=chat.mode == "watch"),
        }
        for turn in chat.state.turns
    ]


def persona_preview(chat: Chat | None = None, persona: Persona | None = None) -> str:
    """The persona as the page shows it before the end: preferences and watched movies, never the target."""
    persona = persona or (chat.sim.persona(chat.state) if chat else None)
    if persona is None:
        return ""
    watched = "\n".join(f"- **{esc(w.title)}**: {esc(w.review)}" for w in persona.watched)
    return (
        f"**Taste:** {esc(persona.general_preferences or '(not given)')}\n\n"
        f"**Watched:**\n{watched or '- (none given)'}\n\n"
        "**What they want now:** hidden until the chat ends (the simulated user knows the attributes, never "
        "the title)."
    )


def outcome(chat: Chat) -> dict[str, Any]:
    """What the page shows when a chat ends: target, outcome, turns, whether the target was reached, leaks."""
    record = chat.record()
    targets = chat.target_items
    ids = {t["item_id"] for t in targets if t["item_id"]}

    def names_target(turn: dict[str, Any]) -> bool:
        if any(i["item_id"] in ids for i in turn["items"] if i["item_id"]):
            return True
        return any(t["title"] and fuzzy_title_match(turn["text"], t["title"]) for t in targets)

    accepted = record["outcome"]["accepted_item"]
    return {
        "end_reason": record["outcome"]["end_reason"],
        "accepted": record["outcome"]["end_reason"] == "accept",
        "accepted_item": accepted,
        "accepted_target": bool(accepted["item_id"]) and accepted["item_id"] in ids,
        "turns": len(record["turns"]),
        "targets": [item_text(chat.catalog, t) for t in targets],
        "target_attributes": record["user_profile"]["target_attributes"],
        "target_reached": any(t["role"] == "recommender" and names_target(t) for t in record["turns"]),
        "leaks": [dataclasses.asdict(leak) for leak in find_leaks(record)],
        "seconds": list(chat.seconds),
    }


def outcome_markdown(chat: Chat) -> str:
    o = outcome(chat)
    lines = ["### The chat has ended"]
    if chat.mode != "user":
        targets = ", ".join(f"**{esc(t)}**" for t in o["targets"]) or "(no title was given)"
        lines.append(f"**Target:** {targets}")
        lines.append(f"**What the simulated user was looking for:** {esc(o['target_attributes'])}")
    why = _END_REASONS.get(o["end_reason"], o["end_reason"])
    lines.append(f"**Outcome:** {why} (`{o['end_reason']}`) after {o['turns']} turns")
    if o["accepted"]:
        accepted = item_text(chat.catalog, o["accepted_item"]) or "(a recommendation without a title)"
        same = " (the target)" if o["accepted_target"] else ""
        lines.append(f"**Accepted:** {esc(accepted)}{same}")
    if chat.mode != "user":
        lines.append(f"**Target reached** (named by the recommender): {'yes' if o['target_reached'] else 'no'}")
        leaks = o["leaks"]
        lines.append(
            "**Leak check:** "
            + (
                "passed, no user turn named the target before the recommender did"
                if not leaks
                else f"{len(leaks)} user turn(s) named the target first: turns "
                + ", ".join(str(leak["turn_index"]) for leak in leaks)
            )
        )
    if o["seconds"]:
        lines.append(
            f"**Simulator time:** {sum(o['seconds']):.1f} s over {len(o['seconds'])} turns "
            f"(first {o['seconds'][0]:.1f} s)"
        )
    return "\n\n".join(lines)


def dialogue_markdown(corpus: Corpus, record: Mapping[str, Any]) -> str:
    """A header for a browsed dialogue: its split, outcome, targets and persona fields."""
    profile = record["user_profile"]
    targets = ", ".join(item_text(corpus.catalog, t) for t in record["target_items"]) or "none"
    lines = [
        f"**{esc(record['dialogue_id'])}** · split `{record['split']}` · {len(record['turns'])} turns · "
        f"end reason `{record['outcome']['end_reason']}`",
        f"**Targets:** {esc(targets)}",
    ]
    if profile.get("general_preferences"):
        lines.append(f"**Taste:** {esc(profile['general_preferences'])}")
    if profile.get("target_attributes"):
        lines.append(f"**Target attributes:** {esc(profile['target_attributes'])}")
    return "\n\n".join(lines)


def browse_messages(corpus: Corpus, record: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        {"role": "user" if t["role"] == Role.USER.value else "assistant", "content": turn_markdown(t, corpus.catalog)}
        for t in record["turns"]
    ]


def stats_markdown(corpus: Corpus) -> str:
    """The card's statistics of a corpus as a markdown table."""
    s = corpus.stats
    if not s.get("dialogues"):
        return "No dialogues."
    link = "n/a" if s["link_rate"] is None else f"{s['link_rate']:.1%}"
    rows = [
        ("dialogues", f"{s['dialogues']:,}"),
        ("splits", ", ".join(f"{k} {v:,}" for k, v in s["splits"].items())),
        ("turns", f"{s['turns']:,}"),
        ("mean turns per dialogue", f"{s['mean_turns_per_dialogue']:.2f}"),
        ("mean words per turn", f"{s['mean_words_per_turn']:.2f}"),
        ("item mentions linked", f"{s['linked_mentions']:,} of {s['item_mentions']:,} ({link})"),
        ("actions", ", ".join(f"{k} {v:,}" for k, v in list(s["actions"].items())[:8])),
        ("end reasons", ", ".join(f"{k} {v:,}" for k, v in s["end_reasons"].items())),
    ]
    return "| statistic | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def plot_html(corpus: Corpus) -> str:
    """The card's turns-per-dialogue histogram as an inline image (no file URL, so no path in the page)."""
    from crsdata.export import plot_turn_counts

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plot.png"
        plot_turn_counts(corpus.stats.get("turns_per_dialogue", []), path, corpus.name)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="turns per dialogue" style="max-width:100%" src="data:image/png;base64,{data}">'
