"""Tab 4, **Browse a corpus**: open a built or simulated folder or a Hub dataset (at a revision), filter its
dialogues and read them, beside the card's statistics and turns-per-dialogue plot."""

from __future__ import annotations

from typing import Any

from crsdata.space import render
from crsdata.space.config import SpaceError
from crsdata.space.corpora import filter_dialogues
from crsdata.space.ui import Page, errors_visible

MAX_LISTED = 1000


def dialogue_choices(records: list[dict[str, Any]]) -> tuple[list[str], str]:
    """The dialogue ids the dropdown lists (the first :data:`MAX_LISTED`) and the count shown beside it."""
    ids = [r["dialogue_id"] for r in records[:MAX_LISTED]]
    more = f" (the first {MAX_LISTED} listed)" if len(records) > MAX_LISTED else ""
    return ids, f"{len(records):,} dialogues match{more}."


class BrowseTab:
    """The tab's handlers (each also an API endpoint, so without a docstring: Gradio would publish it as the
    endpoint's description) and, after :meth:`build`, its components."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.space = page.space

    def open_corpus(self, name: str, revision: str) -> tuple[Any, ...]:
        import gradio as gr

        corpus = self.space.corpus(name or "", revision or "")
        records = corpus.records
        splits = [""] + sorted({r["split"] for r in records})
        reasons = [""] + sorted({r["outcome"]["end_reason"] for r in records})
        actions = [""] + sorted({t["action"] for r in records for t in r["turns"]})
        shown, count = dialogue_choices(corpus.records)
        return (
            render.stats_markdown(corpus),
            render.plot_html(corpus),
            gr.Dropdown(choices=splits, value=""),
            gr.Dropdown(choices=reasons, value=""),
            gr.Dropdown(choices=actions, value=""),
            gr.Dropdown(choices=shown, value=shown[0] if shown else None),
            count,
        )

    def filter_corpus(
        self, name: str, revision: str, split: str, reason: str, action: str, text: str
    ) -> tuple[Any, ...]:
        import gradio as gr

        corpus = self.space.corpus(name or "", revision or "")
        found = filter_dialogues(corpus, split or "", reason or "", action or "", text or "")
        shown, count = dialogue_choices(found)
        return gr.Dropdown(choices=shown, value=shown[0] if shown else None), count

    def show_dialogue(self, name: str, revision: str, dialogue_id: str) -> tuple[Any, ...]:
        if not dialogue_id:
            return [], ""
        corpus = self.space.corpus(name or "", revision or "")
        record = corpus.by_id.get(dialogue_id)
        if record is None:
            raise SpaceError(f"{corpus.name} has no dialogue {dialogue_id!r}.")
        return render.browse_messages(corpus, record), render.dialogue_markdown(corpus, record)

    def build(self) -> None:
        """Lays the tab out inside the open ``gr.Tab`` and connects its events."""
        import gradio as gr

        gr.Markdown("Open a built or simulated dataset, or a Hub dataset id (with a revision), and read it.")
        with gr.Row():
            self.corpus = gr.Dropdown(
                self.page.corpora,
                value=self.page.first,
                label="Dataset (or type a Hub id: org/name)",
                allow_custom_value=True,
                elem_id="browse-corpus",
            )
            revision = gr.Textbox(label="Revision (Hub ids only: a tag, branch or commit)")
            open_button = gr.Button("Open", variant="primary", elem_id="browse-open")
        with gr.Row():
            filters = [
                gr.Dropdown([""], value="", label="Split"),
                gr.Dropdown([""], value="", label="End reason"),
                gr.Dropdown([""], value="", label="Action", elem_id="browse-action"),
            ]
            text = gr.Textbox(label="Text contains", elem_id="browse-text")
            apply = gr.Button("Filter", elem_id="browse-filter")
        with gr.Row():
            dialogue = gr.Dropdown([], label="Dialogue", elem_id="browse-dialogue")
            count = gr.Markdown(elem_id="browse-count")
        header = gr.Markdown(elem_id="browse-header")
        chat = gr.Chatbot(label="Dialogue (user on the right)", height=560, autoscroll=False, elem_id="browse-chat")
        with gr.Accordion("The card's statistics and plot", open=True):
            with gr.Row():
                stats = gr.Markdown(elem_id="browse-stats")
                plot = gr.HTML(elem_id="browse-plot")
        show = errors_visible(self.show_dialogue)
        where = [self.corpus, revision]
        open_button.click(
            errors_visible(self.open_corpus),
            where,
            [stats, plot, *filters, dialogue, count],
            api_name="open_corpus",
        ).then(show, [*where, dialogue], [chat, header], api_name=False)
        apply.click(
            errors_visible(self.filter_corpus), [*where, *filters, text], [dialogue, count], api_name="filter_corpus"
        )
        dialogue.change(show, [*where, dialogue], [chat, header], api_name="show_dialogue")
