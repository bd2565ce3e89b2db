"""Data layer: readers, the canonical listens table, Interactions, weighting, filters, synth."""

from tastemaker.data.interactions import Interactions, ListenEvents, TagAssignments, Vocabulary

__all__ = ["Interactions", "ListenEvents", "TagAssignments", "Vocabulary"]
