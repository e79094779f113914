"""Tab 2, **Be the user**: the person chats with the recommender simulator; the titles it recommends come with
their catalog card (year, genres, director, stars, plot)."""

from __future__ import annotations

from typing import Any

from crsdata.space import render
from crsdata.space.chat import Chat
from crsdata.space.ui import Page, errors_visible, turn_box

USER_ACTIONS = ("auto", "greeting", "disclose-goal", "inquire", "feedback", "accept")
INTRO = (
    "You are the user: say what you feel like watching. The recommender simulator knows only this "
    "conversation. Titles it recommends are linked to the catalog, with year, genres, director, stars and plot. "
    "Choose the action `accept` to take the last recommendation."
)
NO_RECOMMENDATION = "No recommendation yet."


class UserTab:
    """The tab's handlers (each also an API endpoint, so without a docstring: Gradio would publish it as the
    endpoint's description) and, after :meth:`build`, its components."""

    def __init__(self, page: Page) -> None:
        self.space = page.space

    def start_person(self) -> tuple[Any, ...]:
        return self.space.start_chat("user"), [], "", ""

    @staticmethod
    def recommendations(chat: Chat) -> str:
        """The catalog cards of every film the recommender named, once each, in order."""
        seen: dict[str, str] = {}
        for turn in chat.state.turns:
            if turn["role"] == "recommender":
                for item in turn["items"]:
                    seen.setdefault(item["item_id"] or item["title"], render.item_card(chat.catalog, item))
        return "\n\n".join(f"Catalog: {card}" for card in seen.values()) or NO_RECOMMENDATION

    def send_as_user(self, chat: Chat | None, text: str, action: str) -> tuple[Any, ...]:
        if chat is None:
            chat = self.space.start_chat("user")
        self.space.reply(chat, text, action or "auto")
        ended = render.outcome_markdown(chat) if chat.finished else ""
        return chat, render.messages(chat), "", self.recommendations(chat), ended

    def build(self) -> None:
        """Lays the tab out inside the open ``gr.Tab`` and connects its events."""
        import gradio as gr

        gr.Markdown(INTRO)
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="Chat (you are on the right)", height=420, elem_id="user-chat")
            with gr.Column(scale=2):
                recs = gr.Markdown(NO_RECOMMENDATION, elem_id="user-recommendations")
        text, action, send, new, outcome = turn_box(
            "user",
            f"Your turn as the user (up to {self.space.config.max_input_chars} characters)",
            "e.g. I want a funny movie with a lot of heart, like Little Miss Sunshine.",
            USER_ACTIONS,
            ("New chat", "user-new"),
        )
        inputs = [state, text, action]
        outputs = [state, chat, text, recs, outcome]
        send.click(errors_visible(self.send_as_user), inputs, outputs, api_name="send_as_user")
        text.submit(errors_visible(self.send_as_user), inputs, outputs, api_name=False)
        new.click(lambda: (*self.start_person()[:3], NO_RECOMMENDATION, ""), None, outputs, api_name="new_user_chat")
