"""What the tabs of the page share: the page's starting choices, the error wrapper, the persona picker and the
person's turn box. Gradio is imported inside the functions, so the package imports without it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from crsdata.space.chat import Chat
from crsdata.space.config import SpaceError
from crsdata.space.session import Space


@dataclass
class Page:
    """The Space and what the page offers when it opens: dataset names, the first one's personas, the models."""

    space: Space
    corpora: list[str]
    first: str | None
    first_personas: list[str]
    models: list[str]

    @classmethod
    def of(cls, space: Space) -> Page:
        corpora = space.corpus_names()
        first = corpora[0] if corpora else None
        personas = space.persona_choices(space.corpus(first)) if first else []
        return cls(space, corpora, first, personas, space.models())

    def start_chat(
        self, mode: str, corpus: str | None, dialogue_id: str | None, user_model: str = "", recommender_model: str = ""
    ) -> Chat:
        """A chat from a persona picker's values (Gradio sends None for an empty dropdown: the defaults)."""
        return self.space.start_chat(
            mode,
            corpus=corpus or "",
            dialogue_id=dialogue_id or "",
            user_model=user_model or "",
            recommender_model=recommender_model or "",
        )

    # The persona dropdown for a chosen dataset (tabs 1 and 3). Handlers carry no docstring: Gradio would show it
    # as the endpoint's description in the API page.
    def persona_list(self, corpus: str) -> Any:
        import gradio as gr

        choices = self.space.persona_choices(self.space.corpus(corpus)) if corpus else []
        return gr.Dropdown(choices=choices, value=choices[0] if choices else None)


def errors_visible(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turns SpaceError into gr.Error (shown on the page), for plain and generator handlers."""
    import gradio as gr

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args: Any) -> Iterator[Any]:
            try:
                yield from fn(*args)
            except SpaceError as err:
                raise gr.Error(str(err)) from None

        return stream

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except SpaceError as err:
            raise gr.Error(str(err)) from None

    return call


def persona_picker(prefix: str, corpora: list[str], personas: list[str]) -> tuple[Any, Any]:
    """A dataset dropdown and a persona dropdown (dialogue ids; any id of the dataset may be typed)."""
    import gradio as gr

    with gr.Row():
        first = corpora[0] if corpora else None
        corpus = gr.Dropdown(corpora, value=first, label="Dataset", elem_id=f"{prefix}-corpus")
        persona = gr.Dropdown(
            personas,
            value=personas[0] if personas else None,
            label="Persona (dialogue id)",
            allow_custom_value=True,
            elem_id=f"{prefix}-persona",
        )
    return corpus, persona


def turn_box(
    prefix: str, label: str, placeholder: str, actions: tuple[str, ...], other: tuple[str, str]
) -> tuple[Any, ...]:
    """The person's side of a chat: text, action, Send, a second button ``(label, elem_id)`` and the outcome."""
    import gradio as gr

    with gr.Row():
        text = gr.Textbox(label=label, placeholder=placeholder, scale=4, elem_id=f"{prefix}-text")
        action = gr.Dropdown(list(actions), value="auto", label="Action", scale=1)
    with gr.Row():
        send = gr.Button("Send", variant="primary", elem_id=f"{prefix}-send")
        second = gr.Button(other[0], elem_id=other[1])
    return text, action, send, second, gr.Markdown(elem_id=f"{prefix}-outcome")
