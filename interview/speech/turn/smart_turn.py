"""pipecat's Smart Turn v3.2 end-of-turn model, run from its ONNX file with onnxruntime.

The model (pipecat-ai/smart-turn, BSD-2-Clause; `make models` cuts it out of the pipecat-ai
wheel) hears the turn's last 8 s at 16 kHz, zero-padded at the front, as Whisper log-mel features
(80 x 800) of the waveform normalised to zero mean and unit variance, as pipecat's
LocalSmartTurnAnalyzerV3 feeds it. Its graph ends in a sigmoid, so the output named `logits` is
already the probability that the turn is finished.

faster-whisper's FeatureExtractor gives pipecat's features to within float32 rounding
(tests/speech/test_smart_turn.py compares them with pipecat's own code on speech), so its
spectrogram is reused rather than kept here.

One call costs about 52 ms of CPU on this 2-core machine (median of 20 calls on 8 s of speech,
1 thread: 47 ms the ONNX graph, 5 ms the features); the fastest calls took 51 ms of wall time,
but with both cores shared (load 3 to 11) the median wall time was 100 to 245 ms. Cheap enough
for each pause of an answer, far too dear for each 32 ms frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from interview.speech.turn.base import TURN_SAMPLE_RATE

if TYPE_CHECKING:
    import onnxruntime as ort

WINDOW_SECONDS = 8
WINDOW = WINDOW_SECONDS * TURN_SAMPLE_RATE  # 128,000 samples
N_MELS = 80
FRAMES = 800  # 10 ms hops over the window
# Added to the variance before the normalisation divides by it, as pipecat (and transformers'
# WhisperFeatureExtractor) does: all-silent input stays zeros instead of dividing by zero.
NORM_EPS = 1e-7


def window(audio: NDArray[np.float32]) -> NDArray[np.float32]:
    """The last 8 s of `audio`, zero-padded at the front to exactly 8 s."""
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected mono audio (1-D), got shape {samples.shape}")
    out = np.zeros(WINDOW, dtype=np.float32)
    tail = samples[-WINDOW:]
    if tail.size:
        out[-tail.size :] = tail
    return out


def normalise(samples: NDArray[np.float32]) -> NDArray[np.float32]:
    """Zero mean, unit variance over the whole window, padding included (as pipecat does)."""
    normalised = (samples - samples.mean()) / np.sqrt(samples.var() + NORM_EPS)
    return np.asarray(normalised, dtype=np.float32)


class SmartTurn:
    name = "smart-turn-v3.2"

    def __init__(self, model_path: Path, model_id: str, threads: int = 1) -> None:
        # Imported here: the Protocol and the window helpers must not load onnxruntime or
        # faster-whisper (CTranslate2).
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        options = ort.SessionOptions()
        # Calls are short and come from several sessions at once on 2 shared cores: one thread
        # each, run in order, and no spinning (a spinning thread burns a core between calls).
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session: ort.InferenceSession = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._features = FeatureExtractor(feature_size=N_MELS, sampling_rate=TURN_SAMPLE_RATE)
        # The model file's checksum decides the answers; the input pipeline is fixed.
        self.cache_key = f"{self.name}|{model_id}"

    def features(self, audio: NDArray[np.float32]) -> NDArray[np.float32]:
        """The model's input for the turn so far: (80, 800) log-mel features."""
        # padding=0: the window is already exactly 8 s; the extractor's centred STFT gives 801
        # frames and drops the last, as pipecat's does.
        mel = self._features(normalise(window(audio)), padding=0)
        return np.asarray(mel, dtype=np.float32)

    def probability(self, audio: NDArray[np.float32]) -> float:
        # Safe from several threads at once: run() is thread-safe and the extractor keeps no
        # state between calls.
        features = self.features(audio)[np.newaxis]
        (out,) = self._session.run(["logits"], {"input_features": features})
        return float(np.asarray(out).reshape(-1)[0])

    def warmup(self) -> None:
        # The first run allocates and optimises; it is several times slower than the rest.
        self.probability(np.zeros(TURN_SAMPLE_RATE, dtype=np.float32))
