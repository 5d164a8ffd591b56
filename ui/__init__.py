"""Front ends of the service: the Gradio demo UI (mounted at /ui) and the web client (ui/web)."""
