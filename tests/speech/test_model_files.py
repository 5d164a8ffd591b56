"""The assembled speech model files, and what verification says when one is missing or damaged.

`make test` runs `make models` first, so the real files are here; the damaged ones are copies.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from interview.speech import model_files
from interview.speech.model_files import (
    DOWNLOADS_DIR,
    KOKORO_MODEL,
    KOKORO_VOICES,
    SILERO_VAD,
    SMART_TURN,
    VOICE_SHAPE,
    WHISPER,
    ModelFile,
    ModelPaths,
    ModelsNotReady,
    assemble,
    models_dir_from_env,
    verify_files,
)

ROOT = Path(__file__).resolve().parents[2]
ENGLISH_VOICES = ("af_heart", "af_sarah", "am_michael", "bf_emma")


@pytest.fixture(scope="session")
def models() -> ModelPaths:
    """The assembled default models, hashed once for the whole session."""
    paths = ModelPaths(models_dir_from_env())
    paths.verify()
    return paths


def test_assembled_files_match_the_manifest(models: ModelPaths) -> None:
    assert models.kokoro_model.stat().st_size == KOKORO_MODEL.size
    assert models.kokoro_voices.stat().st_size == KOKORO_VOICES.size
    assert models.silero_vad.stat().st_size == SILERO_VAD.size
    assert models.smart_turn.stat().st_size == SMART_TURN.size
    assert models.whisper_dir == models.root / "whisper-tiny.en"
    assert {models.root / f.path for f in models.files} >= {
        models.kokoro_model,
        models.kokoro_voices,
        models.silero_vad,
        models.smart_turn,
    }


def test_whisper_tiny_en_folder_has_its_four_files(models: ModelPaths) -> None:
    names = {p.name for p in models.whisper_dir.iterdir()}
    assert names == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    assert json.loads((models.whisper_dir / "config.json").read_text())


def _npy_headers(npz: Path) -> dict[str, dict[str, object]]:
    headers = {}
    with zipfile.ZipFile(npz) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                assert member.read(8) == b"\x93NUMPY\x01\x00"
                length = int.from_bytes(member.read(2), "little")
                headers[info.filename.removesuffix(".npy")] = ast.literal_eval(
                    member.read(length).decode("latin1")
                )
    return headers


def test_voices_hold_the_english_voices_as_float32_510_1_256(models: ModelPaths) -> None:
    headers = _npy_headers(models.kokoro_voices)
    assert len(headers) == 54
    for name in ENGLISH_VOICES:
        assert headers[name] == {"descr": "<f4", "fortran_order": False, "shape": VOICE_SHAPE}


def test_voices_load_with_numpy_as_kokoro_onnx_does(models: ModelPaths) -> None:
    import numpy as np

    voices = np.load(models.kokoro_voices)
    for name in ENGLISH_VOICES:
        array = voices[name]
        assert array.shape == (510, 1, 256)
        assert array.dtype == np.float32
        assert np.isfinite(array).all()
        assert 0 < np.abs(array).max() < 10


def _copy(source: Path, folder: Path, model_file: ModelFile) -> Path:
    target = folder / model_file.path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


@pytest.mark.parametrize("model_file", [SILERO_VAD, SMART_TURN], ids=lambda f: f.path)
def test_a_flipped_byte_is_named_with_the_fix(
    models: ModelPaths, tmp_path: Path, model_file: ModelFile
) -> None:
    copy = _copy(models.root / model_file.path, tmp_path, model_file)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(data)
    with pytest.raises(ModelsNotReady) as error:
        verify_files(tmp_path, [model_file])
    message = str(error.value)
    assert str(copy) in message
    assert "sha256" in message
    assert "make models" in message


def test_a_truncated_file_is_named_by_its_size(models: ModelPaths, tmp_path: Path) -> None:
    config = WHISPER["tiny.en"][1]
    copy = _copy(models.root / config.path, tmp_path, config)
    copy.write_bytes(copy.read_bytes()[:-1])
    with pytest.raises(
        ModelsNotReady, match=re.escape(f"config.json: corrupt: {config.size - 1} bytes")
    ):
        verify_files(tmp_path, [config])


def test_missing_files_say_run_make_models(tmp_path: Path) -> None:
    paths = ModelPaths(tmp_path)
    with pytest.raises(ModelsNotReady) as error:
        paths.verify()
    message = str(error.value)
    for model_file in paths.files:
        assert f"{tmp_path / model_file.path}: missing" in message
    assert "run `make models`" in message


def test_an_unknown_whisper_model_is_refused() -> None:
    with pytest.raises(ValueError, match=re.escape("tiny.en")):
        ModelPaths(whisper="large")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="accurate model 'small'"):
        ModelPaths(accurate="small")  # type: ignore[arg-type]


def test_the_accurate_model_is_verified_unless_it_is_off(models: ModelPaths) -> None:
    assert models.accurate == "base"
    assert models.accurate_dir == models.root / "whisper-base"
    assert set(WHISPER["base"]) <= set(models.files)
    names = {p.name for p in models.accurate_dir.iterdir()}
    assert names == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    off = ModelPaths(models.root, accurate="off")
    assert off.accurate_dir is None
    assert not set(WHISPER["base"]) & set(off.files)
    # Whisper base as the live model too: its files are listed once.
    both = ModelPaths(models.root, whisper="base")
    assert len(both.files) == len(set(both.files))


def test_assembly_rebuilds_damaged_files_from_the_cache(models: ModelPaths, tmp_path: Path) -> None:
    downloads = models.root / DOWNLOADS_DIR
    cached = sorted(downloads.iterdir())
    (tmp_path / SILERO_VAD.path).write_bytes(b"half a file")
    killed_run = tmp_path / f".{SILERO_VAD.path}.999999999.partial"  # no such pid
    killed_run.write_bytes(b"left by a killed run")
    # The voices are written by this code, not copied: a match with the pin shows the build is
    # reproducible from one run to the next.
    built = assemble(tmp_path, [SILERO_VAD, KOKORO_VOICES], downloads=downloads)
    assert built == [SILERO_VAD, KOKORO_VOICES]
    verify_files(tmp_path, [SILERO_VAD, KOKORO_VOICES])
    assert not killed_run.exists()
    assert sorted(downloads.iterdir()) == cached  # nothing was fetched
    assert assemble(tmp_path, [SILERO_VAD, KOKORO_VOICES], downloads=downloads) == []


def test_smart_turn_is_cut_from_the_pipecat_wheel_without_installing_it(
    models: ModelPaths, tmp_path: Path
) -> None:
    downloads = models.root / DOWNLOADS_DIR
    ((package, member),) = SMART_TURN.sources
    (wheel,) = downloads.glob(package.file_pattern)
    assert wheel.name == "pipecat_ai-1.14.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        assert archive.getinfo(member).file_size == SMART_TURN.size
    assert assemble(tmp_path, [SMART_TURN], downloads=downloads) == [SMART_TURN]
    verify_files(tmp_path, [SMART_TURN])
    # A data carrier only: the framework (and its dependencies) stays out of the venv.
    assert importlib.util.find_spec("pipecat") is None


def test_a_build_that_misses_its_pin_leaves_no_file(models: ModelPaths, tmp_path: Path) -> None:
    wrong = ModelFile(SILERO_VAD.path, SILERO_VAD.size, "0" * 64, SILERO_VAD.sources)
    with pytest.raises(ModelsNotReady, match=re.escape("silero_vad.onnx built from")):
        assemble(tmp_path, [wrong], downloads=models.root / DOWNLOADS_DIR)
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_download_is_named_with_the_fix(models: ModelPaths, tmp_path: Path) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (wheel,) = (models.root / DOWNLOADS_DIR).glob("silero_vad-6.2.3-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo(SILERO_VAD.sources[0][1])
    data = bytearray(wheel.read_bytes())
    # Inside the member's compressed bytes: past its local header (30 bytes, name, extra field).
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    data[start + info.compress_size // 2] ^= 0x01
    (downloads / wheel.name).write_bytes(data)
    with pytest.raises(ModelsNotReady, match="damaged") as error:
        assemble(tmp_path, [SILERO_VAD], downloads=downloads)
    assert f"delete {downloads}" in str(error.value)
    assert not (tmp_path / SILERO_VAD.path).exists()


def test_assembled_models_are_left_alone(models: ModelPaths) -> None:
    before = {f.path: (models.root / f.path).stat().st_mtime_ns for f in models.files}
    assert assemble(models.root, models.files) == []
    assert before == {f.path: (models.root / f.path).stat().st_mtime_ns for f in models.files}


def _cli(*args: str, models_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELS_DIR": str(models_dir)}
    env.pop("WHISPER_MODEL", None)
    env.pop("ACCURATE_STT_MODEL", None)
    return subprocess.run(
        [sys.executable, "-m", "interview.speech.model_files", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_verify(models: ModelPaths, tmp_path: Path) -> None:
    ok = _cli("verify", models_dir=models.root)
    assert ok.returncode == 0, ok.stderr
    assert "present and verified" in ok.stdout
    missing = _cli("verify", models_dir=tmp_path)
    assert missing.returncode == 1
    assert "kokoro-v1.0.int8.onnx: missing" in missing.stderr
    assert "whisper-base/model.bin: missing" in missing.stderr
    assert "make models" in missing.stderr
    off = _cli("verify", "--accurate", "off", models_dir=tmp_path)
    assert off.returncode == 1
    assert "whisper-base" not in off.stderr


def test_forced_zip64_headers_are_written_as_python_3_11_4_writes_them():
    # Bookworm's Python 3.11.2 (the image's stand-in base) wrote version 20 and the sizes in
    # a forced zip64 entry's local header; the official voices file has 45 and 0xFFFFFFFF.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, body in (("a.npy", b"x" * 100), ("b.npy", b"yz" * 70)):
            with archive.open(name, "w", force_zip64=True) as entry:
                entry.write(body)
        offsets = [info.header_offset for info in archive.infolist()]
    old_style = bytearray(buffer.getvalue())
    for offset in offsets:  # what 3.11.2 wrote
        old_style[offset + 4 : offset + 6] = (20).to_bytes(2, "little")
        old_style[offset + 18 : offset + 22] = (100).to_bytes(4, "little")
    fixed = model_files._zip64_headers_as_since_3_11_4(old_style, offsets)
    assert fixed == model_files._zip64_headers_as_since_3_11_4(bytearray(fixed), offsets)
    for offset in offsets:
        assert fixed[offset + 4 : offset + 6] == (45).to_bytes(2, "little")
        assert fixed[offset + 18 : offset + 26] == b"\xff" * 8
    with zipfile.ZipFile(io.BytesIO(fixed)) as archive:
        assert archive.testzip() is None
        assert archive.read("b.npy") == b"yz" * 70
        assert all(
            info.create_version == 45 and info.extract_version == 45 for info in archive.infolist()
        )
