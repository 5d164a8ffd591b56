"""Spool Interview: the interview domain, the voice pipeline and the API."""

# First, before anything imports gradio, onnxruntime or a hub client: see the module.
import interview.no_telemetry

# Then, before anything asks tempfile where to write: see the module.
import interview.temp_dir  # noqa: F401
