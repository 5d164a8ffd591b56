"""Spool Interview: the interview domain, the voice pipeline and the API."""

# First, before anything imports gradio, onnxruntime or a hub client: see the module.
import interview.no_telemetry  # noqa: F401
