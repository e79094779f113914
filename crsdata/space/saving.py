"""Save in the Watch tab: a finished chat appended to a local folder in the crsdata schema, with its card."""

from __future__ import annotations

from pathlib import Path

from crsdata.space.chat import Chat
from crsdata.space.corpora import is_built_folder


def append_dialogue(chat: Chat, folder: Path) -> int:
    """Rewrites ``folder`` with its dialogues and ``chat``'s (``load_dataset(folder, "dialogues")`` reads it), the
    catalog rows of the films the chat names, and a card with the leak report. A dialogue saved twice is kept
    once. Returns how many dialogues the folder holds. The caller holds the save lock."""
    from crsdata.build import BuildResult, InputFile
    from crsdata.export import export_folder
    from crsdata.simulate.leak import leak_report

    record = chat.record()
    existing, items = [], []
    if is_built_folder(folder):
        import datasets

        loaded = datasets.load_dataset(str(folder), "dialogues")
        existing = [row for split in loaded.values() for row in split.to_list()]
        if any(folder.glob("items/*.parquet")):
            items = datasets.load_dataset(str(folder), "items", split="train").to_list()
    records = [r for r in existing if r["dialogue_id"] != record["dialogue_id"]] + [record]
    known = {row["item_id"] for row in items}
    mentioned = [i["item_id"] for t in record["turns"] for i in t["items"] if i["item_id"]]
    mentioned += [t["item_id"] for t in record["target_items"] if t["item_id"]]
    items += [row for row in chat.catalog.rows(dict.fromkeys(mentioned)) if row["item_id"] not in known]
    report = leak_report(records)
    result = BuildResult(
        source="interplay-sim",
        splits={"train": records},
        items=items,
        inputs=[InputFile(path="crsdata space", sha256="", records=len(records))],
        info={
            "name": "crsdata space",
            "pretty_name": "Dialogues saved from the crsdata playground",
            "description": "Interplay dialogues between the user and recommender simulators, run one at a "
            "time on the crsdata playground Space and saved by the person watching.",
            "license": "generated text is subject to the licences of the models named in provenance",
        },
    )
    sections = {
        "Target leak": f"{report['leaked_dialogues']} of {report['dialogues']} dialogues with targets have "
        "a user turn naming a target before the recommender did (`crsdata.simulate.leak`)."
    }
    export_folder(result, folder, card_sections=sections)
    return len(records)
