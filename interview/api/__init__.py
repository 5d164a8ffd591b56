"""The HTTP face of the interview service: thin routes over interview.sessions."""

from interview.api.errors import install_error_handlers
from interview.api.middleware import (
    BodySizeLimitMiddleware,
    HeaderSizeLimitMiddleware,
    JSONErrorCORSMiddleware,
    RequestBodyTimeoutMiddleware,
    RequestLogMiddleware,
)
from interview.api.routes import router
from interview.api.voice import router as voice_router

__all__ = [
    "BodySizeLimitMiddleware",
    "HeaderSizeLimitMiddleware",
    "JSONErrorCORSMiddleware",
    "RequestBodyTimeoutMiddleware",
    "RequestLogMiddleware",
    "install_error_handlers",
    "router",
    "voice_router",
]
