"""What can go wrong when a browser connects its voice; mapped to HTTP in interview/api."""

from __future__ import annotations


class VoiceUnavailable(Exception):
    """Voice is disabled, its models are still loading, or they failed to load."""

    def __init__(self, state: str, detail: str) -> None:
        super().__init__(detail)
        self.state = state
        self.detail = detail


class InvalidOffer(ValueError):
    pass


class InvalidCandidate(ValueError):
    pass


class AlreadyConnected(Exception):
    pass


class AtCapacity(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"all {limit} voice slots are in use")
        self.limit = limit


class NoConnection(LookupError):
    pass


class OwnerUnreachable(VoiceUnavailable):
    """Another instance holds the session's voice connection and did not answer in time (it is
    hung, overloaded, or has just died): retry shortly."""

    def __init__(self, detail: str) -> None:
        super().__init__("owner_unreachable", detail)
