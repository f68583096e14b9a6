"""The readings of the choices the paper leaves open for its parasite defenses, as one typed set.

Every paper-row defense (and `dynamic-parasite`) carries a :class:`ParasiteReading`: a frozen
dataclass whose fields are the open choices that can move the numbers of Tables 1-3. Each
field declares its fixed set of values (or a numeric range), its default, the sentence of the
paper it interprets and the rule that picked the default. A reading is selected per run with
the selection syntax (``--defenses 'table2:init=dirac,pool=after'``, tags take options too),
validated once (an unknown option or value is a one-line error listing the valid ones) and
hashed into every cell key through the defense's ``options``.

The rule for the defaults (docs/readings.md): the text's reading where
the paper speaks; where it is silent, what an author using a standard framework (PyTorch here)
gets by default, unless that fails to train (loss not decreasing, NaN, an all-zero output; see
``training.training_failure``); never a per-row choice, never tuned toward the paper's numbers.
Where neither the text nor the framework gives a value, the project's documented choice stays
and the study measures alternatives. ``paraeval readings`` measures every alternative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from paraeval.models.parasite import BiasScope, ParasiteInit
from paraeval.options import Options, OptionSpec, option, shown_value
from paraeval.training.parasites import (
    LATER_FIELDS,
    Budget,
    Optimiser,
    ParasiteConfig,
    Schedule,
    Until,
)

#: The training recipe's defaults, declared once (by the training config).
_RECIPE = ParasiteConfig(batch_norm=False, bias="none")

BNStats = Literal["recalibrated", "training"]
BNScaleShift = Literal["learned", "none"]
WholeSite = Literal["after-act", "after-bn"]
WholeParasites = Literal["shared", "per-channel"]
WholeSide = Literal["map", "16"]
Rescale = Literal["none", "unit"]
Table3Lines = Literal["next", "previous"]
PoolSide = Literal["before", "after"]
NeuronOrder = Literal["chw", "hwc"]

#: The framework's defaults (PyTorch's initialisation, Adam's lr) without the defender's
#: selection: the project's default before the fit rule (docs/readings.md), as a reading; the
#: study confirms it beside the default so the change of default is measured.
FRAMEWORK_DEFAULT = "init=torch,lr=1e-3,select=1"
#: The default without the defender's selection (Sec. 5.3), confirmed beside it.
NO_SELECTION = "select=1"

#: Values of the reading of Table 3 row 12: the dangling last line is its 4th parasite, or not.
ROW12_READINGS = (4, 3)


def _epochs(text: str) -> int | None:
    return None if text == "auto" else int(text)


def _max_drop(text: str) -> float | None:
    return None if text == "none" else float(text)


#: Options added after cells were first stored, with the value every cell had before they
#: existed: at that value an option stays out of the cell key (stored cells keep their keys);
#: any other value changes it.
LATER_OPTIONS: dict[str, object] = {
    **{k: v for k, v in LATER_FIELDS.items() if k != "bn_affine"},
    "batch": 100, "select": 1, "max_drop": None, "bn_scale_shift": "learned",
    "whole_site": "after-act", "whole_parasites": "shared", "whole_side": "map", "rescale": "none",
    "table3_lines": "next",
}  # fmt: skip
#: Options that concern whole-layer placements only (Table 2): out of the key of other rows.
WHOLE_LAYER_OPTIONS = ("whole_site", "whole_parasites", "whole_side")


@dataclass(frozen=True)
class ParasiteReading(Options):
    """One reading of every open choice of the parasite defenses (see the module docstring)."""

    init: ParasiteInit = option(
        "dirac",
        values=("torch", "dirac", "kaiming", "glorot"),
        help="initialisation of the parasite's convolutions",
        paper="CNNs manage to approximate the identity very accurately (Sec. 3); how they are "
        "initialised: (silent)",
        rule="rule 3: PyTorch's default (kaiming-uniform a=sqrt(5) weights, uniform biases) "
        "with Adam's lr 1e-3 trains parasites that fit x + N worse than the identity map "
        "(docs/parasite-fit.md, generated from reports/parasite_fit.csv); the passing recipe "
        "with the fewest departures is dirac with lr 1e-2. dirac = identity start (Zhang et "
        "al. 2019), torch = PyTorch's default, kaiming = He normal, glorot = Keras' default",
    )
    epochs: int | None = option(
        _RECIPE.epochs,
        values=None,
        parse=_epochs,
        check=lambda v: v is None or 1 <= v <= 200,
        requirement="'auto' or an integer in [1, 200]",
        help="training length of a parasite",
        paper="We train this model over 10,000 random inputs (Sec. 6.1)",
        rule="silent on epochs -> project choice 'auto': 10 epochs at 16x16, the same pixel "
        "budget at other sizes (4 at 28x28)",
    )
    lr: float = option(
        1e-2,
        values=None,
        parse=float,
        check=lambda v: 0 < v <= 1,
        requirement="a float in (0, 1]",
        help="learning rate of a parasite's optimiser",
        paper="",
        rule="rule 3 with init (docs/parasite-fit.md): Adam's default 1e-3 fails the fit test "
        "under every measured initialisation; 1e-2 with the identity start passes "
        "(cosine-annealed over the training, the project's schedule)",
    )
    bias_scope: BiasScope = option(
        "conv",
        values=("conv", "all"),
        help="which parameters form beta in ||beta||_2 < 0.05 / beta = 0",
        paper="the first case can be achieved by increasing the bias in the convolutional "
        "layers (Sec. 5.3)",
        rule="text: Sec. 5.3 speaks of the convolutions' bias; 'all' adds the BN shifts",
    )
    bn_stats: BNStats = option(
        "recalibrated",
        values=("recalibrated", "training"),
        help="statistics of the parasite's BatchNorm once inserted",
        paper="The batch normalizations in this second model normalize their input, ensuring "
        "a mean of 0 and a standard deviation of 1 (Sec. 6.1)",
        rule="text: only statistics of the victim's activations normalise the parasite's input",
    )
    pool: PoolSide = option(
        "before",
        values=("before", "after"),
        help="an 'after BN and activation' parasite acts before or after the max-pool",
        paper="we also put ourselves in the context where pooling layers are not considered "
        "(Sec. 1.1); the parasite takes 'the first 16x16 neurons of the second convolutional "
        "layer' (Sec. 6.3)",
        rule="text: the conv layer's neurons are its outputs, before pooling",
    )
    order: NeuronOrder = option(
        "chw",
        values=("chw", "hwc"),
        help="order of a layer's neurons for 'first/last n neurons'",
        paper="we select the n input neurons as the first or the last ones from the previous "
        "layer (Sec. 6.1)",
        rule="silent paper -> PyTorch's flatten order (C, H, W); hwc is Keras' channels-last",
    )
    optimizer: Optimiser = option(
        _RECIPE.optimizer,
        values=("adam", "sgd"),
        help="optimiser of a parasite's training (sgd: plain SGD, torch's defaults but the lr)",
        paper="",
        rule="silent paper, no framework default -> project choice Adam (rule 4), measured",
    )
    schedule: Schedule = option(
        _RECIPE.schedule,
        values=("cosine", "constant"),
        help="learning-rate schedule of a parasite's training",
        paper="",
        rule="silent paper -> project choice cosine annealing (rule 4; an optimiser alone "
        "keeps its lr constant: the alternative), measured",
    )
    budget: Budget = option(
        _RECIPE.budget,
        values=("pixels", "steps"),
        help="training length at sides other than 16 when epochs=auto: the same pixel budget "
        "(4 epochs = 400 steps at 28x28) or the same steps (10 epochs = 1,000 steps)",
        paper="We train this model over 10,000 random inputs {x_i in [0, 1]^n} of size "
        "n = 16x16 (Sec. 6.1)",
        rule="silent on other sides -> project choice 'pixels' (rule 4), measured",
    )
    until: Until = option(
        _RECIPE.until,
        values=("budget", "plateau"),
        help="train for the budget, or until the held-out fit stops improving (2 epochs "
        "without a 1 % gain, at most 5x the budget; the best epoch is kept)",
        paper="",
        rule="silent paper -> project choice 'budget' (rule 4), measured",
    )
    batch: int = option(
        _RECIPE.batch_size,
        values=None,
        parse=int,
        check=lambda v: 1 <= v <= 10_000,
        requirement="an integer in [1, 10000]",
        help="mini-batch size of a parasite's training",
        paper="",
        rule="silent paper -> project choice 100 (rule 4), measured",
    )
    select: int = option(
        3,
        values=None,
        parse=int,
        check=lambda v: 1 <= v <= 50,
        requirement="an integer in [1, 50]",
        help="candidate parasites trained per placement; the defender keeps the one whose "
        "insertion costs the least accuracy on a validation split of the training set",
        paper="several CNNs approximating the identity are trained independently from the "
        "victim network, and the victim can then select one or several CNNs adapted to the "
        "network at hand (Sec. 5.3)",
        rule="text: the victim selects; silent on how many -> project choice 3 (rule 4), "
        "measured against 1 and 10 (docs/readings.md)",
    )
    max_drop: float | None = option(
        None,
        values=None,
        parse=_max_drop,
        check=lambda v: v is None or 0 <= v <= 100,
        requirement="'none' or a number of percentage points in [0, 100]",
        none_text="none",
        help="with select > 1: keep the first candidate (in order) whose validation accuracy "
        "drop is at most this many pp, training no further ones; none: the smallest drop of "
        "all (ties: the earlier candidate)",
        paper="The standard deviation of this added noise is selected so as to avoid a "
        "significant drop in the original model's accuracy (Sec. 5.3)",
        rule="silent on a bound -> none (compare all candidates)",
    )
    bn_scale_shift: BNScaleShift = option(
        "learned",
        values=("learned", "none"),
        help="whether a parasite's BN layers learn a scale and shift, or only normalise",
        paper="The batch normalizations in this second model normalize their input, ensuring "
        "a mean of 0 and a standard deviation of 1 (Sec. 6.1)",
        rule="silent on learned parameters -> PyTorch's BatchNorm2d default (affine: a learned "
        "scale and shift); 'none' reads the sentence as normalisation alone",
    )
    whole_site: WholeSite = option(
        "after-act",
        values=("after-act", "after-bn"),
        help="a whole-layer parasite (Table 2) reads the layer after its BN and ReLU, or after "
        "its BN and before the ReLU",
        paper="their input is the entire output of the first layer (after the BN layer) "
        "(Table 2 caption)",
        rule="text: Tables 1 and 3 place parasites 'after BN and activation'; the caption "
        "names the BN only, so 'after-bn' (before the ReLU) is measured beside it",
    )
    whole_parasites: WholeParasites = option(
        "shared",
        values=("shared", "per-channel"),
        help="a whole-layer parasite: one parasite for every channel map, or an independent "
        "parasite (its own noise N) per channel",
        paper="the same number of layers and parameters. The only difference is the model's "
        "input and output sizes (Sec. 6.3, Table 2)",
        rule="text: one model whose only difference is its input size -> one parasite shared "
        "by the channel maps; per-channel parasites measured beside it",
    )
    whole_side: WholeSide = option(
        "map",
        values=("map", "16"),
        help="a whole-layer parasite is trained on maps of the layer's side (28x28), or is the "
        "16x16-trained parasite applied to the larger maps (it is fully convolutional)",
        paper="The only difference is the model's input and output sizes (Sec. 6.3)",
        rule="text: another input size -> trained at the layer's side",
    )
    rescale: Rescale = option(
        "none",
        values=("none", "unit"),
        help="the neurons a parasite reads are given as they are, or mapped affinely into "
        "[0, 1] (min and max over the calibration images) and mapped back after it",
        paper="We train this model over 10,000 random inputs {x_i in [0, 1]^n} (Sec. 6.1)",
        rule="silent on inputs outside [0, 1] -> as they are (the parasite is inserted "
        "unchanged, Sec. 4); 'unit' gives it the range it was trained on",
    )
    table3_lines: Table3Lines = option(
        "next",
        values=("next", "previous"),
        help="Table 3's flattened lines: a line without numbers belongs to the next row with "
        "numbers, or to the previous one (rows 6-12 change; row12 applies under 'next' only)",
        paper="Table 3 (its multi-line cells, as the text prints them)",
        rule="text layout: a row's numbers on its last printed line, as rows 7-9 print them "
        "after their lines; 'previous' measured beside it",
    )
    row12: int = option(
        4,
        values=ROW12_READINGS,
        parse=int,
        help="Table 3 row 12: is the dangling line 'Last n neurons BN No bias - -' its "
        "4th parasite?",
        paper="Table 3, last row",
        rule="text layout: a line without numbers belongs to the next row with numbers",
    )

    def as_options(self) -> dict[str, Any]:
        """Every field, for labels (``Options.as_dict``)."""
        return self.as_dict()

    def key_dict(self) -> dict[str, Any]:
        """What the cell key hashes: every option, those of :data:`LATER_OPTIONS` only where
        they differ from the value cells had before the option existed."""
        return {
            name: value
            for name, value in self.as_dict().items()
            if name not in LATER_OPTIONS or value != LATER_OPTIONS[name]
        }


def reading_options() -> dict[str, OptionSpec]:
    """Field name -> its declaration, in declaration order."""
    return ParasiteReading.specs()


__all__ = ["ParasiteReading", "reading_options", "shown_value"]
