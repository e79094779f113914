"""Tab 1, **Be the recommender**: the person chats with the user simulator, whose persona comes from a corpus or
is written on the page; the target is revealed when the chat ends."""

from __future__ import annotations

from typing import Any

from crsdata.space import render
from crsdata.space.chat import Chat
from crsdata.space.config import SpaceError
from crsdata.space.ui import Page, errors_visible, persona_picker, turn_box

RECOMMENDER_ACTIONS = ("auto", "greeting", "inquire", "recommend", "feedback")
INTRO = (
    "You are the recommender. The simulated user has a persona and wants a movie with certain "
    "attributes; it never knows the title. Ask, recommend (put titles in quotes or with their year, "
    'e.g. "Heat (1995)"), and see whether it accepts. The target is revealed when the chat ends.'
)


class RecommenderTab:
    """The tab's handlers (each also an API endpoint, so without a docstring: Gradio would publish it as the
    endpoint's description) and, after :meth:`build`, its components."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.space = page.space

    # -- handlers --------------------------------------------------------------------------------------------

    def start(self, corpus: str, dialogue_id: str, *models_chosen: str) -> tuple[Any, ...]:
        import gradio as gr

        user_model, recommender_model = (list(models_chosen) + ["", ""])[:2]
        chat = self.page.start_chat("recommender", corpus, dialogue_id, user_model, recommender_model)
        label = f"Persona: {chat.persona_source}"
        return (
            chat,
            [],
            f"{label}\n\n{render.persona_preview(chat)}",
            "",
            gr.Dropdown(value=chat.state.record["dialogue_id"]),
        )

    def start_written(self, general: str, watched: str, attributes: str, title: str) -> tuple[Any, ...]:
        written = {
            "general_preferences": general or "",
            "watched": watched or "",
            "target_attributes": attributes or "",
            "target_title": title or "",
        }
        chat = self.space.start_chat("recommender", written=written)
        return chat, [], f"Persona: written on this page\n\n{render.persona_preview(chat)}", ""

    def send(self, chat: Chat | None, picked: tuple[str, str] | None, text: str, action: str) -> tuple[Any, ...]:
        if chat is None:
            # Typed before pressing "Chat with this persona": start a chat with the persona shown.
            corpus, dialogue_id = picked or (self.page.first or "", "")
            chat = self.space.start_chat("recommender", corpus=corpus or "", dialogue_id=dialogue_id or "")
        self.space.reply(chat, text, action or "auto")
        ended = render.outcome_markdown(chat) if chat.finished else ""
        return chat, render.messages(chat), "", ended

    def end(self, chat: Chat | None) -> tuple[Any, ...]:
        if chat is None:
            raise SpaceError("Start a chat first.")
        self.space.end_chat(chat)
        return chat, render.outcome_markdown(chat)

    @staticmethod
    def preview(chat: Chat | None) -> str:
        return f"Persona: {chat.persona_source}\n\n{render.persona_preview(chat)}" if chat else ""

    # -- the tab ---------------------------------------------------------------------------------------------

    def build(self) -> None:
        """Lays the tab out inside the open ``gr.Tab`` and connects its events."""
        import gradio as gr

        page, max_chars = self.page, self.space.config.max_input_chars
        gr.Markdown(INTRO)
        self.state = gr.State(None)
        self.corpus, self.persona = persona_picker("rec", page.corpora, page.first_personas)
        with gr.Row():
            self.start_button = gr.Button("Chat with this persona", variant="primary", elem_id="rec-start")
            self.random_button = gr.Button("Random persona", elem_id="rec-random")
        with gr.Accordion("...or write a persona", open=False):
            self.written = [
                gr.Textbox(label="General preferences", lines=2, max_length=max_chars),
                gr.Textbox(
                    label="Watched movies, one a line: Title (Year): what you thought",
                    lines=3,
                    max_length=3 * max_chars,
                ),
                gr.Textbox(label="Target attributes: the movie the user wants now", lines=2, max_length=max_chars),
                gr.Textbox(label="Target title (optional, only revealed at the end)"),
            ]
            self.written_button = gr.Button("Chat with the written persona", elem_id="rec-start-written")
        self.preview_box = gr.Markdown(elem_id="rec-persona-preview")
        self.chat = gr.Chatbot(label="Chat (you are on the right)", height=380, elem_id="rec-chat")
        self.text, self.action, self.send_button, self.end_button, self.outcome = turn_box(
            "rec",
            f"Your turn as the recommender (up to {max_chars} characters)",
            'e.g. Have you seen "Arrival (2016)"? It is a quiet, clever science fiction film.',
            RECOMMENDER_ACTIONS,
            ("End the chat and reveal the target", "rec-end"),
        )
        self._connect()

    def _connect(self) -> None:
        import gradio as gr

        page = self.page
        self.corpus.change(errors_visible(page.persona_list), self.corpus, self.persona, api_name="persona_list")
        # The persona on show, kept in a State so that sending needs no extra inputs in the API.
        picked_state = gr.State((page.first or "", page.first_personas[0] if page.first_personas else ""))
        for picker in (self.corpus, self.persona):
            picker.change(
                lambda corpus, persona: (corpus or "", persona or ""),
                [self.corpus, self.persona],
                picked_state,
                api_name=False,
            )
        picked = errors_visible(self.start)
        started = [self.state, self.chat, self.preview_box, self.outcome, self.persona]
        self.start_button.click(picked, [self.corpus, self.persona], started, api_name="start_recommender_chat")
        self.random_button.click(
            lambda corpus: picked(corpus, ""), self.corpus, started, api_name="start_random_recommender_chat"
        )
        self.written_button.click(
            errors_visible(self.start_written),
            self.written,
            started[:4],
            api_name="start_written_chat",
        )
        send_inputs = [self.state, picked_state, self.text, self.action]
        send_outputs = [self.state, self.chat, self.text, self.outcome]
        for event, api in ((self.send_button.click, "send_as_recommender"), (self.text.submit, False)):
            event(errors_visible(self.send), send_inputs, send_outputs, api_name=api).then(
                self.preview, self.state, self.preview_box, api_name=False
            )
        self.end_button.click(
            errors_visible(self.end), self.state, [self.state, self.outcome], api_name="end_recommender_chat"
        )
