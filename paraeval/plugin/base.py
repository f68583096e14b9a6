"""What every plugin object - defense, attack, victim, dataset - shares, with its defaults."""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Self

from paraeval.options import NoOptions, Options


def shape_text(shape: tuple[int, ...]) -> str:
    """(1, 28, 28) -> '1x28x28': how shapes are written in listings and notes."""
    return "x".join(str(n) for n in shape)


class Plugin:
    """Members shared by defenses and attacks, with their defaults.

    name         unique name (``--defenses NAME``)
    description  one line for ``paraeval list``
    tags         selectable groups (``--defenses table1``)
    victims      the victims it applies to; () = all (a defense's or attack's
                 :meth:`~paraeval.api.Applicable.applies_to` reads it)
    input_shapes the input shapes [C, H, W] it handles; () = any
    class_counts the numbers of classes it handles; () = any
    options      its typed options (an instance of ``options_class``, a frozen
                 :class:`~paraeval.options.Options` dataclass), hashed into cell keys
    """

    name: str
    description: str
    tags: tuple[str, ...] = ()
    victims: tuple[str, ...] = ()
    input_shapes: tuple[tuple[int, ...], ...] = ()
    class_counts: tuple[int, ...] = ()
    options_class: ClassVar[type[Options]] = NoOptions
    options: Options = NoOptions()

    def __init__(self, **given: Any) -> None:
        self.options = self.options_class.parse(self.name, given)

    def configure(self, **given: str) -> Self:
        """A copy with `given` (the selection syntax's strings) applied to its options."""
        configured = copy.copy(self)
        configured.options = self.options.updated(self.name, given)
        return configured

    def key_options(self) -> dict[str, Any]:
        """What the cell key hashes of this plugin's configuration (its options)."""
        return self.options.as_dict()

    def unsupported(self, input_shape: tuple[int, ...], classes: int) -> str | None:
        """Why it cannot run on a dataset of these inputs and classes (None: it can), from
        ``input_shapes`` and ``class_counts``; the run skips such pairs with one note."""
        if self.input_shapes and tuple(input_shape) not in self.input_shapes:
            shapes = " or ".join(shape_text(shape) for shape in self.input_shapes)
            return f"need {shapes} inputs"
        if self.class_counts and classes not in self.class_counts:
            return f"need {' or '.join(map(str, self.class_counts))} classes"
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"
