"""What the page may show: every message for a visitor passes :meth:`Redactor.public`, which takes out tokens and
local paths (a configured folder becomes its name, the working directory ``.``, the home ``~``)."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

_TOKEN = re.compile(r"\b(?:hf|sk|api)_[A-Za-z0-9]{16,}\b")
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])(?:~|/)(?:[\w.@+-]+/)+[\w.@+-]*")
_SECRET_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "CRSDATA_API_KEY")


def model_label(model: str) -> str:
    """What the page calls a model: its name, or a folder's name (never the path)."""
    path = Path(model).expanduser()
    return path.resolve().name if path.exists() else model


class Redactor:
    """Knows the secrets in the environment and the local paths the Space uses, and removes both from text.

    ``folders`` maps the names the page shows to configured folders; ``models`` are the configured model names
    or folders; ``save_dir`` is the save folder."""

    def __init__(self, folders: dict[str, str], save_dir: Path, models: Iterable[str]) -> None:
        self._secrets = [v for v in (os.environ.get(k, "") for k in _SECRET_VARIABLES) if len(v) >= 6]
        pairs = [(str(Path(p).resolve()), name) for name, p in folders.items()]
        pairs += [(p, name) for name, p in folders.items()]
        pairs.append((str(save_dir.resolve()), save_dir.name))
        for model in set(models):
            if Path(model).expanduser().exists():
                pairs.append((str(Path(model).expanduser().resolve()), model_label(model)))
        # Last, the places everything else lives under.
        pairs += [(str(Path.cwd()), "."), (tempfile.gettempdir(), "<tmp>"), (str(Path.home()), "~")]
        self._paths = sorted({p: n for p, n in pairs if len(p) > 1}.items(), key=lambda pair: -len(pair[0]))

    def public(self, text: str) -> str:
        """``text`` with tokens and local paths taken out: every message for the page goes through here."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = _TOKEN.sub("***", text)
        for path, name in self._paths:
            text = text.replace(path, name)
        return _ABSOLUTE_PATH.sub(lambda m: "<" + (Path(m.group()).name or "path") + ">", text)
