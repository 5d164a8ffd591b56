"""End-of-turn models behind one Protocol."""

from interview.speech.turn.base import TURN_SAMPLE_RATE, TurnModel

__all__ = ["TURN_SAMPLE_RATE", "TurnModel"]
