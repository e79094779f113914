"""Key/value caches for :class:`~crsdata.backends.local.LocalBackend`: written in place, and kept between calls.

Two costs dominate a simulated dialogue on a small model, and both come from the KV cache:

* transformers' ``DynamicCache`` grows by concatenation, copying the whole cache at every decoded token (a third
  of a decode step for 16 rows of SmolLM2-135M). :class:`InPlaceLayer` writes each step into a buffer allocated
  once for the prompt plus the token budget, and hands attention a view of the filled part.
* every turn of a dialogue re-sends the whole conversation. :class:`PrefixStore` keeps the key/value states of
  recent token sequences (a finished turn's prompt plus its answer); a request that starts with the same tokens
  reuses them and runs the model only on what is new: the other side's reply and the new generation prompt.

Reuse is exact in the maths: in a causal model the states of a prefix depend on that prefix alone, and a token
always gets its index in its own sequence as position, however the batch around it is padded. In floating point a
stored state may come from a pass of another shape, so it is exact as far as float32 rounding never flips a token:
tested against recomputing every prompt on the tiny random model (three 3-turn conversations, sampled and
greedy) and on SmolLM2-135M (two 6-turn RecLLMSim dialogues, 48 sampled tokens a turn), both in float32
(``tests/test_backends_kv_cache.py``).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from transformers.cache_utils import Cache, DynamicLayer


class InPlaceLayer(DynamicLayer):
    """One layer's cache in a preallocated ``[batch, heads, capacity, head_dim]`` buffer, filled left to right.

    ``keys``/``values`` are views of the filled part, so attention reads exactly what a ``DynamicLayer`` would
    hold. Writing past the capacity reallocates (doubling), which the backend avoids by sizing the buffer for
    the prompt plus the token budget.
    """

    def __init__(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor, filled: int = 0) -> None:
        super().__init__()
        self.key_buffer, self.value_buffer = key_buffer, value_buffer
        self.dtype, self.device = key_buffer.dtype, key_buffer.device
        self.is_initialized = True
        self._set_filled(filled)

    def _set_filled(self, filled: int) -> None:
        self.filled = filled
        self.keys = self.key_buffer[:, :, :filled]
        self.values = self.value_buffer[:, :, :filled]

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Nothing to do: the buffer exists from the start."""

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.filled + key_states.shape[-2]
        if end > self.key_buffer.shape[-2]:
            self._grow(max(end, 2 * self.key_buffer.shape[-2]))
        self.key_buffer[:, :, self.filled : end] = key_states
        self.value_buffer[:, :, self.filled : end] = value_states
        self._set_filled(end)
        return self.keys, self.values

    def _grow(self, capacity: int) -> None:
        shape = (*self.key_buffer.shape[:2], capacity, self.key_buffer.shape[-1])
        keys = self.key_buffer.new_empty(shape)
        values = self.value_buffer.new_empty((*shape[:3], self.value_buffer.shape[-1]))
        keys[:, :, : self.filled] = self.keys
        values[:, :, : self.filled] = self.values
        self.key_buffer, self.value_buffer = keys, values
        self._set_filled(self.filled)

    def get_seq_length(self) -> int:
        return self.filled

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.key_buffer = self.key_buffer.index_select(0, indices)
        self.value_buffer = self.value_buffer.index_select(0, indices)
        self._set_filled(self.filled)

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("InPlaceLayer does not crop")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("InPlaceLayer does not repeat rows")


class InPlaceCache(Cache):
    """A model cache made of :class:`InPlaceLayer`; ``filled`` positions already hold states."""

    def __init__(self, key_buffers: list[torch.Tensor], value_buffers: list[torch.Tensor], filled: int = 0) -> None:
        layers = [InPlaceLayer(k, v, filled) for k, v in zip(key_buffers, value_buffers, strict=True)]
        super().__init__(layers=layers)


