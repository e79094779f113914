"""Tab 3, **Watch**: simulator against simulator, turns streaming in, then the outcome and the leak check;
Save appends the dialogue to the save folder (:meth:`crsdata.space.session.Space.save`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from crsdata.space import render
from crsdata.space.chat import Chat
from crsdata.space.config import SpaceError
from crsdata.space.privacy import model_label
from crsdata.space.ui import Page, errors_visible, persona_picker

INTRO = (
    "Both simulators talk; turns appear as they are generated. At the end: the outcome, whether the "
    "recommender reached the target, and the leak check (did the user name the target before the "
    "recommender did?). Save appends the dialogue to a local dataset folder in the crsdata schema."
)


class WatchTab:
    """The tab's handlers (each also an API endpoint) and, after :meth:`build`, its components. The Save button's
    event is connected by :func:`crsdata.space.app.build_app`: it also refreshes the other tabs' dataset lists."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.space = page.space

    def watch(
        self, corpus: str, dialogue_id: str, user_model: str, recommender_model: str
    ) -> Iterator[tuple[Any, ...]]:
        chat = self.page.start_chat("watch", corpus, dialogue_id, user_model, recommender_model)
        preview = f"Persona: {chat.persona_source}\n\n{render.persona_preview(chat)}"
        yield chat, [], preview, "Running...", ""
        for _ in self.space.watch(chat):
            done = render.outcome_markdown(chat) if chat.finished else f"Running... {len(chat.state.turns)} turns"
            yield chat, render.messages(chat), preview, done, ""

    # Saves the chat; returns the message and the refreshed dataset lists of tabs 4 and 1.
    def save(self, chat: Chat | None) -> tuple[Any, ...]:
        import gradio as gr

        if chat is None:
            raise SpaceError("Run a chat first.")
        message = self.space.save(chat)
        names = self.space.corpus_names()
        return message, gr.Dropdown(choices=names), gr.Dropdown(choices=names)

    def build(self) -> None:
        """Lays the tab out inside the open ``gr.Tab`` and connects its events (Save's excepted)."""
        import gradio as gr

        page = self.page
        gr.Markdown(INTRO)
        self.state = gr.State(None)
        with gr.Row():
            user_model = gr.Dropdown(page.models, value=page.models[0], label="User simulator model")
            rec_model = gr.Dropdown(
                page.models,
                value=model_label(self.space.config.recommender_model),
                label="Recommender simulator model",
            )
        corpus, persona = persona_picker("watch", page.corpora, page.first_personas)
        run = gr.Button("Run", variant="primary", elem_id="watch-run")
        preview = gr.Markdown()
        chat = gr.Chatbot(label="Recommender on the left, user on the right", height=640, elem_id="watch-chat")
        outcome = gr.Markdown(elem_id="watch-outcome")
        with gr.Row():
            self.save_button = gr.Button("Save", elem_id="watch-save")
            self.saved = gr.Markdown(elem_id="watch-saved")
        corpus.change(errors_visible(page.persona_list), corpus, persona, api_name=False)
        run.click(
            errors_visible(self.watch),
            [corpus, persona, user_model, rec_model],
            [self.state, chat, preview, outcome, self.saved],
            api_name="watch",
        )
