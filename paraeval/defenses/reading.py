"""The readings of the choices the paper leaves open for its parasite defenses, as one typed set.

Every paper-row defense (and `dynamic-parasite`) carries a :class:`ParasiteReading`: a frozen
dataclass whose fields are the open choices that can move the numbers of Tables 1-3. Each
field declares its fixed set of values (or a numeric range), its default, the sentence of the
paper it interprets and the rule that picked the default. A reading is selected per run with
the selection syntax (``--defenses 'table2:init=dirac,pool=after'``, tags take options too),
validated once (an unknown option or value is a one-line error listing the valid ones) and
hashed into every cell key through the defense's ``options``.

The rule for the defaults (README "Reproduction", docs/readings.md): the text's reading where
the paper speaks; where it is silent, what an author using a standard framework (PyTorch here)
gets by default, unless that fails to train (loss not decreasing, NaN, an all-zero output; see
``training.training_failure``); never a per-row choice, never tuned toward the paper's numbers.
Where neither the text nor the framework gives a value, the project's documented choice stays
and the study measures alternatives. ``paraeval readings`` measures every alternative.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from ..errors import UserError

ParasiteInit = Literal["torch", "dirac", "kaiming", "glorot"]
BiasScope = Literal["conv", "all"]
BNStats = Literal["recalibrated", "training"]
PoolSide = Literal["before", "after"]
NeuronOrder = Literal["chw", "hwc"]

#: The project's default before the readings rule (identity start, lr 1e-2 from a fit study),
#: as a reading: the study confirms it beside the default so the change is measured.
PREVIOUS_DEFAULT = "init=dirac,lr=1e-2"

#: Values of the reading of Table 3 row 12: the dangling last line is its 4th parasite, or not.
ROW12_READINGS = (4, 3)


@dataclass(frozen=True)
class ReadingOption:
    """How one field of :class:`ParasiteReading` is parsed, checked and documented."""

    values: tuple[Any, ...] | None  # None: a number checked by `check`
    question: str
    paper: str  # the sentence of the paper it interprets ("" when the paper is silent)
    rule: str  # why the default is what it is
    parse: Callable[[str], Any] = str
    check: Callable[[Any], bool] = lambda _value: True
    requirement: str = ""


def _epochs(text: str) -> int | None:
    return None if text == "auto" else int(text)


def _option(**kwargs: Any) -> Any:
    default = kwargs.pop("default")
    return field(default=default, metadata={"reading": ReadingOption(**kwargs)})


@dataclass(frozen=True)
class ParasiteReading:
    """One reading of every open choice of the parasite defenses (see the module docstring)."""

    init: ParasiteInit = _option(
        default="torch",
        values=("torch", "dirac", "kaiming", "glorot"),
        question="initialisation of the parasite's convolutions",
        paper="",
        rule="silent paper -> PyTorch's default (kaiming-uniform a=sqrt(5) weights, uniform "
        "biases); dirac = identity start (Zhang et al. 2019), kaiming = He normal, glorot = "
        "Keras' default (Glorot uniform, zero bias)",
    )
    epochs: int | None = _option(
        default=None,
        values=None,
        parse=_epochs,
        check=lambda v: v is None or 1 <= v <= 200,
        requirement="'auto' or an integer in [1, 200]",
        question="training length of a parasite",
        paper="We train this model over 10,000 random inputs (Sec. 6.1)",
        rule="silent on epochs -> project choice 'auto': 10 epochs at 16x16, the same pixel "
        "budget at other sizes (4 at 28x28)",
    )
    lr: float = _option(
        default=1e-3,
        values=None,
        parse=float,
        check=lambda v: 0 < v <= 1,
        requirement="a float in (0, 1]",
        question="Adam learning rate of a parasite",
        paper="",
        rule="silent paper -> torch.optim.Adam's default lr 1e-3 (cosine-annealed over the "
        "training, the project's schedule)",
    )
    bias_scope: BiasScope = _option(
        default="conv",
        values=("conv", "all"),
        question="which parameters form beta in ||beta||_2 < 0.05 / beta = 0",
        paper="the first case can be achieved by increasing the bias in the convolutional "
        "layers (Sec. 5.3)",
        rule="text: Sec. 5.3 speaks of the convolutions' bias; 'all' adds the BN shifts",
    )
    bn_stats: BNStats = _option(
        default="recalibrated",
        values=("recalibrated", "training"),
        question="statistics of the parasite's BatchNorm once inserted",
        paper="The batch normalizations in this second model normalize their input, ensuring "
        "a mean of 0 and a standard deviation of 1 (Sec. 6.1)",
        rule="text: only statistics of the victim's activations normalise the parasite's input",
    )
    pool: PoolSide = _option(
        default="before",
        values=("before", "after"),
        question="an 'after BN and activation' parasite acts before or after the max-pool",
        paper="we also put ourselves in the context where pooling layers are not considered "
        "(Sec. 1.1); the parasite takes 'the first 16x16 neurons of the second convolutional "
        "layer' (Sec. 6.3)",
        rule="text: the conv layer's neurons are its outputs, before pooling",
    )
    order: NeuronOrder = _option(
        default="chw",
        values=("chw", "hwc"),
        question="order of a layer's neurons for 'first/last n neurons'",
        paper="we select the n input neurons as the first or the last ones from the previous "
        "layer (Sec. 6.1)",
        rule="silent paper -> PyTorch's flatten order (C, H, W); hwc is Keras' channels-last",
    )
    row12: int = _option(
        default=4,
        values=ROW12_READINGS,
        parse=int,
        question="Table 3 row 12: is the dangling line 'Last n neurons BN No bias - -' its "
        "4th parasite?",
        paper="Table 3, last row",
        rule="text layout: a line without numbers belongs to the next row with numbers",
    )

    @classmethod
    def parse(cls, owner: str, given: Mapping[str, Any]) -> ParasiteReading:
        """The reading with `given` (strings parsed) over the defaults; errors name the options."""
        options = reading_options()
        unknown = sorted(set(given) - set(options))
        if unknown:
            raise UserError(
                f"{owner}: unknown option(s) {', '.join(unknown)}; valid: {describe_valid()}"
            )
        values: dict[str, Any] = {}
        for name, raw in given.items():
            values[name] = _parse_value(owner, name, options[name], raw)
        return cls(**values)

    def as_options(self) -> dict[str, Any]:
        """Every field, for cell keys and labels."""
        return dataclasses.asdict(self)

    def updated(self, owner: str, options: Mapping[str, Any]) -> ParasiteReading:
        """This reading with `options` (strings parsed) applied on top, validated."""
        return ParasiteReading.parse(owner, {**self.changed(), **options})

    def changed(self) -> dict[str, Any]:
        """The fields that differ from the default reading."""
        default = ParasiteReading()
        return {k: v for k, v in self.as_options().items() if getattr(default, k) != v}


def _parse_value(owner: str, name: str, option: ReadingOption, raw: Any) -> Any:
    try:
        value = option.parse(raw) if isinstance(raw, str) else raw
    except ValueError:
        value = _INVALID
    valid = option.values is None or value in option.values
    if value is _INVALID or not valid or not option.check(value):
        raise UserError(f"{owner}: option {name}={raw!r} must be {_requirement(option)}")
    return value


_INVALID = object()


def _requirement(option: ReadingOption) -> str:
    if option.values is not None:
        return "one of " + "|".join(map(str, option.values))
    return option.requirement


def reading_options() -> dict[str, ReadingOption]:
    """Field name -> its declaration, in declaration order."""
    return {
        f.name: cast(ReadingOption, f.metadata["reading"])
        for f in dataclasses.fields(ParasiteReading)
    }


def describe_valid() -> str:
    """'init=torch|dirac|... (default torch), ...' for error messages."""
    default = ParasiteReading()
    return ", ".join(
        f"{name}={_requirement(option)} (default {shown_value(getattr(default, name))})"
        for name, option in reading_options().items()
    )


def shown_value(value: Any) -> str:
    """An option's value as the command line writes it (None is epochs' 'auto')."""
    return "auto" if value is None else str(value)


def option_rows() -> list[dict[str, str]]:
    """One row per option: name, values, default, question, paper sentence, rule (for
    ``paraeval list defenses --options`` and the report's reproduction notes)."""
    default = ParasiteReading()
    return [
        {
            "option": name,
            "values": _requirement(option),
            "default": shown_value(getattr(default, name)),
            "question": option.question,
            "paper": option.paper or "(silent)",
            "rule": option.rule,
        }
        for name, option in reading_options().items()
    ]
