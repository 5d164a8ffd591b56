"""Front ends of the service: the Gradio demo UI (mounted at /ui) and the web client (ui/web)."""

# Before any module here imports gradio: its analytics off (see interview.no_telemetry).
import interview.no_telemetry  # noqa: F401