def cache_argument(model: torch.nn.Module) -> str:
    """The keyword under which ``model``'s forward takes a cache: ``cache`` from transformers 5.24 on (where
    ``past_key_values`` warns at every call and goes away in 5.40), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@dataclass(frozen=True)
class KVShape:
    """What one layer's states look like for this model: the cache buffers are built from it."""

    layers: int
    key_heads: int
    key_dim: int
    value_dim: int
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of(cls, model: torch.nn.Module) -> KVShape:
        """Probes the model with one token, so any attention layout transformers supports is read as it is."""
        parameter = next(model.parameters())
        cache = Cache(layer_class_to_replicate=DynamicLayer)
        with torch.inference_mode():
            tokens = torch.zeros((1, 1), dtype=torch.long, device=parameter.device)
            model(input_ids=tokens, **{cache_argument(model): cache})
        layer = cache.layers[0]
        shapes = {(tuple(x.keys.shape), tuple(x.values.shape)) for x in cache.layers}
        if len(shapes) != 1 or any(not x.is_initialized for x in cache.layers):
            raise ValueError("layers with different key/value shapes are not supported by the in-place cache")
        return cls(
            layers=len(cache.layers),
            key_heads=layer.keys.shape[1],
            key_dim=layer.keys.shape[-1],
            value_dim=layer.values.shape[-1],
            dtype=layer.keys.dtype,
            device=layer.keys.device,
        )

    def bytes_per_token(self) -> int:
        element = torch.empty((), dtype=self.dtype).element_size()
        return self.layers * self.key_heads * (self.key_dim + self.value_dim) * element

    def buffers(self, rows: int, capacity: int, zero: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Key and value buffers, one pair per layer. ``zero`` for buffers with padding: attention gives padded
        positions weight 0, and 0 times leftover memory can still be NaN."""
        make = torch.zeros if zero else torch.empty
        options = {"dtype": self.dtype, "device": self.device}
        keys = [make((rows, self.key_heads, capacity, self.key_dim), **options) for _ in range(self.layers)]
        values = [make((rows, self.key_heads, capacity, self.value_dim), **options) for _ in range(self.layers)]
        return keys, values


@dataclass
class StoredPrefix:
    """Token ids and, per layer, their key and value states ``[heads, len(ids), dim]``."""

    ids: np.ndarray
    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


class PrefixStore:
    """Recently processed token sequences with their key/value states, least recently used evicted first.

    ``match`` finds the stored sequence sharing the longest prefix with a new prompt (any common prefix counts, so
    the instructions at the head of every dialogue of a run are shared too). ``put`` stores a sequence and drops
    those it extends. ``max_bytes`` bounds the memory held; 0 turns the store off.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, StoredPrefix] = OrderedDict()
        self._next_key = 0
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, ids: np.ndarray) -> tuple[StoredPrefix | None, int]:
        """The entry with the longest common prefix with ``ids`` and that prefix's length (None, 0 if none)."""
        best, best_key, best_length = None, None, 0
        for key, entry in self._entries.items():
            length = _common_prefix(entry.ids, ids)
            if length > best_length:
                best, best_key, best_length = entry, key, length
        if best_key is not None:
            self._entries.move_to_end(best_key)
        return best, best_length

    def put(self, ids: np.ndarray, keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        """Stores ``ids`` with its states (which the store now owns), unless an entry already extends it."""
        entry = StoredPrefix(ids, keys, values)
        if not self.max_bytes or entry.nbytes > self.max_bytes or not len(ids):
            return
        for key, other in list(self._entries.items()):
            shared = _common_prefix(other.ids, ids)
            if shared == len(ids):  # an entry already holds all of it
                self._entries.move_to_end(key)
                return
            if shared == len(other.ids):  # the new sequence extends this entry, which it replaces
                self._drop(key)
        self._entries[self._next_key] = entry
        self._next_key += 1
        self.nbytes += entry.nbytes
        while self.nbytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0

    def _drop(self, key: int) -> None:
        self.nbytes -= self._entries.pop(key).nbytes


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differs = np.flatnonzero(a[:n] != b[:n])
    return int(differs[0]) if len(differs) else n
