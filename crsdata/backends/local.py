"""A transformers model in this process, decoding many conversations per forward pass.

``model.generate`` draws every row's samples from one shared RNG, so a request's text would depend on which
other requests share its batch. :class:`LocalBackend` therefore runs its own decode loop: prompts run in groups
of similar length (padding a group to its longest prompt is bounded, see :meth:`LocalBackend._plan_prefill`),
then the rows are decoded together, left-padded, one token per row per forward pass, with a
``torch.Generator`` per row seeded from that request's seed, from which each step draws exactly one uniform number
per row (none when greedy). Sampling is inverse-CDF on that number, so a row's tokens depend only on its own
logits and its own stream. Rows that finish leave the batch, so long answers do not make short ones pay.

Key/value states are written in place (:mod:`crsdata.backends.kv_cache`) and kept after each call: the next
turn of a dialogue starts with the same tokens as the last one, so only its new part runs through the model.

Batching changes only the floating-point order of the matrix products, not the maths: in float32 that noise is
~1e-6 and we have not seen it flip a token (``tests/test_backends_local.py``: the tiny model's mixed batches, and
SmolLM2-135M's batched prompts and thread counts, against each prompt alone). In bfloat16 every layer's output
is rounded to 8 bits of mantissa, and the same noise flips tokens: with SmolLM2-135M, 8 of 8 sampled answers
(64 tokens) and 5 of 8 greedy ones differed between a batch of eight and each prompt alone. Exact batch
invariance, which resuming relies on, is therefore a float32 property, and float32 is the default.

``SamplingParams.repetition_penalty`` and ``no_repeat_ngram_size`` run transformers' own logits processors
(:func:`logits_processors`) on each row's logits with that row's answer so far as its history, one row at a
time, since the rows of a batch have answers of different lengths; so they keep batch invariance. The prompt is
not part of the history: it holds the action markup of every earlier turn, which a 3-gram ban would forbid.
``SamplingParams.sequence_bias`` runs transformers' ``SequenceBiasLogitsProcessor`` the same way, so a bias on
`` <action><accept`` moves the user simulator's accept decision and nothing else it writes. With all three off
(1.0, 0 and no bias, the defaults) the logits are not touched. A request's ``banned_words`` run transformers'
``NoBadWordsLogitsProcessor`` on its row alone, the same way, and its ``title_choices`` hold what it writes inside a
``<movie_title>`` tag to those titles (:mod:`crsdata.backends.constraints`).

The keyword under which the model takes the cache follows the installed transformers
(:func:`~crsdata.backends.kv_cache.cache_argument`: ``cache`` from 5.24, ``past_key_values`` before).
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessorList,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
)

from crsdata.backends.base import (
    DEFAULT_PREFIX_CACHE_MB,
    Backend,
    BackendError,
    ChatRequest,
    Generation,
    SamplingParams,
)
from crsdata.backends.constraints import TitleConstraint
from crsdata.backends.context import PromptTooLong, fit_request
from crsdata.backends.embedded import embedded_model_id, resolve_model
from crsdata.backends.kv_cache import InPlaceCache, KVShape, PrefixStore, cache_argument

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
# End-of-turn markers of common chat formats; used only when the tokenizer has them in its vocabulary.
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")


@dataclass
class PromptStats:
    """Prompt tokens sent to the backend and how many of them came from kept states instead of the model."""

    prompt_tokens: int = 0
    reused_tokens: int = 0

    @property
    def reused_fraction(self) -> float:
        return self.reused_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def _pick_dtype(dtype: str | torch.dtype) -> torch.dtype | str:
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)} or 'auto', not {dtype!r}") from None


def _nucleus_sample(probs: torch.Tensor, top_p: float, uniforms: torch.Tensor) -> torch.Tensor:
    """Top-p sampling by inverse CDF over the smallest set of most likely tokens whose mass reaches ``top_p``.

    A full sort of a 49k vocabulary costs ~10 ms per row on a CPU, more than the model's forward pass, so each row
    first tries its 64 most likely tokens and only rows whose nucleus is wider try 512, 4096, then everything. A
    row's width depends only on its own probabilities, so the batch never changes which path a row takes.
    """
    rows, vocab = probs.shape
    picked = torch.empty(rows, dtype=torch.long, device=probs.device)
    pending = torch.arange(rows, device=probs.device)
    width = 64
    while pending.numel():
        width = min(width, vocab)
        part = probs if pending.numel() == rows else probs.index_select(0, pending)
        top, index = part.topk(width, dim=-1)
        # topk leaves the order of equal probabilities open; order them by token id so it is always the same.
        by_id = index.argsort(dim=-1)
        top, index = top.gather(-1, by_id), index.gather(-1, by_id)
        by_prob = top.argsort(dim=-1, descending=True, stable=True)
        top, index = top.gather(-1, by_prob), index.gather(-1, by_prob)
        mass = top.double()
        cumulative = mass.cumsum(dim=-1)
        # The smallest prefix whose mass reaches top_p (the most likely token always survives).
        outside = cumulative - mass >= top_p
        outside[:, 0] = False
        if width < vocab:
            # Done when the prefix fits, and no token outside the top `width` ties with its last one (topk picks
            # among ties arbitrarily, so such a row needs a wider look to keep the token-id order).
            last = top.gather(-1, (width - outside.sum(dim=-1, keepdim=True) - 1)).squeeze(-1)
            done = (cumulative[:, -1] >= top_p) & (last > top[:, -1])
        else:
            done = torch.ones(len(pending), dtype=torch.bool, device=probs.device)
        if bool(done.any()):
            index, mass, outside = index[done], mass[done], outside[done]
            kept = mass.masked_fill(outside, 0.0).cumsum(dim=-1)
            target = (uniforms.index_select(0, pending[done]) * kept[:, -1]).unsqueeze(-1)
            choice = torch.searchsorted(kept, target, right=True).clamp_(max=width - 1)
            picked[pending[done]] = index.gather(-1, choice).squeeze(-1)
        pending = pending[~done]
        width *= 8
    return picked


def logits_processors(params: SamplingParams, tokenizer: Any = None) -> LogitsProcessorList:
    """transformers' repetition penalty, n-gram ban and sequence bias for ``params`` (an empty list when all are
    off); a sequence bias needs the ``tokenizer`` to turn its texts into token ids."""
    processors = LogitsProcessorList()
    if params.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if params.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGramLogitsProcessor(params.no_repeat_ngram_size))
    if params.sequence_bias:
        if tokenizer is None:
            raise ValueError("a sequence bias needs the tokenizer of the model it biases")
        pairs = [[tokenizer(text, add_special_tokens=False)["input_ids"], float(b)] for text, b in params.sequence_bias]
        if any(not ids for ids, _ in pairs):
            raise ValueError(f"a sequence bias text encodes to no token: {params.sequence_bias}")
        processors.append(SequenceBiasLogitsProcessor(pairs))
    return processors


def banned_words_processor(tokenizer: Any, words: Sequence[str]) -> NoBadWordsLogitsProcessor | None:
    """transformers' ban on the token sequences of ``words`` (lower-case, capitalised, as written; with and
    without a leading space), None for no words."""
    variants = {f"{space}{form}" for w in words for form in (w, w.lower(), w.capitalize()) for space in ("", " ")}
    sequences = {tuple(tokenizer(v, add_special_tokens=False)["input_ids"]) for v in variants if v.strip()}
    sequences = {s for s in sequences if s and s != (tokenizer.eos_token_id,)}
    if not sequences:
        return None
    return NoBadWordsLogitsProcessor([list(s) for s in sorted(sequences)], eos_token_id=tokenizer.eos_token_id)


def process_rows(
    logits: torch.Tensor,
    histories: list[list[int]],
    processors: LogitsProcessorList,
    bans: Sequence[tuple[list[int], NoBadWordsLogitsProcessor | None]] = (),
    titles: Sequence[TitleConstraint | None] = (),
) -> torch.Tensor:
    """``logits`` ``[rows, vocab]`` with ``processors`` applied to each row alone, given that row's token history
    (so a row's result never depends on the other rows or on padding); rows with no history are left as they
    are. ``bans``: per row, a history (the end of its prompt and its answer so far) and that row's ban, if any.
    ``titles``: per row, its title constraint, if any, given the row's answer so far (``histories``)."""
    if not processors and not any(ban for _, ban in bans) and not any(titles):
        return logits
    out = logits.clone()
    for row, history in enumerate(histories):
        if history and processors:
            ids = torch.tensor([history], dtype=torch.long, device=logits.device)
            out[row : row + 1] = processors(ids, out[row : row + 1])
    for row, (history, ban) in enumerate(bans):
        if ban is not None:
            ids = torch.tensor([history], dtype=torch.long, device=logits.device)
            out[row : row + 1] = ban(ids, out[row : row + 1])
    for row, constraint in enumerate(titles):
        if constraint is not None:
            out[row : row + 1] = constraint.apply(histories[row], out[row : row + 1])
    return out


# Prompts run in groups when padding them to the group's longest new part costs at most a quarter more tokens:
# on 2 CPU cores parts of ~100 new tokens run at ~270 tokens/s one by one and ~400 eight at a time.
_PREFILL_WASTE = 1.25
_PREFILL_TOKENS = 4096  # tokens per prefill pass, which bounds its activations


class LocalBackend(Backend):
    """A causal LM loaded with transformers; ``generate`` is batch-invariant (see the module docstring).

    ``model``: a named embedded model ("embedded", "smollm2-135m-interplay-user", ...), a local folder or a Hub
    id. ``device``: default cuda when available, else cpu. ``dtype``: "float32" (default), "bfloat16", "float16"
    or "auto". ``max_batch_size``: rows per forward pass. ``end_tokens``: extra token strings that end a turn, on
    top of the tokenizer's EOS, the generation config's EOS ids and the usual end-of-turn markers. ``model_id``:
    the name recorded in provenance. ``prefix_cache_mb``: memory for the key/value states kept between calls (0
    keeps none); ``prompt_stats``
    counts how many prompt tokens they saved. ``max_model_len``: a context shorter than the model's positions.

    A prompt that does not fit the context (the model's positions, or ``max_model_len``) loses its oldest turns
    until it fits together with ``max_new_tokens``, counted with the model's own tokenizer; the system message
    and a raw prompt's header stay (:func:`crsdata.backends.context.fit_request`). One that cannot fit is a
    refused error generation naming both lengths; nothing is ever cut from the end of a prompt.
    """

    def __init__(
        self,
        model: str | Path = "embedded",
        *,
        device: str | None = None,
        dtype: str | torch.dtype = "float32",
        max_batch_size: int = 16,
        end_tokens: Sequence[str] = (),
        model_id: str | None = None,
        prefix_cache_mb: int = DEFAULT_PREFIX_CACHE_MB,
        max_model_len: int | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
        torch_dtype = _pick_dtype(dtype)
        path = resolve_model(model)
        self.model_id = model_id or embedded_model_id(model) or str(model)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.max_batch_size = max_batch_size
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        except (OSError, ValueError) as exc:
            raise BackendError(f"Cannot load model {model!r} (resolved to {path}): {exc}") from exc
        self.model.to(self.device).eval()
        self.max_positions = int(getattr(self.model.config, "max_position_embeddings", 0) or 1 << 30)
        if max_model_len is not None:
            if max_model_len < 1:
                raise ValueError(f"max_model_len must be at least 1, not {max_model_len}")
            self.max_positions = min(self.max_positions, max_model_len)
        self.end_token_ids = self._end_token_ids(end_tokens)
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else min(self.end_token_ids))
        try:
            self.kv_shape = KVShape.of(self.model)
        except ValueError as exc:
            raise BackendError(f"Model {self.model_id}: {exc}") from exc
        self.prefix_store = PrefixStore(prefix_cache_mb << 20)
        self.prompt_stats = PromptStats()
        self.cache_argument = cache_argument(self.model)

    def _end_token_ids(self, extra: Sequence[str]) -> frozenset[int]:
        ids: set[int] = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update([eos] if isinstance(eos, int) else (eos or []))
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[t] for t in _END_OF_TURN if t in vocab)
        for token in extra:
            if token not in vocab:
                raise ValueError(f"end token {token!r} is not in the tokenizer's vocabulary")
            ids.add(vocab[token])
        if not ids:
            raise BackendError(f"Model {self.model_id} has no EOS or end-of-turn token; pass end_tokens=[...]")
        return frozenset(ids)

    # ----------------------------------------------------------------------------------------------- prompts

    def encode(self, request: ChatRequest) -> list[int]:
        """The prompt token ids: chat messages through the tokenizer's chat template (which adds its own special
        tokens), a raw ``prompt`` as the tokenizer encodes plain text (the bare format fine-tuned models saw)."""
        if request.prompt is not None:
            return list(self.tokenizer(request.prompt).input_ids)
        if not request.messages:
            raise ValueError("the request has neither messages nor a prompt")
        if not self.tokenizer.chat_template:
            raise ValueError(f"model {self.model_id} has no chat template; send a raw prompt instead")
        text = self.tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _encode_all(
        self, requests: list[ChatRequest], max_new_tokens: int | None = None
    ) -> tuple[dict[int, list[int]], dict[int, str]]:
        """Prompt ids by request index, and errors by index. With ``max_new_tokens`` (generation), a prompt that
        does not fit the model's positions is trimmed to leave room for them (oldest turns first); its count of
        dropped turns goes to ``self._dropped``, and the indices of prompts too long to fit to ``self._refused``."""
        prompts: dict[int, list[int]] = {}
        errors: dict[int, str] = {}
        self._dropped: dict[int, int] = {}
        self._refused: set[int] = set()
        for i, request in enumerate(requests):
            try:
                ids = self.encode(request)
                if ids and len(ids) >= self.max_positions and max_new_tokens is not None:
                    budget = min(max_new_tokens, self.max_positions - 1)
                    fitted, self._dropped[i] = fit_request(
                        request, self.max_positions, budget, lambda r: len(self.encode(r))
                    )
                    ids = self.encode(fitted)
            except PromptTooLong as exc:
                errors[i] = str(exc)
                self._refused.add(i)
                continue
            except Exception as exc:  # a template or encoding failure is this request's problem, not the batch's
                errors[i] = f"{type(exc).__name__}: {exc}"
                continue
            if not ids:
                errors[i] = "the prompt encodes to no tokens"
            elif len(ids) >= self.max_positions:
                errors[i] = f"the prompt has {len(ids)} tokens; the model takes at most {self.max_positions}"
                self._refused.add(i)
            else:
                prompts[i] = ids
        return prompts, errors

    def _chunks(self, prompts: dict[int, list[int]]) -> list[list[int]]:
        # Similar lengths together waste less padding; the order cannot change any row's text.
        order = sorted(prompts, key=lambda i: (len(prompts[i]), i))
        return [order[k : k + self.max_batch_size] for k in range(0, len(order), self.max_batch_size)]

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for j, row in enumerate(rows):
            input_ids[j, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention[j, width - len(row) :] = 1
        return input_ids.to(self.device), attention.to(self.device)

    # ----------------------------------------------------------------------------------------------- generate

    def generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        """One generation per request, in order; each request's text depends only on its prompt, seed and
        ``params``. A request whose prompt cannot be built yields ``finish_reason="error"``."""
        prompts, errors = self._encode_all(requests, params.max_new_tokens)
        # A prompt that cannot fit is refused: the same request would fail the same way on every retry.
        results: dict[int, Generation] = {
            i: Generation("", "error", 0, msg, refused=i in self._refused) for i, msg in errors.items()
        }
        for chunk in self._chunks(prompts):
            texts = self._decode_batch(
                [prompts[i] for i in chunk],
                [requests[i].seed for i in chunk],
                params,
                [requests[i].banned_words for i in chunk],
                [requests[i].title_choices for i in chunk],
            )
            results.update(zip(chunk, texts, strict=True))
        for i, dropped in self._dropped.items():
            if i in prompts:
                results[i].dropped_turns = dropped
        return [results[i] for i in range(len(requests))]

    @torch.inference_mode()
    def _decode_batch(
        self,
        rows: list[list[int]],
        seeds: list[int],
        params: SamplingParams,
        banned: Sequence[tuple[str, ...]] = (),
        title_choices: Sequence[tuple[str, ...]] = (),
    ) -> list[Generation]:
        n = len(rows)
        bans = [banned_words_processor(self.tokenizer, words) if words else None for words in banned] or [None] * n
        titles = [TitleConstraint(self.tokenizer, c) if c else None for c in title_choices] or [None] * n
        banning = any(ban is not None for ban in bans)  # else no step builds the rows' ban histories
        budgets = [min(params.max_new_tokens, self.max_positions - len(r)) for r in rows]
        out_tokens: list[list[int]] = [[] for _ in range(n)]
        done: list[Generation | None] = [None] * n
        for j in range(n):
            if budgets[j] <= 0:
                done[j] = Generation("", "length", 0)
        stops = tuple(s for s in params.stop if s)
        # A stop string of b bytes spans at most b tokens (every token is at least one byte); two more tokens keep
        # a leading-space token off the window's edge, where some decoders strip it.
        window = max((len(s.encode()) for s in stops), default=0) + 2
        greedy = params.temperature <= 0
        processors = logits_processors(params, self.tokenizer)
        # CPU generators whatever the device, so a seed gives the same stream on every machine.
        generators = [None if greedy else torch.Generator().manual_seed(int(s) & 0xFFFF_FFFF_FFFF_FFFF) for s in seeds]

        active = [j for j in range(n) if done[j] is None]
        if not active:
            return [g for g in done if g is not None]
        # One buffer for the batch: row r's prompt ends at `longest` (left padding), its answer follows. Rows are
        # ordered by how much of their prompt is new, so that prefill groups are runs of consecutive rows.
        order, groups = self._plan_prefill([rows[j] for j in active])
        active = [active[i] for i in order]
        longest = max(len(rows[j]) for j in active)
        keys, values = self.kv_shape.buffers(len(active), longest + max(budgets[j] for j in active), zero=True)
        starts = [longest - len(rows[j]) for j in active]
        logits = torch.cat(
            [
                self._prefill_group([rows[j] for j in active[a:b]], keys, values, (a, b), longest, keep=True)
                for a, b in groups
            ]
        )
        cache = InPlaceCache(keys, values, filled=longest)
        attention = torch.zeros((len(active), longest), dtype=torch.long, device=self.device)
        for r, start in enumerate(starts):
            attention[r, start:] = 1
        next_position = torch.tensor([[len(rows[j])] for j in active], device=self.device)

        while True:
            # A banned word may start in the answer's first token: its history holds the prompt's last tokens.
            ban_rows = [(rows[j][-8:] + out_tokens[j], bans[j]) for j in active] if banning else ()
            logits = process_rows(
                logits, [out_tokens[j] for j in active], processors, ban_rows, [titles[j] for j in active]
            )
            tokens = self._sample(logits, [generators[j] for j in active], params, greedy)
            keep: list[int] = []
            for k, (j, token) in enumerate(zip(active, tokens.tolist(), strict=True)):
                finished = self._advance(j, token, out_tokens, budgets, stops, window)
                if finished is None:
                    keep.append(k)
                else:
                    done[j] = finished
                    # The states of the prompt and every answer token but the last, which was never fed back.
                    self._keep_states(
                        rows[j] + out_tokens[j][:-1],
                        [layer.keys[k, :, starts[k] :] for layer in cache.layers],
                        [layer.values[k, :, starts[k] :] for layer in cache.layers],
                    )
            if not keep:
                break
            if len(keep) < len(active):
                # Finished rows leave the batch: later steps compute only the rows still talking.
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                tokens, attention, next_position = tokens[index], attention[index], next_position[index]
                active, starts = [active[k] for k in keep], [starts[k] for k in keep]
            attention = torch.cat([attention, attention.new_ones((len(active), 1))], dim=-1)
            logits = self._forward(tokens[:, None], attention, next_position, cache)
            next_position = next_position + 1
        return [g for g in done if g is not None]

    def _plan_prefill(self, rows: list[list[int]]) -> tuple[list[int], list[tuple[int, int]]]:
        """An order of the rows (by how many prompt tokens each must still run, after the stored prefix) and
        groups ``(first, end)`` of consecutive rows in that order, each run in one forward pass.

        A group pads every row to its longest new part, so rows join while that costs at most
        ``_PREFILL_WASTE`` of the group's own tokens and the group stays within ``_PREFILL_TOKENS``.
        """
        new = []
        for ids in rows:
            _, reused = self.prefix_store.match(np.asarray(ids, dtype=np.int64))
            new.append(len(ids) - min(reused, len(ids) - 1))
        order = sorted(range(len(rows)), key=lambda i: (new[i], i))
        groups: list[tuple[int, int]] = []
        first, total = 0, 0
        for position, i in enumerate(order):
            size = position - first + 1
            padded = new[i] * size  # sorted: this row's part is the group's longest
            if size > 1 and (padded > _PREFILL_WASTE * (total + new[i]) or padded > _PREFILL_TOKENS):
                groups.append((first, position))
                first, total = position, 0
            total += new[i]
        groups.append((first, len(order)))
        return order, groups

    def _prefill_group(
        self,
        group: list[list[int]],
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        span: tuple[int, int],
        longest: int,
        *,
        keep: bool,
    ) -> torch.Tensor:
        """Runs the prompts ``group`` into rows ``span`` of the per-layer buffers, each right-aligned to end at
        ``longest``, in one forward pass; returns their next-token logits ``[len(group), vocab]``.

        Each row's longest stored prefix is copied in; the pass covers the last ``width`` tokens of every row (the
        longest new part in the group), so a row with a shorter new part recomputes a few stored tokens, and a
        row shorter than ``width`` is padded (masked). The last token always runs: its logits are the point.
        ``keep`` stores each prompt's states for later calls.
        """
        # Matched again, not taken from the plan: the groups before this one stored their prompts, which may
        # share a longer prefix with these (the instructions that open every dialogue, in a run's first call).
        matched = []
        for ids in group:
            tokens = np.asarray(ids, dtype=np.int64)
            entry, reused = self.prefix_store.match(tokens)
            matched.append((tokens, entry, min(reused, len(ids) - 1)))
        width = max(len(tokens) - reused for tokens, _, reused in matched)
        a, b = span
        input_ids = torch.full((b - a, width), self.pad_token_id, dtype=torch.long)
        positions = torch.zeros((b - a, width), dtype=torch.long)
        attention = torch.zeros((b - a, longest), dtype=torch.long)
        for row, (tokens, entry, _) in enumerate(matched):
            start, outside = longest - len(tokens), len(tokens) - width  # `outside`: stored tokens left out
            if outside > 0 and entry is not None:
                for buffers, stored in ((keys, entry.keys), (values, entry.values)):
                    for buffer, states in zip(buffers, stored, strict=True):
                        buffer[a + row, :, start : start + outside] = states[:, :outside]
            first = max(outside, 0)
            input_ids[row, width - (len(tokens) - first) :] = torch.from_numpy(tokens[first:])
            positions[row, width - (len(tokens) - first) :] = torch.arange(first, len(tokens))
            attention[row, start:] = 1
            self.prompt_stats.prompt_tokens += len(tokens)
            self.prompt_stats.reused_tokens += first
        cache = InPlaceCache([k[a:b] for k in keys], [v[a:b] for v in values], filled=longest - width)
        logits = self._forward(input_ids.to(self.device), attention.to(self.device), positions.to(self.device), cache)
        if keep:
            for row, (tokens, _, _) in enumerate(matched):
                start = longest - len(tokens)
                self._keep_states(
                    tokens.tolist(),
                    [k[a + row, :, start:longest] for k in keys],
                    [v[a + row, :, start:longest] for v in values],
                )
        return logits

    def _keep_states(self, ids: list[int], keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        """Stores copies of per-layer states ``[heads, len(ids), dim]`` for ``ids`` in the prefix store."""
        if self.prefix_store.max_bytes:
            self.prefix_store.put(
                np.asarray(ids, dtype=np.int64), [k.clone() for k in keys], [v.clone() for v in values]
            )

    def _forward(
        self, input_ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor, cache: InPlaceCache
    ) -> torch.Tensor:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            **{self.cache_argument: cache},
            logits_to_keep=1,  # only the last position's logits: the prompt's full vocab matrix is never built
        )
        return out.logits[:, -1, :]

    def _sample(
        self, logits: torch.Tensor, generators: list[torch.Generator | None], params: SamplingParams, greedy: bool
    ) -> torch.Tensor:
        if greedy:
            return logits.argmax(dim=-1)
        # Exactly one draw per row per step from the row's own generator: its stream never sees other rows.
        uniforms = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
        uniforms = uniforms.to(logits.device)
        probs = (logits.float() / params.temperature).softmax(dim=-1)
        if params.top_p >= 1.0:
            cdf = probs.cumsum(dim=-1)
            picked = torch.searchsorted(cdf, (uniforms.float() * cdf[:, -1]).unsqueeze(-1), right=True)
            return picked.clamp_(max=cdf.shape[-1] - 1).squeeze(-1)
        return _nucleus_sample(probs, params.top_p, uniforms)

    def _advance(
        self,
        j: int,
        token: int,
        out_tokens: list[list[int]],
        budgets: list[int],
        stops: tuple[str, ...],
        window: int,
    ) -> Generation | None:
        """Appends ``token`` to row ``j``; returns its Generation when the row is finished, else None."""
        tokens = out_tokens[j]
        tokens.append(token)
        if token in self.end_token_ids:
            return Generation(self._text(tokens[:-1]), "stop", len(tokens))
        if stops:
            # Only the tail can hold a stop string that this token completed; earlier ones were caught before.
            tail = self.tokenizer.decode(tokens[-window:], skip_special_tokens=True)
            if any(s in tail for s in stops):
                text = self._text(tokens)
                cuts = [text.find(s) for s in stops if s in text]
                return Generation(text[: min(cuts)] if cuts else text, "stop", len(tokens))
        if len(tokens) >= budgets[j]:
            return Generation(self._text(tokens), "length", len(tokens))
        return None

    def _text(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    # ----------------------------------------------------------------------------------------------- raw generate

    @torch.inference_mode()
    def raw_generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        """The same batch through plain ``model.generate`` in one call: the "raw batched generate" reference for
        throughput benchmarks and greedy cross-checks. Unlike :meth:`generate` its samples share one RNG (seeded
        from the first request) and finished rows keep padding until the longest is done, so sampled texts
        depend on the batch. Raises ValueError if a request cannot be encoded, or for a repetition penalty or an
        n-gram ban (``generate`` counts the prompt in their history, :meth:`generate` does not)."""
        if params.reshapes_logits:
            raise ValueError("raw_generate takes no repetition penalty or n-gram ban; use generate")
        prompts, errors = self._encode_all(requests)
        if errors:
            raise ValueError(f"cannot encode requests: {errors}")
        rows = [prompts[i] for i in range(len(requests))]
        input_ids, attention = self._left_pad(rows)
        greedy = params.temperature <= 0
        options: dict[str, Any] = {"do_sample": not greedy, "top_k": None}
        if not greedy:
            options.update(temperature=params.temperature, top_p=params.top_p)
            torch.manual_seed(requests[0].seed if requests else 0)
        stops = [s for s in params.stop if s]
        if stops:
            options.update(stop_strings=stops, tokenizer=self.tokenizer)
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=params.max_new_tokens,
            eos_token_id=sorted(self.end_token_ids),
            pad_token_id=self.pad_token_id,
            **options,
        )
        results = []
        for row in output[:, input_ids.shape[1] :].tolist():
            end = next((k for k, t in enumerate(row) if t in self.end_token_ids), None)
            tokens = row if end is None else row[: end + 1]
            text = self._text(tokens if end is None else tokens[:-1])
            reason = "length" if end is None else "stop"
            for s in stops:
                if s in text:
                    text, reason = text[: text.find(s)], "stop"
            results.append(Generation(text, reason, len(tokens)))
        return results

    # ----------------------------------------------------------------------------------------------- scoring

    @torch.inference_mode()
    def option_probabilities(self, requests: list[ChatRequest], options: list[str]) -> list[dict[str, float]]:
        """Next-token probability of each option's first token (as the tokenizer encodes the option text, so pass
        " Yes" if the answer follows a space), renormalised over the options. Raises ValueError for options that
        share a first token and BackendError for a request whose prompt cannot be built."""
        first_ids = self.option_token_ids(options)
        prompts, errors = self._encode_all(requests)
        if errors:
            raise BackendError(f"cannot build prompts for option scoring: {errors}")
        results: dict[int, dict[str, float]] = {}
        index = torch.tensor(first_ids, device=self.device)
        # Scoring prompts share their conversation (reused from the store) and differ at the end; they are not
        # stored themselves, since each would hold its own copy of the shared part.
        for chunk in self._chunks(prompts):
            rows = [prompts[i] for i in chunk]
            order, groups = self._plan_prefill(rows)
            rows = [rows[i] for i in order]
            longest = max(map(len, rows))
            keys, values = self.kv_shape.buffers(len(rows), longest, zero=True)
            logits = torch.cat(
                [self._prefill_group(rows[a:b], keys, values, (a, b), longest, keep=False) for a, b in groups]
            )
            probs = logits.float().softmax(dim=-1).index_select(-1, index)
            probs = probs / probs.sum(dim=-1, keepdim=True)
            for i, row in zip([chunk[i] for i in order], probs.tolist(), strict=True):
                results[i] = dict(zip(options, row, strict=True))
        return [results[i] for i in range(len(requests))]

    def option_token_ids(self, options: list[str]) -> list[int]:
        """The first token id of each option; ValueError when an option is empty or two options share one."""
        if not options:
            raise ValueError("option_probabilities needs at least one option")
        ids = []
        for option in options:
            encoded = self.tokenizer(option, add_special_tokens=False).input_ids
            if not encoded:
                raise ValueError(f"option {option!r} encodes to no tokens")
            ids.append(int(encoded[0]))
        if len(set(ids)) < len(ids):
            tokens = self.tokenizer.convert_ids_to_tokens(ids)
            raise ValueError(f"options {options} share first tokens {tokens}; the next token cannot tell them apart")
        return ids

    def close(self) -> None:
        """Drops the model so its memory can be freed."""
        self.model = None  # type: ignore[assignment]
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
