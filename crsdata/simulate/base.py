"""What a kind of simulated conversation declares and does (Interplay, RecLLMSim tasks, ...).

A kind is one subclass of :class:`Simulation`, registered in :data:`crsdata.simulate.kinds.SIMULATIONS`.
It has three parts, all on the class, so that ``crsdata simulate`` never branches on the kind:

Declarations (class attributes)
    ``name`` (the registry key), ``summary``, ``description`` and ``examples`` (help text), ``default_max_turns``,
    ``output_source`` (the ``source`` of the records it writes), ``card_info`` (the card's header) and
    ``options_class``: a :class:`SimulationOptions` dataclass whose fields, declared with :func:`option`,
    become the kind's command-line flags and, unless marked otherwise, part of the run configuration that a
    resume checks.

The step contract (instance methods; the run engine and any other executor drive only these)
    :meth:`~Simulation.start` a :class:`DialogueState` from a source record, ask :meth:`~Simulation.next_role`
    who speaks, build that role's :meth:`~Simulation.request` with its :meth:`~Simulation.sampling`
    parameters, :meth:`~Simulation.apply` the backend's answer, and when the state is finished turn it into a
    schema dialogue with :meth:`~Simulation.to_record`. Each call depends only on the state, never on which
    other dialogues share a batch: the single-process engine batches many dialogues per call, and a scale-out
    executor may run each dialogue in its own async loop, with the same results.

Input and output hooks (class methods and instance methods with defaults)
    :meth:`~Simulation.load_source` (default: one split of a folder built by ``crsdata build``, records
    filtered by :meth:`~Simulation.eligible`), :meth:`~Simulation.default_model` (a role's model when the
    command names none, from ``default_models``), :meth:`~Simulation.complete_options` (option defaults that
    depend on those models), :meth:`~Simulation.from_options` (the simulation for a run),
    :meth:`~Simulation.settings` (its own settings that change dialogues, recorded in the run configuration),
    and for the output :meth:`~Simulation.drop_reason`, :meth:`~Simulation.outcome_rows`,
    :meth:`~Simulation.card_sections`, :meth:`~Simulation.plot_panels` and :meth:`~Simulation.export` (default:
    a Hub-layout dataset folder with its card, :func:`crsdata.simulate.folder.export_dataset_folder`; a kind that
    produces something else, such as replay results, overrides it).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from crsdata.backends.base import Backend, ChatRequest, Generation, SamplingParams
from crsdata.options import flag
from crsdata.simulate.results import NO_TURNS, Exported, RunResult

if TYPE_CHECKING:
    from crsdata.simulate.source import SimulationSource

# ---------------------------------------------------------------------------------------------------------
# What a run gives a kind to export, and what the export gives back


_KNOWN_AFTER_LOADING = ("model_ids", "sampling", "prompt_hashes", "settings")


def simulation_parts(simulation: Simulation) -> dict[str, Any]:
    """The run configuration's :data:`_KNOWN_AFTER_LOADING` parts, read from a built simulation."""
    return {
        "model_ids": {r: b.model_id for r, b in simulation.backends.items()},
        "sampling": {r: asdict(p) for r, p in simulation.params.items()},
        "prompt_hashes": simulation.prompt_hashes(),
        "settings": simulation.settings(),
    }


class ExportTarget(Protocol):
    """What a kind's :meth:`Simulation.export` reads of the job (a :class:`crsdata.simulate.job.SimulateConfig`
    is one): where to write, the card's version and command line, and the settings a results file records."""

    out: Path
    version: str
    command: str
    seed: int
    n: int | None
    backend: str
    temperature: float
    top_p: float
    max_new_tokens: int


# Why a finished dialogue with no turn at all is left out of every exported folder (it is not a dialogue).
@dataclass
class DialogueState:
    dialogue_id: str
    record: dict[str, Any]  # the source record (schema dialogue) the persona or task came from
    seed: int
    turns: list[dict[str, Any]] = field(default_factory=list)  # schema turns produced so far
    finished: bool = False
    end_reason: str = ""
    accepted_item: dict[str, str] = field(default_factory=lambda: {"item_id": "", "title": ""})
    counters: dict[str, int] = field(default_factory=dict)  # parse repairs, failures, filter hits
    context: dict[str, Any] = field(default_factory=dict)  # persona, task text: whatever prompts need


