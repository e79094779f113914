"""What GRSU evaluates on: recommendation turns of a built folder, and the folder's catalog as candidates.

A built folder (``crsdata build ...``) holds dialogues (``dialogues`` config) and the item catalog (``items``).
Two kinds of folders give evaluation turns (:func:`evaluation_turns`):

- *turn samples* (``crsdata build redial-eval``: ``extra.sample == "recommendation-turn"``): each dialogue is the
  conversation before one recommendation, and its ``target_items`` are the items recommended next;
- whole dialogues (``crsdata build inspired``, ``redial``): every recommender turn that names an item is a
  recommendation turn (:func:`crsdata.metrics.recommendation_turns` with rule ``mentions``, as iEvaLM and GRSU
  sample ReDial and INSPIRED); its ground truth is the items it names, its context the turns before it.

Ground-truth items that are not in the catalog can never be recommended and are dropped. Then, as GRSU's own
evaluation does (``only_new`` in its task loaders), a turn is skipped when *any* of its ground-truth items was
mentioned earlier in the conversation: re-recommending a film the seeker already named is not a new
recommendation, and keeping such a turn with the repeated item taken out (this module's rule before) evaluates
turns GRSU never sees. Items mentioned earlier are still removed from every ranking. A skipped turn is counted by
reason, never silently. The context is the whole conversation before the turn, as GRSU gives it
(``--context-chars`` can cut it to its most recent utterances).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from crsdata.builders.redial_eval import TURN_SAMPLE
from crsdata.errors import BadInputError
from crsdata.schema import load_extra

# Attributes a critique can name, and where an item row keeps them (GRSU: genre, actor, writer, director).
CRITIQUE_ATTRIBUTES: dict[str, str] = {"genre": "genres", "actor": "star", "writer": "writer", "director": "director"}
_PEOPLE_ROLES = ("director", "writer", "star")
# Characters of conversation kept (the most recent utterances); 0 keeps it whole, as GRSU does. A cut trades the
# seeker's early preferences for speed: a small model's time grows with every token.
CONTEXT_CHARS = 0
MAX_PEOPLE = 3  # names per role shown in an item description: enough to critique, short enough to score fast


@dataclass(frozen=True)
class EvalTurn:
    """One recommendation to predict: the conversation before it and what was recommended.

    ``key`` is unique in the run (``dialogue_id#index``); ``group`` is the conversation it comes from, so that
    bootstrap intervals resample conversations, not their correlated turns. ``targets`` are catalog ids, never
    ``mentioned``; ``context`` holds ``(role, text)`` pairs, oldest first.
    """

    key: str
    group: str
    context: tuple[tuple[str, str], ...]
    targets: tuple[str, ...]
    mentioned: tuple[str, ...]

    def user_text(self) -> str:
        """What the seeker said, oldest first: the part of the context that states a preference."""
        return " ".join(text for role, text in self.context if role == "user")


@dataclass
class ItemTable:
    """The catalog rows of a folder by id, with the attribute lists that prompts and critiques use."""

    rows: dict[str, dict[str, Any]]

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> ItemTable:
        return cls({str(r["item_id"]): dict(r) for r in rows if r.get("item_id")})

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def ids(self) -> list[str]:
        return list(self.rows)

    def title(self, item_id: str) -> str:
        """``"The Shining (1980)"``; the bare title when the year is unknown."""
        row = self.rows[item_id]
        return f"{row['title']} ({row['year']})" if row.get("year") else str(row["title"])

    def attributes(self, item_id: str) -> dict[str, list[str]]:
        """``{"genre": [...], "actor": [...], "writer": [...], "director": [...]}`` (lists may be empty)."""
        row = self.rows[item_id]
        people = {role: [] for role in _PEOPLE_ROLES}
        for person in row.get("people") or []:
            role, name = person.get("role"), (person.get("name") or "").strip()
            if role in people and name and name not in people[role]:
                people[role].append(name)
        return {
            "genre": [g for g in row.get("genres") or [] if g],
            "actor": people["star"],
            "writer": people["writer"],
            "director": people["director"],
        }

    def describe(self, item_id: str) -> str:
        """The title and its critique attributes, one per line, as the GRSU prompts show an item."""
        lines = [self.title(item_id)]
        for name, values in self.attributes(item_id).items():
            if values:
                label = "actors" if name == "actor" else name
                lines.append(f"  - {label}: {', '.join(values[:MAX_PEOPLE] if name != 'genre' else values)}")
        return "\n".join(lines)

    def missing_attributes(self) -> list[str]:
        """The critique attributes that no item of the catalog has."""
        present: set[str] = set()
        for item_id in self.rows:
            present.update(name for name, values in self.attributes(item_id).items() if values)
            if len(present) == len(CRITIQUE_ATTRIBUTES):
                return []
        return [name for name in CRITIQUE_ATTRIBUTES if name not in present]


@dataclass
class EvalSet:
    """The turns to evaluate, the catalog, and what was left out (reason -> count)."""

    folder: Path
    split: str
    turns: list[EvalTurn]
    items: ItemTable
    eligible: int  # turns that could be evaluated, before --n sampled some of them
    skipped: Counter[str] = field(default_factory=Counter)
    kind: str = "turn samples"  # or "dialogues"
    records: int = 0
    source_name: str = ""  # the dialogues' `source` (redial-eval, inspired, ...)


def load_folder_config(folder: Path, config: str) -> dict[str, Any]:
    """``{split: rows}`` of one config of a built folder; BadInputError naming what is missing."""
    from datasets import get_dataset_config_names, load_dataset

    if not folder.is_dir():
        raise BadInputError(folder, "folder", "", "no such folder (give a folder written by `crsdata build`)")
    if not (folder / "README.md").is_file():
        raise BadInputError(folder, "folder", "", "not a built dataset folder (no README.md)", "not-a-folder")
    if config not in get_dataset_config_names(str(folder)):
        raise BadInputError(folder, f"config {config}", "", f"missing: the folder has no {config!r} config")
    try:
        return dict(load_dataset(str(folder), config))
    except (ValueError, FileNotFoundError) as err:
        raise BadInputError(folder, f"config {config}", "", f"cannot load: {err}") from None


def load_eval_set(
    folder: str | Path, split: str, *, n: int | None = None, seed: int = 0, context_chars: int = CONTEXT_CHARS
) -> EvalSet:
    """The evaluation turns of ``folder``'s ``split`` (a seeded sample of ``n`` when given) and its catalog.

    Each turn's context keeps its most recent utterances within ``context_chars`` characters (the last one always;
    0 keeps everything); items mentioned earlier still count as mentioned.

    Raises :class:`BadInputError` for a folder without dialogues, the split, a catalog, or any turn with ground
    truth in the catalog.
    """
    folder = Path(folder)
    splits = load_folder_config(folder, "dialogues")
    if split not in splits:
        raise BadInputError(folder, "split", "", f"no split {split!r}; the folder has {sorted(splits)}", "no-split")
    from crsdata.catalog import read_items

    item_rows = read_items(folder)
    if item_rows is None:
        raise BadInputError(
            folder, "config items", "", "missing: the folder has no 'items' config (the item catalog the CRS ranks)"
        )
    items = ItemTable.from_rows(item_rows)
    if not len(items):
        raise BadInputError(folder, "config items", "", "the catalog is empty: a CRS has nothing to rank", "no-items")
    records = list(splits[split])
    turns, skipped, kind = evaluation_turns(records, items, context_chars)
    if not turns:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "no recommendation turn"
        raise BadInputError(
            folder,
            f"split {split}",
            "target_items",
            f"no turn has ground-truth items in the catalog to evaluate ({reasons})",
            "no-targets",
        )
    eligible = len(turns)
    if n is not None and n < len(turns):
        # A seeded sample spread over the split: the first n turns would come from a handful of conversations.
        chosen = sorted(random.Random(seed).sample(range(len(turns)), n))
        turns = [turns[i] for i in chosen]
    source = str(records[0].get("source") or "")
    return EvalSet(folder, split, turns, items, eligible, skipped, kind, len(records), source)


def _item_keys(refs: Iterable[Mapping[str, Any]]) -> list[str]:
    from crsdata.metrics import item_key

    return list(dict.fromkeys(k for k in map(item_key, refs) if k))


def evaluation_turns(
    records: list[Mapping[str, Any]], items: ItemTable, context_chars: int = 0, *, only_new: bool = True
) -> tuple[list[EvalTurn], Counter[str], str]:
    """``(turns, skipped reason -> count, kind)`` for dialogue records (see the module doc).

    ``only_new=False`` keeps a turn whose ground truth was partly mentioned before, with only its new items as
    targets: what counting recommendations (the popularity CRS) wants, not what GRSU evaluates.
    """
    samples = [load_extra(r.get("extra") or "").get("sample") == TURN_SAMPLE for r in records]
    if records and all(samples):
        turns, skipped = _from_turn_samples(records, items, only_new)
        kind = "turn samples"
    else:
        turns, skipped = _from_dialogues(records, items, only_new)
        kind = "dialogues"
    if context_chars:
        turns = [replace(t, context=recent(t.context, context_chars)) for t in turns]
    return turns, skipped, kind


def recent(context: Sequence[tuple[str, str]], max_chars: int) -> tuple[tuple[str, str], ...]:
    """The most recent utterances within ``max_chars`` characters (the last one is always kept)."""
    kept: list[tuple[str, str]] = []
    size = 0
    for role, text in reversed(context):
        if kept and size + len(text) > max_chars:
            break
        kept.append((role, text))
        size += len(text)
    return tuple(reversed(kept))


def _finish(
    key: str,
    group: str,
    context: list[tuple[str, str]],
    targets: list[str],
    mentioned: list[str],
    items: ItemTable,
    only_new: bool = True,
) -> tuple[EvalTurn | None, str]:
    """The turn, or ``None`` and why it is skipped: targets are kept in the catalog first, as GRSU filters its
    labels, so an item it cannot rank never decides whether a turn is new."""
    if not targets:
        return None, "no-target-items"
    known = [t for t in targets if t in items]
    if not known:
        return None, "targets-not-in-catalog"
    seen = set(mentioned)
    if only_new and seen.intersection(known):
        return None, "targets-already-mentioned"
    known = [t for t in known if t not in seen]
    if not known:
        return None, "targets-already-mentioned"
    if not context:
        return None, "empty-context"
    return EvalTurn(key, group, tuple(context), tuple(known), tuple(mentioned)), ""


def _from_turn_samples(
    records: list[Mapping[str, Any]], items: ItemTable, only_new: bool = True
) -> tuple[list[EvalTurn], Counter[str]]:
    turns: list[EvalTurn] = []
    skipped: Counter[str] = Counter()
    for record in records:
        extra = load_extra(record.get("extra") or "")
        context = [(t["role"], t["text"]) for t in record["turns"] if t["text"].strip()]
        mentioned = _item_keys(ref for t in record["turns"] for ref in t["items"])
        group = str(extra.get("conversation_id") or record["dialogue_id"])
        turn, why = _finish(
            str(record["dialogue_id"]), group, context, _item_keys(record["target_items"]), mentioned, items, only_new
        )
        if turn is None:
            skipped[why] += 1
        else:
            turns.append(turn)
    return turns, skipped


def _from_dialogues(
    records: list[Mapping[str, Any]], items: ItemTable, only_new: bool = True
) -> tuple[list[EvalTurn], Counter[str]]:
    from crsdata.metrics import recommendation_turns

    by_id = {str(r["dialogue_id"]): r for r in records}
    turns: list[EvalTurn] = []
    skipped: Counter[str] = Counter()
    for rec in recommendation_turns(records, rule="mentions"):
        record = by_id[rec.dialogue_id]
        context = [(t["role"], t["text"]) for t in record["turns"] if t["index"] < rec.index and t["text"].strip()]
        key = f"{rec.dialogue_id}#{rec.index}"
        turn, why = _finish(key, rec.dialogue_id, context, rec.items, rec.mentioned, items, only_new)
        if turn is None:
            skipped[why] += 1
        else:
            turns.append(turn)
    if not turns and not skipped:
        skipped["no-recommendation-turns"] = len(records)
    return turns, skipped
