"""Read and verify an .edgepkg bundle (a tar of manifest.json + artifacts + data).

Every member is checked before anything is written: regular files and directories only,
relative paths with no `..`. Every file the manifest lists must match its sha256 and size,
and no unlisted file may be present. Only then does anything load. The host uses this
same module to read bundles, so there is one verifier.
"""
import hashlib
import json
import os
import posixpath
import tarfile

from . import BUNDLE_SCHEMA, BundleError

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _safe_name(name):
    """Normalised member name, or BundleError for absolute paths, `..` and odd characters."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise BundleError("bundle member %r has an absolute path: refused" % name)
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../") or "/../" in "/%s/" % name or "\\" in name:
        raise BundleError("bundle member %r escapes the bundle directory: refused" % name)
    return norm


def _check_members(tar):
    members = []
    for m in tar.getmembers():
        name = _safe_name(m.name)
        if m.issym() or m.islnk():
            raise BundleError("bundle member %r is a link: refused" % m.name)
        if not (m.isfile() or m.isdir()):
            raise BundleError("bundle member %r is not a regular file: refused" % m.name)
        if name != ".":
            members.append((name, m))
    return members


def extract(bundle_path, dest):
    """Extract the bundle into `dest` after checking every member; returns the manifest dict."""
    if not os.path.isfile(bundle_path):
        raise BundleError("bundle not found: %s" % bundle_path)
    try:
        tar = tarfile.open(bundle_path, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise BundleError("%s is not an edgeopt bundle (not a readable tar archive: %s)" % (bundle_path, e))
    with tar:
        try:
            members = _check_members(tar)
            for name, m in members:
                target = os.path.join(dest, *name.split("/"))
                if m.isdir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                src = tar.extractfile(m)
                with src, open(target, "wb") as out:
                    for block in iter(lambda: src.read(_CHUNK), b""):
                        out.write(block)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise BundleError("bundle %s is truncated or corrupt: %s" % (bundle_path, e))
    manifest = load_manifest(dest)
    verify(dest, manifest)
    return manifest


def load_manifest(root):
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path):
        raise BundleError("bundle has no %s" % MANIFEST)
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError("bundle manifest is not valid JSON: %s" % e)
    validate_manifest(manifest)
    return manifest


_REQUIRED = {"schema": str, "name": str, "runtime": dict, "model": str, "files": list,
             "inputs": list, "outputs": list, "profile": dict}


def validate_manifest(manifest):
    if not isinstance(manifest, dict):
        raise BundleError("bundle manifest must be a JSON object")
    if manifest.get("schema") != BUNDLE_SCHEMA:
        raise BundleError("bundle schema is %r; this agent reads %r" % (manifest.get("schema"), BUNDLE_SCHEMA))
    for key, kind in _REQUIRED.items():
        if not isinstance(manifest.get(key), kind):
            raise BundleError("bundle manifest field %r is missing or not a %s" % (key, kind.__name__))
    for entry in manifest["files"]:
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                and isinstance(entry.get("sha256"), str) and isinstance(entry.get("bytes"), int)):
            raise BundleError("bundle manifest has a malformed files entry: %r" % (entry,))
        _safe_name(entry["path"])
    if manifest["model"] not in {e["path"] for e in manifest["files"]}:
        raise BundleError("bundle manifest's model %r is not among its files" % manifest["model"])


def verify(root, manifest):
    """Check every listed file's size and sha256, and that nothing unlisted is present."""
    listed = {}
    for entry in manifest["files"]:
        path = os.path.join(root, *entry["path"].split("/"))
        if not os.path.isfile(path):
            raise BundleError("bundle file %s is missing" % entry["path"])
        size = os.path.getsize(path)
        if size != entry["bytes"]:
            raise BundleError("bundle file %s is %d bytes, manifest says %d: refused" % (entry["path"], size, entry["bytes"]))
        if sha256_file(path) != entry["sha256"]:
            raise BundleError("bundle file %s does not match its sha256: the bundle was modified, refused" % entry["path"])
        listed[posixpath.normpath(entry["path"])] = True
    for dirpath, _, filenames in os.walk(root):
        for fn in filenames:
            rel = os.path.relpath(os.path.join(dirpath, fn), root).replace(os.sep, "/")
            if rel != MANIFEST and rel not in listed:
                raise BundleError("bundle holds %s, which its manifest does not list: refused" % rel)


def manifest_digest(root):
    """The bundle's identity: sha256 of its manifest, which pins every file's sha256."""
    return sha256_file(os.path.join(root, MANIFEST))
