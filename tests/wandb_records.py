"""Reading W&B offline run files (`run-<id>.wandb`), to check what a run recorded.

The file is W&B's LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB
blocks of records, each with a 7-byte header (CRC32, length, type: full, first, middle, last)
holding one serialized `wandb_internal_pb2.Record`. wandb 0.31 ships no Python reader for it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_BLOCK = 32 * 1024
_HEADER = struct.Struct("<4sHB")
_RECORD = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def raw_records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    ident, _, _ = _HEADER.unpack_from(data, 0)
    if ident != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    position = _HEADER.size
    pending = b""
    while position + _RECORD.size <= len(data):
        left = _BLOCK - position % _BLOCK
        if left < _RECORD.size:  # block trailer padding
            position += left
            continue
        _, length, kind = _RECORD.unpack_from(data, position)
        if length == 0 and kind == 0:  # zero padding to the end of the block
            position += left
            continue
        start = position + _RECORD.size
        chunk = data[start : start + length]
        position = start + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""


def records(path: Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2

    for raw in raw_records(path):
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
        record.ParseFromString(raw)
        yield record


@dataclass(frozen=True)
class ArtifactRecord:
    name: str
    type: str
    digest: str
    used: bool  # True: recorded as an input of the run (use after commit)


@dataclass(frozen=True)
class OfflineRun:
    path: Path
    job_type: str
    group: str
    config: dict[str, str]
    artifacts: list[ArtifactRecord]

    @property
    def inputs(self) -> list[ArtifactRecord]:
        return [a for a in self.artifacts if a.used]

    @property
    def outputs(self) -> list[ArtifactRecord]:
        return [a for a in self.artifacts if not a.used]


def offline_runs(wandb_dir: Path) -> list[OfflineRun]:
    """Every offline run under `wandb_dir` (the `wandb/` folder), oldest first."""
    runs = []
    for run_file in sorted(wandb_dir.glob("offline-run-*/run-*.wandb")):
        job_type = group = ""
        config: dict[str, str] = {}
        artifacts = []
        for record in records(run_file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                job_type, group = record.run.job_type, record.run.run_group
                config = {item.key: item.value_json for item in record.run.config.update}
            elif kind == "artifact":
                artifact = record.artifact
                artifacts.append(
                    ArtifactRecord(
                        artifact.name, artifact.type, artifact.digest, artifact.use_after_commit
                    )
                )
        runs.append(OfflineRun(run_file, job_type, group, config, artifacts))
    return runs
