"""Write .edgepkg bundles atomically; read them through the device agent's one verifier."""
from __future__ import annotations

import io
import json
import os
import pathlib
import tarfile
import tempfile

from device_agent import BUNDLE_SCHEMA, BundleError
from device_agent import bundle as agent_bundle

from .budgets import validate_budgets
from .errors import BadInput

SUFFIX = ".edgepkg"


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0  # reproducible: no owner, no timestamps
    return info


def write(out_path: pathlib.Path, manifest: dict, files: list) -> dict:
    """Write a bundle. `files` is [(local path, path in bundle, role)]. Atomic: the output path
    holds either the previous file or the complete new bundle, never a partial one."""
    out_path = pathlib.Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    entries = []
    for local, arcname, role in files:
        local = pathlib.Path(local)
        entries.append({"path": arcname, "role": role, "bytes": local.stat().st_size,
                        "sha256": agent_bundle.sha256_file(str(local))})
    manifest = dict(manifest, schema=BUNDLE_SCHEMA, files=entries)
    agent_bundle.validate_manifest(manifest)
    blob = json.dumps(manifest, indent=1).encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".partial", dir=out_path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_tarinfo(agent_bundle.MANIFEST, len(blob)), io.BytesIO(blob))
            for (local, arcname, _), entry in zip(files, entries):
                with open(local, "rb") as f:
                    tar.addfile(_tarinfo(arcname, entry["bytes"]), f)
        os.replace(tmp, out_path)
    except BaseException:
        os.unlink(tmp)
        raise
    return manifest


def read(bundle_path, workdir) -> dict:
    """Extract and verify into `workdir`; a bad bundle is a one-line BadInput."""
    try:
        return agent_bundle.extract(str(bundle_path), str(workdir))
    except BundleError as e:
        raise BadInput(str(e)) from None


def read_manifest(bundle_path) -> dict:
    with tempfile.TemporaryDirectory(prefix="edgeopt-read-") as tmp:
        manifest = read(bundle_path, tmp)
        # budgets read back are held to the rules they were written under
        validate_budgets(manifest.get("budgets", {}), f"{bundle_path}: manifest.json")
        manifest["_manifest_sha256"] = agent_bundle.manifest_digest(tmp)
        return manifest
