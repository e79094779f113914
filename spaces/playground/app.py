"""The crsdata playground Space: chat with and against the Interplay simulators (Gradio 6).

On the Hub the Space is configured with variables (see README.md): CRSDATA_SPACE_DATA names the datasets
(Hub ids or folders), CRSDATA_USER_MODEL / CRSDATA_RECOMMENDER_MODEL the models, CRSDATA_BACKEND a server.
Locally, `crsdata space` serves the same page with command-line options.
"""

from crsdata.playground import Playground, PlaygroundConfig
from crsdata.playground_ui import build_app

playground = Playground(PlaygroundConfig.from_env())
playground.warm_up()
demo = build_app(playground)

if __name__ == "__main__":
    demo.launch()
