"""Card templates (Jinja2) for the datasets, models and metrics that crsdata publishes."""

from pathlib import Path

TEMPLATES = Path(__file__).parent


def template_path(name: str) -> Path:
    path = TEMPLATES / f"{name}.md.jinja"
    if not path.is_file():
        known = ", ".join(sorted(p.name.removesuffix(".md.jinja") for p in TEMPLATES.glob("*.md.jinja")))
        raise FileNotFoundError(f"no card template {name!r} in {TEMPLATES} (known: {known})")
    return path
