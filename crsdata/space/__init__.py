"""The crsdata Space: chat with and against the Interplay simulators (``crsdata space``, ``spaces/playground``).

- :mod:`~crsdata.space.config`: :class:`SpaceConfig` (options and Space variables) and :class:`SpaceError`;
- :mod:`~crsdata.space.session`: :class:`Space`, the state every visitor shares and the chats, without Gradio;
  it uses :mod:`~crsdata.space.corpora`, :mod:`~crsdata.space.models`, :mod:`~crsdata.space.chat`,
  :mod:`~crsdata.space.privacy` (what the page may show) and :mod:`~crsdata.space.saving`;
- :mod:`~crsdata.space.render`: the Markdown the page shows;
- :mod:`~crsdata.space.app`: :func:`build_app`, the Gradio page composed of one module per tab
  (``tab_recommender``, ``tab_user``, ``tab_watch``, ``tab_browse``) and their shared widgets (``ui``).
"""