# ---------------------------------------------------------------------------------------------------------
# A kind's options: one dataclass, its fields are the command-line flags.


def option(
    default: Any = None,
    help: str = "",  # noqa: A002 - the argparse word
    *,
    choices: tuple[str, ...] = (),
    type: Any = None,  # noqa: A002 - the argparse word
    repeat: bool = False,
    in_run_config: bool = True,
    metavar: str | None = None,
) -> Any:
    """A field of a :class:`SimulationOptions` dataclass and its flag ``--field-name`` (a
    :func:`crsdata.options.flag`: the command's parser builds the flag from the field).

    ``help`` is the flag's help; ``choices`` and ``type`` go to argparse (the type defaults to the annotation's);
    a ``False`` default makes a switch; ``repeat`` collects every use of the flag into a list.
    ``in_run_config=False`` for an option that does not change a dialogue (only what is exported), so a resume
    may change it.
    """
    keys: dict[str, Any] = {"in_run_config": in_run_config}
    if choices:
        keys["choices"] = tuple(choices)
    if type is not None:
        keys["type"] = type
    if metavar:
        keys["metavar"] = metavar
    if repeat:
        return flag(help=help, default_factory=list, **keys)
    return flag(default, help, **keys)


@dataclass
class SimulationOptions:
    """Options of a kind (subclass it with :func:`option` fields). The base has none."""

    def check(self) -> None:
        """Refuses values no run can use, as bad input naming the flag, before any model is loaded (a kind
        overrides it; the base accepts anything)."""

    def run_config(self) -> dict[str, Any]:
        """The options that change dialogues, JSON-ready (paths as strings), for the run configuration."""
        return {
            f.name: _jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.metadata.get("in_run_config", True)
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------------
# The base class of every kind


class Simulation(ABC):
    """One kind of conversation between a user backend and a recommender (assistant) backend."""

    # -- declarations: every kind sets these ---------------------------------------------------------------
    name: ClassVar[str]
    summary: ClassVar[str] = ""  # one line in `crsdata simulate --help`
    description: ClassVar[str] = ""  # the kind's `--help`: what it simulates and what --source takes
    examples: ClassVar[str] = ""  # command lines for the help's examples, one per line
    roles: ClassVar[tuple[str, str]] = ("user", "recommender")
    default_max_turns: ClassVar[int] = 10
    output_source: ClassVar[str] = ""  # `source` of the written records and the exported folder
    card_info: ClassVar[dict[str, str]] = {}  # name, pretty_name, description, license, license_id, homepage
    options_class: ClassVar[type[SimulationOptions]] = SimulationOptions
    # True: each source record starts at most one dialogue (a run stops at the end of the shuffled source instead
    # of drawing it again), as replay needs; False: records are reused once the source is exhausted.
    draws_each_record_once: ClassVar[bool] = False
    # role -> the model a run uses when the command names none (a named embedded model, see
    # crsdata.backends.embedded); roles not listed, and entries this install does not ship, get the zero-shot base.
    default_models: ClassVar[dict[str, str]] = {}
    # Shared options (SimulateConfig fields) whose command-line default this kind changes, with the help that
    # says why: replay decodes greedily, since it measures each answer's most likely decision.
    flag_defaults: ClassVar[dict[str, tuple[Any, str]]] = {}

    def __init__(self, backends: dict[str, Backend], params: dict[str, SamplingParams], max_turns: int) -> None:
        self.backends = backends
        self.params = params
        self.max_turns = max_turns
        self.options: SimulationOptions = self.options_class()

    # -- input -----------------------------------------------------------------------------------------------

    @classmethod
    def load_source(cls, source: str, split: str | None, options: SimulationOptions) -> SimulationSource:
        """The records a run draws from. Default: one split of a folder written by ``crsdata build`` (see
        :func:`crsdata.simulate.source.load_dataset_source` for how the split is chosen), keeping the records
        :meth:`eligible` accepts. Raises BadInputError for anything unusable."""
        from crsdata.simulate.source import load_dataset_source

        return load_dataset_source(source, split, cls.eligible)

    @classmethod
    def default_n(cls, source: SimulationSource) -> int:
        """The number of dialogues of a run when none is given; by default one must be given."""
        from crsdata.errors import BadInputError

        raise BadInputError("", "", "--n", "is required: how many dialogues to write", "bad-option")

    @classmethod
    def eligible(cls, record: dict[str, Any]) -> str:
        """``""`` when a dataset record can be drawn, else why not (counted as excluded, never silently)."""
        return ""

    @classmethod
    def from_options(
        cls,
        backends: dict[str, Backend],
        params: dict[str, SamplingParams],
        max_turns: int,
        options: SimulationOptions,
        source: SimulationSource,
    ) -> Simulation:
        """The simulation of a run: the constructor with backends, params, max_turns and
        :meth:`constructor_options`, then ``options`` attached (the output hooks read them)."""
        simulation = cls(backends, params, max_turns, **cls.constructor_options(options, source))
        simulation.options = options
        return simulation

    @classmethod
    def default_model(cls, role: str) -> str:
        """The model ``role`` gets when the command names none: the kind's :attr:`default_models` entry when this
        install ships it, else the embedded zero-shot base."""
        from crsdata.backends.embedded import BASE_MODEL, shipped_or_base

        return shipped_or_base(cls.default_models.get(role, BASE_MODEL))

    @classmethod
    def complete_options(cls, options: SimulationOptions, models: dict[str, str]) -> None:
        """Fills, in place, options whose default depends on the models the roles run (a prompt style...);
        called once the models are known, before the run configuration is made. Nothing by default."""
        return None

    @classmethod
    def constructor_options(cls, options: SimulationOptions, source: SimulationSource) -> dict[str, Any]:
        """Keyword arguments of the kind's constructor that come from its options and the source (a catalog, a
        prompt style...); none by default."""
        return {}

    def settings(self) -> dict[str, Any]:
        """The simulation's own settings that change dialogues but are not options (the opening speaker,
        retry limits...), recorded in the run configuration so that a changed default refuses a resume."""
        return {}

    # -- the step contract ---------------------------------------------------------------------------------

    @abstractmethod
    def start(self, record: dict[str, Any], dialogue_id: str, seed: int) -> DialogueState:
        """A fresh state; raises BadInputError naming the record and field if the record cannot be used."""

    @abstractmethod
    def next_role(self, state: DialogueState) -> str:
        """Which role speaks next (only called while ``not state.finished``)."""

    @abstractmethod
    def request(self, state: DialogueState, role: str) -> ChatRequest:
        """The request for ``role``'s next turn; the request's seed must derive from state.seed and the turn."""

    def sampling(self, state: DialogueState, role: str) -> SamplingParams:
        """Sampling parameters of ``role``'s next request; by default the role's. A kind may give some requests
        others (RecLLMSim's profile requests need a larger token budget)."""
        return self.params[role]

    @abstractmethod
    def apply(self, state: DialogueState, role: str, generation: Generation) -> None:
        """Parses the generation, appends the turn, and finishes the state when the dialogue ends."""

    @abstractmethod
    def to_record(self, state: DialogueState) -> dict[str, Any]:
        """The finished dialogue in the shared schema (crsdata.schema.new_dialogue), provenance filled."""

    @abstractmethod
    def prompt_hashes(self) -> dict[str, str]:
        """Prompt template name -> SHA-256, recorded in provenance and in the run manifest."""

    # -- output --------------------------------------------------------------------------------------------

    def drop_reason(self, record: dict[str, Any]) -> str:
        """Why a written dialogue is left out of the exported folder, ``""`` to keep it. Every kind drops a
        dialogue that ended before any turn (``no_turns``: a parse error or an empty answer at the first
        turn); a kind with quality filters may drop flagged ones too. Counted by reason in the card."""
        return NO_TURNS if not record["turns"] else ""

    def outcome_rows(self, records: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """Rows added to the card's outcome table (label, value); none by default."""
        return []

    def card_sections(self, records: list[dict[str, Any]], counters: Counter[str]) -> dict[str, str]:
        """The kind's own card sections (title -> markdown): a leak rate, quality filters..."""
        return {}

    def plot_panels(self, records: list[dict[str, Any]], counters: Counter[str]) -> list[tuple[str, Counter[str]]]:
        """Bar-chart panels (title, counts) added next to the end reasons in the card's plot."""
        return []

    def export(self, result: RunResult, source: SimulationSource, config: ExportTarget) -> Exported:
        """Writes the run's output. Default: a Hub-layout dataset folder at ``config.out`` with its card."""
        from crsdata.simulate.folder import export_dataset_folder

        return export_dataset_folder(self, result, source, config)
