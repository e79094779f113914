"""The Gradio 6 page of the playground Space: four tabs over :class:`crsdata.playground.Playground`.

1. **Be the recommender**: chat with the user simulator (a persona from a corpus, or written on the page).
2. **Be the user**: chat with the recommender simulator; recommended titles come with their catalog card.
3. **Watch**: simulator against simulator, turns streaming in, then the outcome and the leak check; "Save".
4. **Browse a corpus**: filter and read dialogues, with the card's statistics and plot.

Every handler is also an API endpoint (``api_name`` below), which is how the tests drive it with
``gradio_client``. A :class:`~crsdata.playground.PlaygroundError` becomes ``gr.Error`` (a visible message; the
app keeps serving); any other exception is shown by Gradio as a bare "Error", so nothing internal reaches the page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

from crsdata.playground import Chat, Playground, PlaygroundError

TITLE = "crsdata playground: chat with and against the Interplay simulators"
INTRO = """\
# crsdata playground

Two simulators after Interplay (reference-free conversational recommendation): a **user** who knows what kind
of movie they want (a persona and the target's attributes, never its title) and a **recommender** who knows only
the conversation. Play either side, watch them talk, or read the corpora they learn from.
"""
USER_ACTIONS = ("auto", "greeting", "disclose-goal", "inquire", "feedback", "accept")
RECOMMENDER_ACTIONS = ("auto", "greeting", "inquire", "recommend", "feedback")


def _errors_visible(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turns PlaygroundError into gr.Error (shown on the page), for plain and generator handlers."""
    import inspect

    import gradio as gr

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args: Any) -> Iterator[Any]:
            try:
                yield from fn(*args)
            except PlaygroundError as err:
                raise gr.Error(str(err)) from None

        return stream

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except PlaygroundError as err:
            raise gr.Error(str(err)) from None

    return call


