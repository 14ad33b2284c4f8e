"""Whether an imported checkpoint opens: a Hugging Face revision folder (config.json parses, each
safetensors file's header parses and every tensor lies inside the file, an index's shards are
there) or a fairseq ``.pt`` (torch's zip archive, its central directory readable). Checked when
a series is imported, so that a truncated download is refused with its path and step there
rather than failing later in an extraction worker without either."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from pipeline.checkpoints import CheckpointError

INDEX = "model.safetensors.index.json"
HEADER_LENGTH = 8  # a safetensors file starts with its JSON header's length, little-endian u64
TORCH_ZIP = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6: a zip archive
FIX = "re-download or re-copy it"


def check_series(series: list[tuple[int, Path]]) -> None:
    """Open every (step, path) of a series; raise CheckpointError naming the first refused one
    (its kind, step, file and what is wrong) and the steps of any others."""
    refused = [(step, path, *found) for step, path in series
               if (found := problem(Path(path))) is not None]
    if not refused:
        return
    (step, path, where, what), rest = refused[0], refused[1:]
    noun = "revision" if Path(path).is_dir() else "checkpoint"
    more = ""
    if rest:
        steps = ", ".join(str(r[0]) for r in rest[:10]) + (", ..." if len(rest) > 10 else "")
        more = f" ({len(rest)} more refused: steps {steps})"
    raise CheckpointError(f"{noun} step{step} ({where}): {what}; {FIX}{more}")


def problem(path: Path) -> tuple[Path, str] | None:
    """(the file at fault, what is wrong with it), or None when `path` opens."""
    if path.is_dir():
        return revision_problem(path)
    if not path.is_file():
        return path, "missing"
    return torch_file_problem(path)


def revision_problem(folder: Path) -> tuple[Path, str] | None:
    """A Hugging Face revision folder: config.json, the weights (safetensors, each checked;
    or pytorch_model.bin, a torch zip) and an index's shards."""
    config = folder / "config.json"
    if not config.is_file():
        return config, "missing (a revision folder holds config.json)"
    try:
        parsed = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return config, f"not valid JSON ({e})"
    if not isinstance(parsed, dict):
        return config, f"not a JSON object (a {type(parsed).__name__})"
    index = folder / INDEX
    if index.is_file():
        found = index_problem(index)
        if found is not None:
            return found
    weights = sorted(folder.glob("*.safetensors"))
    for file in weights:
        found = safetensors_problem(file)
        if found is not None:
            return file, found
    bins = sorted(folder.glob("pytorch_model*.bin"))
    for file in bins:
        found = torch_file_problem(file)
        if found is not None:
            return found
    if not weights and not bins:
        return folder, "no weights file (neither *.safetensors nor pytorch_model.bin)"
    return None


def index_problem(index: Path) -> tuple[Path, str] | None:
    """A sharded model's index: it parses and every shard it lists is beside it."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        return index, f"not a safetensors index (JSON with a weight_map): {e}"
    missing = [s for s in shards if not (index.parent / s).is_file()]
    if missing:
        return index, f"lists shards that are missing: {', '.join(missing)}"
    return None


def safetensors_problem(file: Path) -> str | None:
    """What is wrong with a safetensors file, or None: its header (length, JSON) is read here
    so that a cut names the tensor and byte; the library then validates the rest (dtypes,
    shapes, offsets covering the data)."""
    import safetensors

    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(HEADER_LENGTH)
        if len(head) < HEADER_LENGTH:
            return f"truncated: {size} bytes, not even the {HEADER_LENGTH}-byte header length"
        (length,) = struct.unpack("<Q", head)
        if HEADER_LENGTH + length > size:
            return (f"truncated: the header is {length} bytes, the file has {size} "
                    "(or not a safetensors file)")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return f"header is not valid JSON ({e})"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    start = HEADER_LENGTH + length
    tensors = sorted(((name, t) for name, t in header.items() if name != "__metadata__"),
                     key=lambda item: _end(item[1]))
    for name, tensor in tensors:
        end = _end(tensor)
        if end is None:
            return f"tensor {name} has no data_offsets in the header"
        if start + end > size:
            return f"truncated: tensor {name} ends at byte {start + end} of {size}"
    try:
        with safetensors.safe_open(str(file), "pt") as f:
            for name in f.keys():
                f.get_slice(name)
    except Exception as e:  # the library's own SafetensorError, whatever else it finds
        return f"does not open: {type(e).__name__}: {' '.join(str(e).split())}"
    return None


def _end(tensor) -> int | None:
    try:
        return int(tensor["data_offsets"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def torch_file_problem(file: Path) -> tuple[Path, str] | None:
    """A torch.save file: a zip archive whose central directory (at the end: the first thing
    lost to a cut) reads, with its pickle; an older non-zip save is left to torch.load."""
    with open(file, "rb") as f:
        magic = f.read(len(TORCH_ZIP))
    if magic != TORCH_ZIP:
        failed = _legacy_torch_error(file)
        return None if failed is None else (
            file, f"neither torch's zip format nor an older torch save that loads ({failed})")
    if not zipfile.is_zipfile(file):
        return file, (f"truncated: a zip archive ({file.stat().st_size} bytes) without its "
                      "central directory")
    try:
        with zipfile.ZipFile(file) as z:
            names = z.namelist()
            size = file.stat().st_size
            past = [i.filename for i in z.infolist()
                    if i.header_offset + i.compress_size > size]
    except (zipfile.BadZipFile, OSError) as e:
        return file, f"a damaged zip archive ({e})"
    if past:
        return file, f"truncated: zip entry {past[0]} runs past the end of the file"
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return file, "a zip archive but not a torch checkpoint (no data.pkl in it)"
    return None


def _legacy_torch_error(file: Path) -> str | None:
    """Why torch.load cannot read a file in torch's pre-1.6 format, or None when it can."""
    import torch

    try:
        torch.load(file, map_location="cpu", weights_only=False)
    except Exception as e:  # whatever the unpickling meets: the file is refused with it
        return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return None
