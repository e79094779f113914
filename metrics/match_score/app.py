"""Gradio 6 Space for the `match_score` evaluate module (`python app.py` serves it locally)."""

from pathlib import Path

import evaluate

from crsdata.metrics.widget import build_demo

HERE = Path(__file__).resolve().parent
# Load by file path: on a Space the folder is not named after the module, so a folder path would not resolve.
module = evaluate.load(str(HERE / "match_score.py"))
demo = build_demo(module, HERE, title="Match Score", description=module.description)

if __name__ == "__main__":
    demo.launch()
