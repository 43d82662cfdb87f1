"""Run configuration: dataclasses, strict TOML loading, ``a.b=v`` overrides.

Every key is checked: an unknown key, a wrong type or an impossible value
raises :class:`~mechrare.errors.ConfigError` whose message names the key
(``mixture.tasks[1].frequency: ...``). Names that live in registries (task
families, ladder sizes) are checked where they are resolved, in
:mod:`mechrare.data` and :mod:`mechrare.models`, with the same key paths.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

from mechrare.errors import ConfigError

PLACEMENTS = ("inject", "sequence")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def require(cond: bool, path: str, msg: str) -> None:
    """Raise ConfigError("<path>: <msg>") unless ``cond``: how every config check reports."""
    if not cond:
        raise ConfigError(f"{path}: {msg}")


#: the largest sizes mechrare builds (each takes seconds to set up; larger ones would hang)
MAX_VOCAB = 2**20
MAX_COMPLEXITY = 2**20
MAX_SEQUENCE = 2**16


@dataclass
class ScheduleConfig:
    """Bursty "matched-frequency" placement: every ``every`` steps, the task's
    expected instances for the whole period arrive together (starting at the
    step where ``step % every == offset``)."""

    every: int
    offset: int = 0

    def validate(self, path: str) -> None:
        require(self.every >= 1, f"{path}.every", f"must be >= 1, got {self.every}")
        require(0 <= self.offset < self.every, f"{path}.offset", f"must be in [0, every), got {self.offset}")


@dataclass
class TaskConfig:
    """One task of the mixture. ``frequency`` is a relative weight (the share of
    training sequences that carry the task is frequency / sum of all weights,
    background included)."""

    family: str
    complexity: int
    frequency: float
    placement: str = "inject"
    schedule: ScheduleConfig | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: a second task of the same family and complexity with its own instances: named
    #: ``<family>:<complexity>:<variant>`` (e.g. the rare copy of a common task)
    variant: str = ""

    @property
    def name(self) -> str:
        return f"{self.family}:{self.complexity}" + (f":{self.variant}" if self.variant else "")

    def validate(self, path: str) -> None:
        require(1 <= self.complexity <= MAX_COMPLEXITY, f"{path}.complexity", f"must be in [1, {MAX_COMPLEXITY}], got {self.complexity}")
        require(self.variant == "" or (self.variant.isascii() and self.variant.isalnum()), f"{path}.variant",
                f"must be letters and digits only (it names the task and its tokens), got {self.variant!r}")
        require(math.isfinite(self.frequency) and self.frequency > 0, f"{path}.frequency", f"must be finite and > 0, got {self.frequency}")
        require(
            self.placement in PLACEMENTS,
            f"{path}.placement",
            f"must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}",
        )


BACKGROUND_KINDS = ("markov", "text", "tokens")
TOKEN_DTYPES = ("uint16", "uint32")


@dataclass
class BackgroundConfig:
    """The background the tasks are injected into (:mod:`mechrare.data.background`).

    ``kind = "markov"`` (the default): a seeded Markov chain over ``vocab_size`` words,
    each with ``branching`` successors whose weights fall off as rank^-zipf.
    ``kind = "text"``: local text ``files`` (glob patterns), or the ``text_field`` column
    of a Hugging Face ``dataset`` saved with ``save_to_disk`` (a folder; each row one
    document), tokenized once with ``tokenizer`` (a tokenizer.json path, a Hugging Face
    tokenizer folder, or ``"bpe:<vocab size>"`` to train a byte-level BPE on the text)
    and cached as a .npy memmap. ``kind = "tokens"``: flat token files
    (OLMo/Dolma-style ``.npy`` memmaps of ``dtype``, header or raw) with their ``tokenizer``."""

    kind: str = "markov"
    vocab_size: int = 64
    branching: int = 4
    zipf: float = 1.0
    frequency: float = 1.0
    files: list[str] = field(default_factory=list)
    #: ``kind = "text"``: a Hugging Face dataset saved with ``save_to_disk`` (a folder), instead of ``files``
    dataset: str = ""
    #: the dataset's column of text
    text_field: str = "text"
    tokenizer: str = ""
    dtype: str = "uint16"
    #: the share of the corpus (its end) kept out of training for the held-out background loss
    held_out: float = 0.01

    def validate(self, path: str) -> None:
        require(self.kind in BACKGROUND_KINDS, f"{path}.kind", f"must be one of {', '.join(BACKGROUND_KINDS)}, got {self.kind!r}")
        require(math.isfinite(self.frequency) and self.frequency >= 0, f"{path}.frequency", f"must be finite and >= 0, got {self.frequency}")
        if self.kind == "markov":
            require(not self.files and not self.tokenizer and not self.dataset, f"{path}.files",
                    'a markov background takes no files, dataset or tokenizer; set kind = "text" or "tokens"')
            require(2 <= self.vocab_size <= MAX_VOCAB, f"{path}.vocab_size", f"must be in [2, {MAX_VOCAB}], got {self.vocab_size}")
            require(
                1 <= self.branching <= self.vocab_size,
                f"{path}.branching",
                f"must be in [1, vocab_size], got {self.branching}",
            )
            require(self.zipf >= 0, f"{path}.zipf", f"must be >= 0, got {self.zipf}")
            return
        if self.kind == "text":
            require(bool(self.files) != bool(self.dataset), f"{path}.files",
                    'a text background needs files (e.g. files = ["corpus/*.txt"]) or dataset (a folder written by '
                    "Dataset.save_to_disk), one of them")
            require(bool(self.text_field), f"{path}.text_field", "must name the dataset's column of text")
        else:
            require(not self.dataset, f"{path}.dataset", 'a saved dataset is text; set kind = "text" (kind = "tokens" reads token files)')
            require(len(self.files) >= 1, f"{path}.files", f"a {self.kind} background needs files, e.g. files = [\"dolma/*.npy\"]")
        require(bool(self.tokenizer), f"{path}.tokenizer",
                'needs a tokenizer: a tokenizer.json path, a tokenizer folder' + (', or "bpe:<vocab size>"' if self.kind == "text" else ""))
        if self.tokenizer.startswith("bpe:"):
            size = self.tokenizer[4:]
            require(self.kind == "text", f"{path}.tokenizer", "bpe:<vocab size> trains on text files; kind = \"tokens\" needs the tokenizer its ids come from")
            require(size.isdigit() and 256 + 3 <= int(size) <= MAX_VOCAB, f"{path}.tokenizer",
                    f"bpe:<vocab size> needs a size in [259, {MAX_VOCAB}], got {self.tokenizer!r}")
        require(self.dtype in TOKEN_DTYPES, f"{path}.dtype", f"must be one of {', '.join(TOKEN_DTYPES)}, got {self.dtype!r}")
        require(0 < self.held_out < 0.5, f"{path}.held_out", f"must be in (0, 0.5), got {self.held_out}")


@dataclass
class MixtureConfig:
    sequence_length: int = 32
    tasks: list[TaskConfig] = field(default_factory=list)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    eval_examples: int = 256
    #: task name -> factor multiplying its frequency (the paper's intervention:
    #: show the rare task more often), e.g. ``--set mixture.upsample.facts:256=10``
    upsample: dict[str, float] = field(default_factory=dict)

    def validate(self, path: str) -> None:
        require(4 <= self.sequence_length <= MAX_SEQUENCE, f"{path}.sequence_length",
                f"must be in [4, {MAX_SEQUENCE}], got {self.sequence_length}")
        require(len(self.tasks) >= 1, f"{path}.tasks", "needs at least one task")
        require(self.eval_examples >= 1, f"{path}.eval_examples", f"must be >= 1, got {self.eval_examples}")
        names = [t.name for t in self.tasks]
        dup = sorted({n for n in names if names.count(n) > 1})
        require(not dup, f"{path}.tasks", f"task {dup[0] if dup else ''!r} appears twice; give each task once")
        check_upsample(self.upsample, names, f"{path}.upsample")


def check_upsample(upsample: dict[str, float], names: list[str], path: str) -> None:
    for task, factor in upsample.items():
        require(task in names, f"{path}.{task}", f"no such task; tasks: {', '.join(names)}")
        require(factor > 0, f"{path}.{task}", f"the factor must be > 0, got {factor}")


@dataclass
class CustomModelConfig:
    """An inline ladder size. d_mlp is the SwiGLU hidden width (default 4 * d_model)."""

    d_model: int
    n_layers: int
    n_heads: int
    d_mlp: int | None = None
    name: str | None = None

    def validate(self, path: str) -> None:
        for key in ("d_model", "n_layers", "n_heads"):
            value = getattr(self, key)
            require(value >= 1, f"{path}.{key}", f"must be >= 1, got {value}")
        require(
            self.d_model % self.n_heads == 0,
            f"{path}.n_heads",
            f"must divide d_model={self.d_model}, got {self.n_heads}",
        )
        if self.d_mlp is not None:
            require(self.d_mlp >= 1, f"{path}.d_mlp", f"must be >= 1, got {self.d_mlp}")


@dataclass
class InterventionConfig:
    """An extra model trained on a changed mixture: ``model`` (a ladder size or an
    inline shape) with the tasks in ``upsample`` shown ``factor`` times as often
    (on top of ``mixture.upsample``). It is named ``name``, by default
    ``<model>-up<factor>``, and sits in the run beside the ladder."""

    model: Union[str, CustomModelConfig]
    upsample: dict[str, float]
    name: str | None = None

    def validate(self, path: str) -> None:
        # task names and factors are checked by RunConfig.validate, which knows the tasks
        require(len(self.upsample) >= 1, f"{path}.upsample", "name at least one task, e.g. upsample = { \"facts:256\" = 10 }")


@dataclass
class SweepConfig:
    """A frequency sweep: each of ``models`` (default: every ladder model) trained again with
    ``task``'s frequency multiplied by each of ``factors`` (factor 1 is the ladder model itself),
    as interventions named ``<model>-up<factor>``."""

    task: str
    factors: list[float]
    models: list[str] = field(default_factory=list)

    def validate(self, path: str) -> None:
        require(len(self.factors) >= 1, f"{path}.factors", "needs at least one factor, e.g. factors = [0.3, 3]")
        bad = [f for f in self.factors if not (math.isfinite(f) and f > 0)]
        require(not bad, f"{path}.factors", f"factors must be finite and > 0, got {bad[0] if bad else 0:g}")
        dup = sorted({f for f in self.factors if self.factors.count(f) > 1})
        require(not dup, f"{path}.factors", f"factor {dup[0] if dup else 0:g} appears twice")


@dataclass
class LadderConfig:
    models: list[Union[str, CustomModelConfig]] = field(default_factory=list)
    interventions: list[InterventionConfig] = field(default_factory=list)
    #: training seeds: a count (``3`` = seeds 0, 1, 2) or a list of distinct seeds. Every model and
    #: intervention is trained under each; a seed changes the initialisation and the data order,
    #: never the tasks or their eval sets. Seed 0 is the run's ``seed`` itself.
    seeds: Union[int, list[int]] = 1
    #: a frequency sweep over the ladder (``[ladder.sweep]``): more interventions, one per (model, factor)
    sweep: SweepConfig | None = None

    def validate(self, path: str) -> None:
        require(len(self.models) >= 1, f"{path}.models", "needs at least one model")
        if self.sweep is not None:
            names = [m if isinstance(m, str) else None for m in self.models]
            unknown = [m for m in self.sweep.models if m not in names]
            require(not unknown, f"{path}.sweep.models", f"{unknown[0] if unknown else ''!r} is not a ladder model (by name)")
        if isinstance(self.seeds, int):
            require(self.seeds >= 1, f"{path}.seeds", f"a count of seeds must be >= 1, got {self.seeds}")
        else:
            require(len(self.seeds) >= 1, f"{path}.seeds", "needs at least one seed, e.g. seeds = 3 or [0, 1, 2]")
            bad = [s for s in self.seeds if s < 0]
            require(not bad, f"{path}.seeds", f"seeds must be >= 0, got {bad[0] if bad else ''}")
            dup = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
            require(not dup, f"{path}.seeds", f"seed {dup[0] if dup else ''} appears twice; give each seed once")

    def all_interventions(self) -> list[tuple[str, InterventionConfig]]:
        """(config path, intervention) for the explicit interventions, then the sweep's."""
        out = [(f"ladder.interventions[{i}]", iv) for i, iv in enumerate(self.interventions)]
        if self.sweep is not None:
            for m in self.sweep.models or self.models:
                out += [("ladder.sweep", InterventionConfig(model=m, upsample={self.sweep.task: f}))
                        for f in self.sweep.factors if f != 1]
        return out

    def seed_list(self) -> list[int]:
        """The training seeds, in order."""
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    device: str = "auto"
    precision: str = "auto"
    warmup: float = 0.05
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    grad_clip: float = 1.0
    init_std: float = 0.02
    threads: int = 0
    #: models x seeds trained side by side in worker processes on CPU, each with ``threads``
    #: threads (0: as many as the cores allow; 1: one after another). It never changes the weights.
    jobs: int = 0
    eval_batch_size: int = 512
    #: torch.compile the training forward (worth it on GPU; see benchmarks/)
    compile: bool = False
    #: build batches ahead in a background thread (pinned and copied asynchronously on CUDA);
    #: the batch of a step is the same either way, so it never changes the weights
    prefetch: bool = True
    #: train the (model, seed) pairs of one shape (a size's seeds and its interventions) as one program:
    #: stacked weights and torch.func.vmap (mechrare.training.grouped); equal to training each alone
    #: within float tolerance, not bit for bit; one process (it takes precedence over ``jobs``)
    together: bool = False
    #: with ``together``: the sizes whose heads have one width (d_model / n_heads) trained as one program
    #: too, each padded with zeros to the largest (mechrare.training.padding; equal to alone within float
    #: tolerance). Each pays the largest's arithmetic: worth it only where kernels are launch-bound (small
    #: models on a GPU), not on a CPU
    together_sizes: bool = False
    #: train.together's loss: each model's head and cross-entropy made this many positions at a time
    #: (mechrare.training.chunked_loss), so that the models' whole logits never exist at once
    loss_chunk: int = 8192

    def validate(self, path: str) -> None:
        require(self.steps >= 1, f"{path}.steps", f"must be >= 1, got {self.steps}")
        require(self.together or not self.together_sizes, f"{path}.together_sizes",
                "trains sizes together only with train.together = true; set both")
        require(self.batch_size >= 1, f"{path}.batch_size", f"must be >= 1, got {self.batch_size}")
        require(math.isfinite(self.lr) and self.lr > 0, f"{path}.lr", f"must be finite and > 0, got {self.lr}")
        dev = self.device.split(":")[0]
        require(dev in DEVICES, f"{path}.device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        require(
            self.precision in PRECISIONS,
            f"{path}.precision",
            f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
        )
        require(0 <= self.warmup < 1, f"{path}.warmup", f"is a fraction of steps in [0, 1), got {self.warmup}")
        require(0 <= self.min_lr_ratio <= 1, f"{path}.min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        require(self.weight_decay >= 0, f"{path}.weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            f"{path}.betas",
            f"must be two numbers in [0, 1), got {self.betas}",
        )
        require(self.grad_clip >= 0, f"{path}.grad_clip", f"must be >= 0 (0 = off), got {self.grad_clip}")
        require(self.init_std > 0, f"{path}.init_std", f"must be > 0, got {self.init_std}")
        require(self.threads >= 0, f"{path}.threads", f"must be >= 0 (0 = torch default), got {self.threads}")
        require(self.jobs >= 0, f"{path}.jobs", f"must be >= 0 (0 = as many as the cores allow), got {self.jobs}")
        require(self.eval_batch_size >= 1, f"{path}.eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        require(self.loss_chunk >= 1, f"{path}.loss_chunk", f"must be >= 1 (positions per chunk), got {self.loss_chunk}")


@dataclass
class CheckpointConfig:
    """Checkpoint at 0, 1, 2, 4, ..., 512 (if ``log_spaced``) and every ``every``
    steps, plus the last step. The full resume state (optimizer, step) is
    written every ``resume_every`` steps (0: at every multiple of ``every``)."""

    every: int = 100
    log_spaced: bool = True
    resume_every: int = 0

    def validate(self, path: str) -> None:
        require(self.every >= 1, f"{path}.every", f"must be >= 1, got {self.every}")
        require(self.resume_every >= 0, f"{path}.resume_every", f"must be >= 0, got {self.resume_every}")


@dataclass
class RunConfig:
    seed: int = 0
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    ladder: LadderConfig = field(default_factory=LadderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    #: analysis name -> its settings (``[analyses.probes]`` in TOML). Checked against each
    #: analysis's own config class by :func:`mechrare.analyses.resolve_settings`; they do not
    #: change training, so a run folder resumes whatever they hold.
    analyses: dict[str, dict[str, Any]] = field(default_factory=dict)

    def validate(self, path: str) -> None:
        require(0 <= self.seed < 2**63, f"{path}seed", f"must be in [0, 2**63), got {self.seed}")
        require(len(self.mixture.tasks) >= 1, f"{path}mixture.tasks", "needs at least one task, e.g. tasks = [{ family = \"facts\", complexity = 64, frequency = 0.3 }]")
        require(len(self.ladder.models) >= 1, f"{path}ladder.models", "needs at least one model, e.g. [ladder] models = [\"d16-l2\"]")
        names = [t.name for t in self.mixture.tasks]
        for where, iv in self.ladder.all_interventions():
            check_upsample(iv.upsample, names, f"{path}{where}" + (".task" if where == "ladder.sweep" else ".upsample"))

    def to_dict(self) -> dict[str, Any]:
        return drop_none(dataclasses.asdict(self))

    def training_dict(self) -> dict[str, Any]:
        """What decides the trained weights: the config without its analysis settings or seed list."""
        out = self.to_dict()
        out.pop("analyses", None)
        out.get("ladder", {}).pop("seeds", None)  # more seeds extend a run; each seed's weights are its own
        out.get("train", {}).pop("jobs", None)  # how many train side by side; the weights are the same
        out.get("train", {}).pop("prefetch", None)  # where batches are built; the batches are the same
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        return from_dict(cls, data)


# ---------------------------------------------------------------- conversion


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, path)
            except ConfigError as exc:
                errors.append(exc)
        wanted = " or ".join(_type_name(o) for o in options if o is not type(None))
        if len(errors) == 1 or isinstance(value, dict):
            raise errors[-1]
        raise ConfigError(f"{path}: expected {wanted}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {value!r}")
        return {str(k): _convert(item, v, _join(path, str(k))) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and bad values."""
    where = path or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{_join(path, unknown[0])}: unknown key; valid keys here: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _join(path, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(path, name)}: required key is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(path if path else "")
    return obj


def drop_none(value: Any) -> Any:
    """``value`` with every None entry of its dicts left out, recursively (what TOML and JSON files omit)."""
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_none(v) for v in value]
    return value


# ---------------------------------------------------------------- loading


def preset_names() -> list[str]:
    folder = resources.files("mechrare.presets")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def read_source(source: str) -> tuple[str, dict[str, Any]]:
    """Read a preset name or a TOML file path. Returns (name, raw dict)."""
    path = Path(source)
    if source.endswith(".toml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{source}: no such config file; give a TOML path or a preset ({', '.join(preset_names())})")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{source}: not a UTF-8 text file; a config is TOML text") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the config ({exc.strerror or exc})") from None
        name = path.stem
    else:
        if source not in preset_names():
            raise ConfigError(
                f"{source}: neither a TOML file nor a preset; presets: {', '.join(preset_names())}"
            )
        text = resources.files("mechrare.presets").joinpath(f"{source}.toml").read_text()
        name = source
    try:
        return name, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None


def parse_value(text: str) -> Any:
    """A TOML value (``10``, ``0.5``, ``true``, ``[1, 2]``, ``"x"``); else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (``mixture.tasks.0.frequency=2`` indexes lists)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected key=value, e.g. train.steps=100")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item}: empty key part in {key!r}")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            node = _step_into(node, part, ".".join(parts[: i + 1]))
        last = parts[-1]
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {item}: {'.'.join(parts[:-1])} is a value, not a table")
        if isinstance(node, list):
            node[_index(node, last, key)] = parse_value(raw.strip())
        else:
            node[last] = parse_value(raw.strip())
    return data


def _index(node: list, part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{where}: {part!r} is not an index into a list of {len(node)}")
    return int(part)


def _step_into(node: Any, part: str, where: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, where)]
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: is a value, not a table")
    return node.setdefault(part, {})


def load_config(source: str, overrides: list[str] | None = None) -> tuple[str, RunConfig]:
    """Load a preset or TOML file, apply overrides, validate. Returns (name, config)."""
    name, data = read_source(source)
    data = apply_overrides(data, list(overrides or []))
    return name, RunConfig.from_dict(data)


def dump_toml(config: RunConfig) -> str:
    import tomli_w

    return tomli_w.dumps(config.to_dict())
