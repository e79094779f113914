"""The Gradio 6 page shared by the metric Spaces (``metrics/<name>/app.py``): evaluate's "widget".

Named after ``evaluate``'s widget so that "space" in a module name means only the simulators' Space
(:mod:`crsdata.space`).

``evaluate.utils.launch_gradio_widget`` targets Gradio 3 and no longer runs, so each Space builds this page:
a JSON editor for the module's inputs, one for the keyword options of ``compute``, and the result as JSON.
The examples shown are the metric's test cases (``metrics/<name>/examples.json``), so what a visitor can
click is what the test suite checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_examples(folder: str | Path) -> list[dict[str, Any]]:
    """The test cases of a metric folder: ``[{"name", "inputs", "options", "expected"}, ...]``."""
    path = Path(folder) / "examples.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


def _pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1)


def compute_from_json(module: Any, inputs_json: str, options_json: str) -> dict[str, Any]:
    """Parses the two JSON objects and runs ``module.compute``; errors become ``ValueError`` with a clear text."""
    try:
        inputs = json.loads(inputs_json or "{}")
        options = json.loads(options_json or "{}")
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    if not isinstance(inputs, dict) or not isinstance(options, dict):
        raise ValueError("inputs and options must each be a JSON object")
    names = list(module._feature_names())
    unknown = sorted(set(inputs) - set(names))
    missing = [n for n in names if n not in inputs]
    if unknown or missing:
        raise ValueError(f"this module takes the inputs {names}; missing {missing}, unknown {unknown}")
    return module.compute(**inputs, **options)


def build_demo(module: Any, folder: str | Path, title: str, description: str) -> Any:
    """A ``gr.Blocks`` page for ``module``; the ``compute`` endpoint is exposed as ``api_name="compute"``."""
    import gradio as gr

    examples = load_examples(folder)
    first = examples[0] if examples else {"inputs": {}, "options": {}}

    def run(inputs_json: str, options_json: str) -> dict[str, Any]:
        try:
            return compute_from_json(module, inputs_json, options_json)
        except (ValueError, TypeError) as err:  # MetricError is a ValueError; evaluate raises both on bad input
            raise gr.Error(str(err)) from None

    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {title}\n\n{description}")
        with gr.Row():
            inputs = gr.Code(
                value=_pretty(first["inputs"]),
                language="json",
                label="Inputs: a JSON object with " + ", ".join(f"`{n}`" for n in module._feature_names()),
            )
            options = gr.Code(value=_pretty(first.get("options", {})), language="json", label="Options for compute")
        button = gr.Button("Compute", variant="primary")
        result = gr.JSON(label="Result")
        button.click(run, inputs=[inputs, options], outputs=result, api_name="compute")
        if examples:
            gr.Examples(
                examples=[[_pretty(e["inputs"]), _pretty(e.get("options", {}))] for e in examples],
                inputs=[inputs, options],
                example_labels=[e.get("name", f"example {i}") for i, e in enumerate(examples)],
            )
    return demo