def build_app(playground: Playground) -> Any:
    """The ``gr.Blocks`` page, its queue limited to ``config.concurrency`` generations at once."""
    import gradio as gr

    pg = playground
    config = pg.config
    corpora = pg.corpus_names()
    first = corpora[0] if corpora else None
    first_personas = pg.persona_choices(pg.corpus(first)) if first else []
    models = pg.models()
    limit_note = (
        f"At most {config.max_input_chars} characters a message and {config.max_turns} turns a chat; a reply that "
        f"takes longer than {config.timeout_s:g} s is given up."
    )

    def persona_list(corpus: str) -> Any:
        choices = pg.persona_choices(pg.corpus(corpus)) if corpus else []
        return gr.Dropdown(choices=choices, value=choices[0] if choices else None)

    def start_picked(mode: str) -> Callable[..., Any]:
        def start(corpus: str, dialogue_id: str, *models_chosen: str) -> tuple[Any, ...]:
            user_model, recommender_model = (list(models_chosen) + ["", ""])[:2]
            chat = pg.start_chat(
                mode,
                corpus=corpus or "",
                dialogue_id=dialogue_id or "",
                user_model=user_model or "",
                recommender_model=recommender_model or "",
            )
            label = f"Persona: {chat.persona_source}"
            return (
                chat,
                [],
                f"{label}\n\n{pg.persona_preview(chat)}",
                "",
                gr.Dropdown(value=chat.state.record["dialogue_id"]),
            )

        return start

    def start_written(general: str, watched: str, attributes: str, title: str) -> tuple[Any, ...]:
        written = {
            "general_preferences": general or "",
            "watched": watched or "",
            "target_attributes": attributes or "",
            "target_title": title or "",
        }
        chat = pg.start_chat("recommender", written=written)
        return chat, [], f"Persona: written on this page\n\n{pg.persona_preview(chat)}", ""

    def send(chat: Chat | None, picked: tuple[str, str] | None, text: str, action: str) -> tuple[Any, ...]:
        if chat is None:
            # Typed before pressing "Chat with this persona": start a chat with the persona shown.
            corpus, dialogue_id = picked or (first or "", "")
            chat = pg.start_chat("recommender", corpus=corpus or "", dialogue_id=dialogue_id or "")
        pg.reply(chat, text, action or "auto")
        ended = pg.outcome_markdown(chat) if chat.finished else ""
        return chat, pg.messages(chat), "", ended

    def end(chat: Chat | None) -> tuple[Any, ...]:
        if chat is None:
            raise PlaygroundError("Start a chat first.")
        pg.end_chat(chat)
        return chat, pg.outcome_markdown(chat)

    def start_person() -> tuple[Any, ...]:
        return pg.start_chat("user"), [], "", ""

    def recommendations(chat: Chat) -> str:
        seen: dict[str, str] = {}
        for turn in chat.state.turns:
            if turn["role"] == "recommender":
                for item in turn["items"]:
                    seen.setdefault(item["item_id"] or item["title"], pg.item_card(chat.catalog, item))
        return "\n\n".join(f"Catalog: {card}" for card in seen.values()) or "No recommendation yet."

    def send_as_user(chat: Chat | None, text: str, action: str) -> tuple[Any, ...]:
        if chat is None:
            chat = pg.start_chat("user")
        pg.reply(chat, text, action or "auto")
        ended = pg.outcome_markdown(chat) if chat.finished else ""
        return chat, pg.messages(chat), "", recommendations(chat), ended

    def watch(corpus: str, dialogue_id: str, user_model: str, recommender_model: str) -> Iterator[tuple[Any, ...]]:
        chat = pg.start_chat(
            "watch",
            corpus=corpus or "",
            dialogue_id=dialogue_id or "",
            user_model=user_model or "",
            recommender_model=recommender_model or "",
        )
        preview = f"Persona: {chat.persona_source}\n\n{pg.persona_preview(chat)}"
        yield chat, [], preview, "Running...", ""
        for _ in pg.watch(chat):
            done = pg.outcome_markdown(chat) if chat.finished else f"Running... {len(chat.state.turns)} turns"
            yield chat, pg.messages(chat), preview, done, ""

    def save(chat: Chat | None) -> tuple[Any, ...]:
        if chat is None:
            raise PlaygroundError("Run a chat first.")
        message = pg.save(chat)
        names = pg.corpus_names()
        return message, gr.Dropdown(choices=names), gr.Dropdown(choices=names)

    def open_corpus(name: str, revision: str) -> tuple[Any, ...]:
        corpus = pg.corpus(name or "", revision or "")
        records = corpus.records
        splits = [""] + sorted({r["split"] for r in records})
        reasons = [""] + sorted({r["outcome"]["end_reason"] for r in records})
        actions = [""] + sorted({t["action"] for r in records for t in r["turns"]})
        shown, count = _dialogue_choices(corpus.records)
        return (
            pg.stats_markdown(corpus),
            pg.plot_html(corpus),
            gr.Dropdown(choices=splits, value=""),
            gr.Dropdown(choices=reasons, value=""),
            gr.Dropdown(choices=actions, value=""),
            gr.Dropdown(choices=shown, value=shown[0] if shown else None),
            count,
        )

    def filter_corpus(name: str, revision: str, split: str, reason: str, action: str, text: str) -> tuple[Any, ...]:
        corpus = pg.corpus(name or "", revision or "")
        found = pg.filter_dialogues(corpus, split or "", reason or "", action or "", text or "")
        shown, count = _dialogue_choices(found)
        return gr.Dropdown(choices=shown, value=shown[0] if shown else None), count

    def show_dialogue(name: str, revision: str, dialogue_id: str) -> tuple[Any, ...]:
        if not dialogue_id:
            return [], ""
        corpus = pg.corpus(name or "", revision or "")
        record = corpus.by_id.get(dialogue_id)
        if record is None:
            raise PlaygroundError(f"{corpus.name} has no dialogue {dialogue_id!r}.")
        return pg.browse_messages(corpus, record), pg.dialogue_markdown(corpus, record)

    visible = _errors_visible
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(INTRO + "\n" + limit_note)
        with gr.Tabs():
            # 1 -------------------------------------------------------------------------------------------
            with gr.Tab("1 · Be the recommender", id="tab-recommender"):
                gr.Markdown(
                    "You are the recommender. The simulated user has a persona and wants a movie with certain "
                    "attributes; it never knows the title. Ask, recommend (put titles in quotes or with their year, "
                    'e.g. "Heat (1995)"), and see whether it accepts. The target is revealed when the chat ends.'
                )
                rec_state = gr.State(None)
                rec_corpus, rec_persona = _persona_picker("rec", corpora, first_personas)
                with gr.Row():
                    rec_start = gr.Button("Chat with this persona", variant="primary", elem_id="rec-start")
                    rec_random = gr.Button("Random persona", elem_id="rec-random")
                with gr.Accordion("...or write a persona", open=False):
                    w_general = gr.Textbox(label="General preferences", lines=2, max_length=config.max_input_chars)
                    w_watched = gr.Textbox(
                        label="Watched movies, one a line: Title (Year): what you thought",
                        lines=3,
                        max_length=3 * config.max_input_chars,
                    )
                    w_attributes = gr.Textbox(
                        label="Target attributes: the movie the user wants now",
                        lines=2,
                        max_length=config.max_input_chars,
                    )
                    w_title = gr.Textbox(label="Target title (optional, only revealed at the end)")
                    w_start = gr.Button("Chat with the written persona", elem_id="rec-start-written")
                rec_preview = gr.Markdown(elem_id="rec-persona-preview")
                rec_chat = gr.Chatbot(label="Chat (you are on the right)", height=380, elem_id="rec-chat")
                rec_text, rec_action, rec_send, rec_end, rec_outcome = _turn_box(
                    "rec",
                    f"Your turn as the recommender (up to {config.max_input_chars} characters)",
                    'e.g. Have you seen "Arrival (2016)"? It is a quiet, clever science fiction film.',
                    RECOMMENDER_ACTIONS,
                    ("End the chat and reveal the target", "rec-end"),
                )

                rec_corpus.change(visible(persona_list), rec_corpus, rec_persona, api_name="persona_list")
                # The persona on show, kept in a State so that sending needs no extra inputs in the API.
                rec_picked = gr.State((first or "", first_personas[0] if first_personas else ""))
                for picker in (rec_corpus, rec_persona):
                    picker.change(
                        lambda corpus, persona: (corpus or "", persona or ""),
                        [rec_corpus, rec_persona],
                        rec_picked,
                        api_name=False,
                    )
                picked = visible(start_picked("recommender"))
                rec_start.click(
                    picked,
                    [rec_corpus, rec_persona],
                    [rec_state, rec_chat, rec_preview, rec_outcome, rec_persona],
                    api_name="start_recommender_chat",
                )
                rec_random.click(
                    lambda corpus: picked(corpus, ""),
                    rec_corpus,
                    [rec_state, rec_chat, rec_preview, rec_outcome, rec_persona],
                    api_name="start_random_recommender_chat",
                )
                w_start.click(
                    visible(start_written),
                    [w_general, w_watched, w_attributes, w_title],
                    [rec_state, rec_chat, rec_preview, rec_outcome],
                    api_name="start_written_chat",
                )
                send_inputs = [rec_state, rec_picked, rec_text, rec_action]
                send_outputs = [rec_state, rec_chat, rec_text, rec_outcome]

                def preview(chat: Chat | None) -> str:
                    return f"Persona: {chat.persona_source}\n\n{pg.persona_preview(chat)}" if chat else ""

                for event, api in ((rec_send.click, "send_as_recommender"), (rec_text.submit, False)):
                    event(visible(send), send_inputs, send_outputs, api_name=api).then(
                        preview, rec_state, rec_preview, api_name=False
                    )
                rec_end.click(visible(end), rec_state, [rec_state, rec_outcome], api_name="end_recommender_chat")

            # 2 -------------------------------------------------------------------------------------------
            with gr.Tab("2 · Be the user", id="tab-user"):
                gr.Markdown(
                    "You are the user: say what you feel like watching. The recommender simulator knows only this "
                    "conversation. Titles it recommends are linked to the catalog, with year, genres and plot. "
                    "Choose the action `accept` to take the last recommendation."
                )
                user_state = gr.State(None)
                with gr.Row():
                    with gr.Column(scale=3):
                        user_chat = gr.Chatbot(label="Chat (you are on the right)", height=420, elem_id="user-chat")
                    with gr.Column(scale=2):
                        user_recs = gr.Markdown("No recommendation yet.", elem_id="user-recommendations")
                user_text, user_action, user_send, user_new, user_outcome = _turn_box(
                    "user",
                    f"Your turn as the user (up to {config.max_input_chars} characters)",
                    "e.g. I want a funny movie with a lot of heart, like Little Miss Sunshine.",
                    USER_ACTIONS,
                    ("New chat", "user-new"),
                )
                user_inputs = [user_state, user_text, user_action]
                user_outputs = [user_state, user_chat, user_text, user_recs, user_outcome]
                user_send.click(visible(send_as_user), user_inputs, user_outputs, api_name="send_as_user")
                user_text.submit(visible(send_as_user), user_inputs, user_outputs, api_name=False)
                user_new.click(
                    lambda: (*start_person()[:3], "No recommendation yet.", ""),
                    None,
                    user_outputs,
                    api_name="new_user_chat",
                )

            # 3 -------------------------------------------------------------------------------------------
            with gr.Tab("3 · Watch", id="tab-watch"):
                gr.Markdown(
                    "Both simulators talk; turns appear as they are generated. At the end: the outcome, whether the "
                    "recommender reached the target, and the leak check (did the user name the target before the "
                    "recommender did?). Save appends the dialogue to a local dataset folder in the crsdata schema."
                )
                watch_state = gr.State(None)
                with gr.Row():
                    watch_user_model = gr.Dropdown(models, value=models[0], label="User simulator model")
                    watch_rec_model = gr.Dropdown(
                        models, value=pg.model_label(config.recommender_model), label="Recommender simulator model"
                    )
                watch_corpus, watch_persona = _persona_picker("watch", corpora, first_personas)
                watch_run = gr.Button("Run", variant="primary", elem_id="watch-run")
                watch_preview = gr.Markdown()
                watch_chat = gr.Chatbot(
                    label="Recommender on the left, user on the right", height=640, elem_id="watch-chat"
                )
                watch_outcome = gr.Markdown(elem_id="watch-outcome")
                with gr.Row():
                    watch_save = gr.Button("Save", elem_id="watch-save")
                    watch_saved = gr.Markdown(elem_id="watch-saved")
                watch_corpus.change(visible(persona_list), watch_corpus, watch_persona, api_name=False)
                watch_run.click(
                    visible(watch),
                    [watch_corpus, watch_persona, watch_user_model, watch_rec_model],
                    [watch_state, watch_chat, watch_preview, watch_outcome, watch_saved],
                    api_name="watch",
                )

            # 4 -------------------------------------------------------------------------------------------
            with gr.Tab("4 · Browse a corpus", id="tab-browse"):
                gr.Markdown("Open a built or simulated dataset, or a Hub dataset id (with a revision), and read it.")
                with gr.Row():
                    browse_corpus = gr.Dropdown(
                        corpora,
                        value=first,
                        label="Dataset (or type a Hub id: org/name)",
                        allow_custom_value=True,
                        elem_id="browse-corpus",
                    )
                    browse_revision = gr.Textbox(label="Revision (Hub ids only: a tag, branch or commit)")
                    browse_open = gr.Button("Open", variant="primary", elem_id="browse-open")
                with gr.Row():
                    f_split = gr.Dropdown([""], value="", label="Split")
                    f_reason = gr.Dropdown([""], value="", label="End reason")
                    f_action = gr.Dropdown([""], value="", label="Action", elem_id="browse-action")
                    f_text = gr.Textbox(label="Text contains", elem_id="browse-text")
                    f_apply = gr.Button("Filter", elem_id="browse-filter")
                with gr.Row():
                    browse_dialogue = gr.Dropdown([], label="Dialogue", elem_id="browse-dialogue")
                    browse_count = gr.Markdown(elem_id="browse-count")
                browse_header = gr.Markdown(elem_id="browse-header")
                browse_chat = gr.Chatbot(
                    label="Dialogue (user on the right)", height=560, autoscroll=False, elem_id="browse-chat"
                )
                with gr.Accordion("The card's statistics and plot", open=True):
                    with gr.Row():
                        browse_stats = gr.Markdown(elem_id="browse-stats")
                        browse_plot = gr.HTML(elem_id="browse-plot")
                browse_open.click(
                    visible(open_corpus),
                    [browse_corpus, browse_revision],
                    [browse_stats, browse_plot, f_split, f_reason, f_action, browse_dialogue, browse_count],
                    api_name="open_corpus",
                ).then(
                    visible(show_dialogue),
                    [browse_corpus, browse_revision, browse_dialogue],
                    [browse_chat, browse_header],
                    api_name=False,
                )
                f_apply.click(
                    visible(filter_corpus),
                    [browse_corpus, browse_revision, f_split, f_reason, f_action, f_text],
                    [browse_dialogue, browse_count],
                    api_name="filter_corpus",
                )
                browse_dialogue.change(
                    visible(show_dialogue),
                    [browse_corpus, browse_revision, browse_dialogue],
                    [browse_chat, browse_header],
                    api_name="show_dialogue",
                )
                watch_save.click(visible(save), watch_state, [watch_saved, browse_corpus, rec_corpus], api_name="save")
    demo.queue(default_concurrency_limit=config.concurrency)
    return demo


def _persona_picker(prefix: str, corpora: list[str], personas: list[str]) -> tuple[Any, Any]:
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


def _turn_box(
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


MAX_LISTED = 1000


def _dialogue_choices(records: list[dict[str, Any]]) -> tuple[list[str], str]:
    ids = [r["dialogue_id"] for r in records[:MAX_LISTED]]
    more = f" (the first {MAX_LISTED} listed)" if len(records) > MAX_LISTED else ""
    return ids, f"{len(records):,} dialogues match{more}."
