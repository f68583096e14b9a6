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

from ..models.parasite import BiasScope, ParasiteInit
from ..options import Options, OptionSpec, option, shown_value
from ..training import ParasiteConfig

#: The training recipe's defaults, declared once (by the training config).
_RECIPE = ParasiteConfig(batch_norm=False, bias="none")

BNStats = Literal["recalibrated", "training"]
PoolSide = Literal["before", "after"]
NeuronOrder = Literal["chw", "hwc"]

#: The project's default before the readings rule (identity start, lr 1e-2 from a fit study),
#: as a reading: the study confirms it beside the default so the change is measured.
PREVIOUS_DEFAULT = "init=dirac,lr=1e-2"

#: Values of the reading of Table 3 row 12: the dangling last line is its 4th parasite, or not.
ROW12_READINGS = (4, 3)


def _epochs(text: str) -> int | None:
    return None if text == "auto" else int(text)


@dataclass(frozen=True)
class ParasiteReading(Options):
    """One reading of every open choice of the parasite defenses (see the module docstring)."""

    init: ParasiteInit = option(
        _RECIPE.init,
        values=("torch", "dirac", "kaiming", "glorot"),
        help="initialisation of the parasite's convolutions",
        paper="",
        rule="silent paper -> PyTorch's default (kaiming-uniform a=sqrt(5) weights, uniform "
        "biases); dirac = identity start (Zhang et al. 2019), kaiming = He normal, glorot = "
        "Keras' default (Glorot uniform, zero bias)",
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
        _RECIPE.lr,
        values=None,
        parse=float,
        check=lambda v: 0 < v <= 1,
        requirement="a float in (0, 1]",
        help="Adam learning rate of a parasite",
        paper="",
        rule="silent paper -> torch.optim.Adam's default lr 1e-3 (cosine-annealed over the "
        "training, the project's schedule)",
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
        """Every field, for cell keys and labels (``Options.as_dict``)."""
        return self.as_dict()


def reading_options() -> dict[str, OptionSpec]:
    """Field name -> its declaration, in declaration order."""
    return ParasiteReading.specs()


__all__ = ["ParasiteReading", "reading_options", "shown_value"]
