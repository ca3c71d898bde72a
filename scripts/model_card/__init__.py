"""The default model's card (assets/default/MODEL_CARD.md), worded from measured numbers.

``scripts/export_default_model.py`` copies the finished runs into assets/ and calls :func:`card`; each module here
writes one part of the card, so a number's wording can be found (and tested) next to the data it reads.
"""
from .assembly import card
from .sources import CardSources

__all__ = ["CardSources", "card"]
