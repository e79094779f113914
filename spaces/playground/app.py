"""The crsdata Space: chat with and against the Interplay simulators (Gradio 6).

On the Hub the Space is configured with variables (see README.md): CRSDATA_SPACE_DATA names the datasets
(Hub ids or folders), CRSDATA_USER_MODEL / CRSDATA_RECOMMENDER_MODEL the models, CRSDATA_BACKEND a server.
Locally, `crsdata space` serves the same page with command-line options.
"""

from crsdata.space.app import build_app
from crsdata.space.config import SpaceConfig
from crsdata.space.session import Space

space = Space(SpaceConfig.from_env())
space.warm_up()
demo = build_app(space)

if __name__ == "__main__":
    demo.launch()
