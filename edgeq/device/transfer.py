"""Moving a built engine between devices of one class: export its folder as a tar, import it elsewhere.

Only the build's own files travel (the engine, the FP32 reference, build.json and whatever build.json
names); an import checks every file against the sha256 recorded in build.json before the engine
folder appears, so a damaged transfer never becomes an engine.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import time

from .errors import AgentError
from .hashing import sha256_file
from .report import BuildReport, ExportReport, ImportReport
from .workdir import BUILD_JSON, Workdir


def _build_files(build: BuildReport) -> list:
    return [BUILD_JSON, build.engine.artifact.path, build.reference.artifact.path]


def export_engine(workdir: str, engine_id: str, out: str) -> ExportReport:
    """Write engines/<id>'s build files to the tar ``out`` (atomically)."""
    wd = Workdir.open(workdir)
    engine_id = wd.resolve(engine_id)
    build = wd.load_build(engine_id)
    folder = wd.engine_dir(engine_id)
    names = _build_files(build)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(out)) or ".", prefix=".export-")
    try:
        with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as archive:
            for name in names:
                archive.add(os.path.join(folder, name), arcname=name, recursive=False)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return ExportReport(engine_id, out, os.path.getsize(out), sha256_file(out), names)


def import_engine(workdir: str, engine_id: str, archive_path: str) -> ImportReport:
    """Unpack an exported engine as engines/<id>, after checking it is that engine and intact."""
    start = time.perf_counter()
    wd = Workdir.open(workdir)
    if not os.path.isfile(archive_path):
        raise AgentError(AgentError.NOT_FOUND, f"engine archive not found: {archive_path}")
    with wd.staging(engine_id) as stage:
        try:
            with tarfile.open(archive_path) as archive:
                members = archive.getmembers()
                if any(not m.isfile() or os.path.isabs(m.name) or ".." in m.name.split("/") for m in members):
                    raise AgentError(AgentError.INVALID_INPUT, "engine archive holds something other than plain files")
                names = [os.path.basename(m.name) for m in members]
                if len(set(names)) != len(names) or not all(names):
                    raise AgentError(AgentError.INVALID_INPUT, "engine archive names a file twice, or a file without a name")
                for member, name in zip(members, names):
                    data = archive.extractfile(member)
                    with open(os.path.join(stage, name), "wb") as handle:
                        if data is not None:
                            shutil.copyfileobj(data, handle, 1 << 20)  # engines can be large: streamed, not read whole
        except tarfile.TarError as exc:
            raise AgentError(AgentError.INVALID_INPUT, f"not an engine archive: {exc}") from exc
        try:
            with open(os.path.join(stage, BUILD_JSON)) as handle:
                build = BuildReport.from_dict(json.load(io.StringIO(handle.read())))
        except (OSError, ValueError, TypeError) as exc:
            raise AgentError(AgentError.INVALID_INPUT, f"engine archive has no readable build.json: {exc}") from exc
        if build.engine_id != engine_id:
            raise AgentError(AgentError.CONFLICT, f"archive holds engine {build.engine_id!r}, expected {engine_id!r}")
        for artifact in (build.engine.artifact, build.reference.artifact):
            path = os.path.join(stage, artifact.path)
            if not os.path.isfile(path) or sha256_file(path) != artifact.sha256:
                raise AgentError(AgentError.INVALID_INPUT, f"engine archive: {artifact.path} is missing or damaged")
    return ImportReport(engine_id, time.perf_counter() - start, build)
