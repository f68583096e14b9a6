"""Every choice the paper leaves open, as data: the report's "Reproduction notes" section.

Each entry names the question, the reading paraeval takes, why, and where the code implements
it (the implementing module's docstring has the details). The values quoted are read from the
implementing constants, so the report cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from .attacks.critical_points import CriticalPointAttack
from .attacks.fgsm import FGSMSweep
from .defenses.reading import option_rows
from .extraction.truth import MATCH_TOLERANCE
from .models.lenet import LENET_CONV1_PADDING
from .models.mlp import MLP_HIDDEN
from .models.parasite import BIAS_RADIUS, PADDING
from .training import ParasiteConfig, VictimConfig


@dataclass(frozen=True)
class Choice:
    question: str
    reading: str
    why: str
    where: str


def _fgsm_grid() -> str:
    eps = FGSMSweep().epsilons()
    return f"{eps[0]}, {eps[1]}, ..., {eps[-1]}"


def reading_choices() -> list[Choice]:
    """One Choice per reading option of the parasite defenses (paraeval.defenses.reading)."""
    return [
        Choice(
            f"{row['question']} (option {row['option']})",
            f"{row['default']} (values {row['values']})",
            f"{row['rule']}; paper: {row['paper']}",
            "paraeval/defenses/reading.py",
        )
        for row in option_rows()
    ]


def choices() -> list[Choice]:
    victim, parasite = VictimConfig("vm"), ParasiteConfig(True, "small")
    return [*reading_choices(), *_fixed_choices(victim, parasite)]


def _fixed_choices(victim: VictimConfig, parasite: ParasiteConfig) -> list[Choice]:
    return [
        Choice(
            "LeNet padding",
            f"conv1 pads by {LENET_CONV1_PADDING}, conv2 by 0 (6@28x28, 16@10x10, fc1 has 400 "
            "inputs)",
            "reproduces LeNet-5's 32x32 geometry on 28x28 MNIST; every conv1 map is square",
            "paraeval/models/lenet.py",
        ),
        Choice(
            "Victim training",
            f"Adam, one-cycle lr {victim.lr}, batch {victim.batch_size}, {victim.epochs} epochs, "
            f"seed {victim.seed}, one thread (bit-identical on any core count)",
            "not in the paper; reaches the paper's accuracies (98.78 %, 99.11 %)",
            "paraeval/training.py",
        ),
        Choice(
            "Parasite padding",
            f"{PADDING} (zeros) in every 5x5 convolution",
            "output size equals input size, so the output is written back in place",
            "paraeval/models/parasite.py",
        ),
        Choice(
            "Parasite training recipe",
            f"init '{parasite.init}', Adam lr {parasite.lr} cosine-annealed, batch "
            f"{parasite.batch_size}, {parasite.epoch_count} epochs at 16x16 (same pixel budget "
            f"at 28x28), {parasite.n_train} random inputs uniform in [0, 1]; ||beta|| kept <= "
            f"{BIAS_RADIUS:.5f} by projection after every optimiser step",
            "not in the paper beyond the 10,000 random inputs; init, lr and epochs are reading "
            "options (below) with framework defaults; optimiser, schedule and batch are the "
            "project's choice",
            "paraeval/training.py",
        ),
        Choice(
            "Whole layer (Table 2) on a non-square layer",
            "each 28x28 channel map of conv1 is its own square input to one shared parasite, "
            "trained on 28x28 inputs with a 28x28 noise; placed after BN and activation",
            "the only reading where the layer 'has a number of neurons which is a square'; "
            "'the only difference is the model's input and output sizes'",
            "paraeval/models/insertion.py, paraeval/defenses/parasites.py",
        ),
        Choice(
            "Table 3 layout",
            "row-by-row reading in paraeval/paper.py; row 10's second 'first n' parasite is "
            "applied to the last n neurons",
            "Sec. 6.3: two parasites at one location act on the first and the last neurons",
            "paraeval/paper.py",
        ),
        Choice(
            "Parasite sharing between rows and seeds",
            "a parasite's seed derives from the run seed, the table and its slot in the row",
            "parasites are trained independently of the victim (Sec. 5.3); a seed changes the "
            "noise, the initialisation and the training order",
            "paraeval/defenses/parasites.py",
        ),
        Choice(
            "FGSM label and epsilon grid",
            f"y = true label; eps = {_fgsm_grid()}; clipped to [0, 1]",
            "Sec. 6.2 / Eq. 14",
            "paraeval/attacks/fgsm.py",
        ),
        Choice(
            "Which images count for M_adv",
            "first 200 test images; images the victim misclassifies, and images never made "
            "adversarial up to eps = 1, are excluded; 'adversarial' = prediction != true label",
            "an error is not an adversarial example; without an example there is nothing to replay",
            "paraeval/metrics.py",
        ),
        Choice(
            "Uncertainty",
            "Student-t 95 % interval over seeds (summary); Wilson 95 % interval per cell for "
            "accuracy (10,000 images) and M_adv (n_adversarial examples)",
            "seeds vary the parasite; within a seed the image set is fixed, a binomial sample",
            "paraeval/metrics.py",
        ),
        Choice(
            "Dynamic parasites (Remark 1)",
            "per query image, one of 4 parasites x 2 locations drawn from a seeded generator",
            "batching must not change what one client query sees",
            "paraeval/defenses/dynamic.py",
        ),
        Choice(
            "Parasite training threads",
            "one thread per parasite; a run trains the parasites it needs ahead, one worker "
            "process per core",
            "weights depend on how reductions split across threads; one thread gives the same "
            "parasite on every machine",
            "paraeval/training.py",
        ),
        Choice(
            "Extraction oracle (future work of Sec. 7)",
            f"float64 copy of the protected model, f(x) = <r, logits(x)> with r ~ N(0, I); "
            f"Carlini lines and in-domain lines (two test images), equal query budget "
            f"(default {CriticalPointAttack().options['budget']} per kind of line)",
            "Carlini et al. 2020 attack a scalar projection of the logits, never the softmax, "
            "in 64-bit floats; in-domain lines are what an image-classifier client can send",
            "paraeval/attacks/critical_points.py",
        ),
        Choice(
            "Which critical points are 'first-layer'",
            f"a victim unit (affine map before its first ReLU) crosses zero within "
            f"{MATCH_TOLERANCE:g} of the line's length; others are attributed by probing the "
            "protected model either side: parasite ReLU, max-pool arg-max change, deeper ReLU",
            "max(a, b) has its own kink (normal J_a - J_b), neither a first-layer nor a "
            "parasite unit, so max-pool kinks are counted apart",
            "paraeval/extraction/truth.py",
        ),
        Choice(
            "Functionally-equivalent extraction victim",
            f"`mlp` 784-{MLP_HIDDEN}-10 ReLU; parasite on the whole hidden layer as one "
            f"{int(MLP_HIDDEN**0.5)}x{int(MLP_HIDDEN**0.5)} map after its ReLU; paraeval's own "
            "search by default, ART's FunctionallyEquivalentExtraction as backend=art",
            "ART's implementation handles two-layer networks only and, measured, merges two "
            "kinks 5.7e-4 apart on the unprotected mlp (63 of 64 critical points)",
            "paraeval/attacks/fee.py",
        ),
    ]
