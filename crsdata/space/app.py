"""The Gradio 6 page of the Space: four tabs over :class:`crsdata.space.session.Space`, one module each.

1. **Be the recommender** (:mod:`~crsdata.space.tab_recommender`): chat with the user simulator (a persona from a
   corpus, or written on the page).
2. **Be the user** (:mod:`~crsdata.space.tab_user`): chat with the recommender simulator; recommended titles come
   with their catalog card.
3. **Watch** (:mod:`~crsdata.space.tab_watch`): simulator against simulator, turns streaming in, then the outcome
   and the leak check; "Save".
4. **Browse a corpus** (:mod:`~crsdata.space.tab_browse`): filter and read dialogues, with the card's statistics
   and plot.

Every handler is also an API endpoint (``api_name`` in the tabs), which is how the tests drive it with
``gradio_client``. A :class:`~crsdata.space.config.SpaceError` becomes ``gr.Error`` (a visible message; the app
keeps serving); any other exception is shown by Gradio as a bare "Error", so nothing internal reaches the page.
"""

from __future__ import annotations

from typing import Any

from crsdata.space.session import Space
from crsdata.space.tab_browse import BrowseTab
from crsdata.space.tab_recommender import RecommenderTab
from crsdata.space.tab_user import UserTab
from crsdata.space.tab_watch import WatchTab
from crsdata.space.ui import Page, errors_visible

TITLE = "crsdata playground: chat with and against the Interplay simulators"
INTRO = """\
# crsdata playground

Two simulators after Interplay (reference-free conversational recommendation): a **user** who knows what kind
of movie they want (a persona and the target's attributes, never its title) and a **recommender** who knows only
the conversation. Play either side, watch them talk, or read the corpora they learn from.
"""


def build_app(space: Space) -> Any:
    """The ``gr.Blocks`` page, its queue limited to ``config.concurrency`` generations at once."""
    import gradio as gr

    config = space.config
    page = Page.of(space)
    limit_note = (
        f"At most {config.max_input_chars} characters a message and {config.max_turns} turns a chat; a reply that "
        f"takes longer than {config.timeout_s:g} s is given up."
    )
    recommender, user, watch, browse = RecommenderTab(page), UserTab(page), WatchTab(page), BrowseTab(page)
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(INTRO + "\n" + limit_note)
        with gr.Tabs():
            with gr.Tab("1 · Be the recommender", id="tab-recommender"):
                recommender.build()
            with gr.Tab("2 · Be the user", id="tab-user"):
                user.build()
            with gr.Tab("3 · Watch", id="tab-watch"):
                watch.build()
            with gr.Tab("4 · Browse a corpus", id="tab-browse"):
                browse.build()
                # Saving adds the save folder to the dataset lists of tabs 4 and 1.
                watch.save_button.click(
                    errors_visible(watch.save),
                    watch.state,
                    [watch.saved, browse.corpus, recommender.corpus],
                    api_name="save",
                )
    demo.queue(default_concurrency_limit=config.concurrency)
    return demo
