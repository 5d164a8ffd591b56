"""Nothing the service runs reports home: the switches, set before any library reads them.

The service is offline by design (README): no analytics, no model hubs. Gradio looks up a
telemetry host at import; ONNX Runtime's Linux wheels (1.29 and later, pinned here at 1.32)
queue usage events for Microsoft's collector and keep a device id under ~/.cache unless
ORT_DISABLE_TELEMETRY is set before its first session is created (checked in
tests/test_no_telemetry.py); Hugging Face's hub client would try to download a missing model.
The `interview` package imports this module first, so every entry point (app.py, `make models`,
the Gradio UI, the benchmarks, the tests) has them set. They are forced, not defaulted: a
deployment cannot turn them back on by accident.
"""

from __future__ import annotations

import os

SWITCHES = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ORT_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
}

os.environ.update(SWITCHES)
