"""Write .edgepkg bundles atomically (optionally signed with an SSH key); read them through the
device agent's one verifier."""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pathlib
import re
import shutil
import struct
import subprocess
import tarfile

from device_agent import BUNDLE_SCHEMA, AgentError, BundleError
from device_agent import bundle as agent_bundle
from device_agent import manifest as agent_manifest

from . import scratch
from .atomic import replacing
from .budgets import validate_budgets
from .errors import BadInput

SUFFIX = ".edgepkg"


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0  # reproducible: no owner, no timestamps
    return info


def write(out_path: pathlib.Path, manifest: dict, files: list, sign_key=None, new: bool = False) -> dict:
    """Write a bundle. `files` is [(local path, path in bundle, role)]. Atomic: the output path
    holds either the previous file or the complete new bundle, never a partial one. With `sign_key`
    (an SSH private key, or a public key whose private half is in ssh-agent) the manifest's
    signature is the second member. new: atomic.Taken where another process wrote the path meanwhile."""
    out_path = pathlib.Path(out_path)
    entries = []
    for local, arcname, role in files:
        local = pathlib.Path(local)
        entries.append({"path": arcname, "role": role, "bytes": local.stat().st_size,
                        "sha256": agent_bundle.sha256_file(str(local))})
    try:
        manifest, blob = agent_manifest.seal(dict(manifest, schema=BUNDLE_SCHEMA, files=entries))
    except BundleError as e:
        raise BadInput(f"bundle {out_path}: {e}") from None
    signature = sign(blob, sign_key) if sign_key else None
    with replacing(out_path, "the bundle", "wb", new=new) as raw, \
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_tarinfo(agent_manifest.MANIFEST, len(blob)), io.BytesIO(blob))
        if signature is not None:
            tar.addfile(_tarinfo(agent_manifest.SIGNATURE, len(signature)), io.BytesIO(signature))
        for (local, arcname, _), entry in zip(files, entries):
            with open(local, "rb") as f:
                tar.addfile(_tarinfo(arcname, entry["bytes"]), f)
    return manifest


def check_sign_key(key) -> tuple:
    """(the key file, ssh-keygen) that will sign, refused before packaging where either is missing: a missing key
    was said only after the conversion and the parity check (a walkthrough)."""
    key = pathlib.Path(key).expanduser()
    if not key.is_file():
        raise BadInput(f"--sign-key {key}: no such key file")
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise BadInput("--sign-key needs OpenSSH's ssh-keygen (8.2 or later) on this machine")
    return key, keygen


def sign(blob: bytes, key) -> bytes:
    """An SSH signature (`ssh-keygen -Y sign`, namespace edgeopt-bundle) of the manifest bytes."""
    key, keygen = check_sign_key(key)
    with scratch.folder("sign") as tmp:
        path = pathlib.Path(tmp) / agent_manifest.MANIFEST
        path.write_bytes(blob)
        try:  # stdin closed: a key that needs a passphrase fails here instead of waiting for one
            p = subprocess.run([keygen, "-Y", "sign", "-f", str(key), "-n", agent_bundle.SIGN_NAMESPACE, str(path)],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise BadInput(f"--sign-key {key}: ssh-keygen did not finish within 120 s") from None
        sig = path.with_name(agent_manifest.SIGNATURE)
        if p.returncode != 0 or not sig.is_file():
            if "passphrase" in p.stderr:   # its prompt, then "incorrect passphrase supplied", though none was
                raise BadInput(f"--sign-key {key} needs its passphrase, which edgeopt does not ask for: add the key "
                               f"to ssh-agent (ssh-add {key}) and package again")
            last = (p.stderr.strip().splitlines() or ["no message"])[-1]
            raise BadInput(f"--sign-key {key}: ssh-keygen could not sign ({last})")
        return sig.read_bytes()


def rewrite(bundle_path, out_path, name: str, budgets: dict, threads: int | None = None) -> dict:
    """A copy of a bundle under another `name`, with `budgets` replacing those keys of its manifest (the others
    kept) and, where given, the `threads` its runtime runs by default; every member verified first. For
    optimize's chosen bundle: named after the study, with limits set once the study has ended, at the thread
    count the study measured. Its trials' bundles are unsigned, and so is the copy. Returns the new manifest."""
    with scratch.folder("rewrite") as tmp:
        manifest = read(bundle_path, tmp)
        files = [(pathlib.Path(tmp) / f["path"], f["path"], f["role"]) for f in manifest["files"]]
        body = {k: v for k, v in manifest.items() if k not in ("files", "schema", agent_manifest.DIGEST_FIELD)}
        body["name"] = name
        body["budgets"] = validate_budgets(dict(manifest.get("budgets") or {}, **budgets), f"{out_path}: budgets")
        if threads is not None:
            body["runtime"] = dict(body["runtime"], threads=int(threads))
            if isinstance(body.get("recipe"), dict):   # `package --recipe` of the copy rebuilds it at these threads
                body["recipe"] = dict(body["recipe"], package=dict(body["recipe"].get("package") or {},
                                                                   threads=int(threads)))
        return write(out_path, body, files)


def read(bundle_path, workdir) -> dict:
    """Extract and verify into `workdir`; a bad bundle is a one-line BadInput."""
    try:
        return agent_bundle.extract(str(bundle_path), str(workdir))
    except BundleError as e:
        raise BadInput(str(e) + _what_it_is(bundle_path)) from None
    except AgentError as e:   # the agent's words are a device's ("this device", `device clean`): said for a host
        if isinstance(e, agent_bundle.NoSpace):
            raise BadInput(f"bundle {bundle_path}: no space left on this host to unpack it into {workdir}: free "
                           "space there, or point TMPDIR at a larger disk") from None
        raise BadInput(f"bundle {bundle_path}: {e}".replace("this device", "this host")) from None


def _what_it_is(path) -> str:
    """What a file given as a bundle is instead, where its name says: a model (`bench model.onnx`)."""
    from .models import FILE_FORMATS

    if pathlib.Path(path).suffix.lower() in FILE_FORMATS:
        return f"; it is a model: `edgeopt package {path}` makes a bundle of it"
    return ""


def read_manifest(bundle_path) -> dict:
    """The verified manifest, with `_manifest_sha256` (the bundle's identity) added."""
    with scratch.folder("read") as tmp:
        manifest = read(bundle_path, tmp)
        # budgets read back are held to the rules they were written under
        validate_budgets(manifest.get("budgets", {}), f"{bundle_path}: manifest.json")
        manifest["_manifest_sha256"] = agent_bundle.manifest_digest(tmp)
        return manifest


def existing_manifest(path) -> dict | None:
    """The manifest of an existing file that is a readable bundle, else None (missing, or no bundle). Only the
    manifest (the first member) is read, not the model: for deciding whether an output may replace the file."""
    if not pathlib.Path(path).is_file():   # a pipe (read, it waited for a writer) or a device (/dev/zero)
        return None
    try:
        return agent_manifest.parse(manifest_bytes(path))
    except (tarfile.TarError, OSError, BundleError):
        return None


def refuse_to_overwrite(path, what: str, inputs=()) -> None:
    """BadInput where a report or a JUnit file would replace what it was made from or what cannot be made again
    (`-o` by a slip of the shell's completion): an edgeopt bundle (rebuilt only by `package`), a measurement's
    result (an edgeopt JSON document), or one of `inputs` (the files the command reads)."""
    path = pathlib.Path(path)
    if not path.is_file():
        return
    if existing_manifest(path) is not None:
        raise BadInput(f"{path}: is an edgeopt bundle; refusing to overwrite it with {what} (give another file)")
    if any(pathlib.Path(p).is_file() and path.samefile(p) for p in inputs):
        raise BadInput(f"{path}: is one of the files read; refusing to overwrite it with {what} (give another file)")
    kind = _edgeopt_file(path)
    if kind is not None:
        raise BadInput(f"{path}: holds {kind}; refusing to overwrite it with {what} (give another file)")


EDGEOPT_SCHEMA = re.compile(rb'\A\s*\{\s*"schema"\s*:\s*"(edgeopt\.[^"]{1,64})"')


def _edgeopt_file(path: pathlib.Path):
    """What edgeopt file `path` is ("an edgeopt.result/1 document", "a SQLite database"), or None: read from its
    first bytes only (edgeopt writes `schema` first), so a large file costs nothing to check."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if head.startswith(b"SQLite format 3\x00"):   # the results store `report --study` and history read
        return "a SQLite database (a results store?)"
    found = EDGEOPT_SCHEMA.match(head)
    return f"an {found.group(1).decode('ascii', 'replace')} document" if found else None


def signature(bundle_path) -> dict | None:
    """The manifest signature a bundle carries (its second member), as {key: its SHA256 fingerprint, key_type,
    namespace, matches_manifest}, verified against no allowed signer; None where it carries none. `read` has
    verified its members."""
    blob, sig = _head(bundle_path)
    return None if sig is None else dict(describe_signature(sig), matches_manifest=_signs_manifest(blob, sig))


def _signs_manifest(blob: bytes, sig: bytes) -> bool | None:
    """Whether the signature is one of these manifest bytes under the key it names itself (`ssh-keygen -Y
    check-novalidate`): that says nothing of whose key it is, but a manifest changed after signing (the model
    swapped, the manifest resealed, the old signature kept) was shown as signed by its genuine signer (a security
    review). None where this host has no ssh-keygen that can tell."""
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        return None
    with scratch.folder("sig") as tmp:
        path = pathlib.Path(tmp) / agent_manifest.SIGNATURE
        path.write_bytes(sig)
        try:
            checked = agent_bundle._keygen([keygen, "-Y", "check-novalidate", "-n", agent_bundle.SIGN_NAMESPACE,
                                            "-s", str(path)], blob)
        except AgentError:
            return None
    if checked.returncode == 0:
        return True
    # False only where ssh-keygen judged the bytes: one older than 8.2 ("unknown option -- Y", "Unsupported
    # operation") told a genuine bundle's users its manifest changed after signing (a review)
    return False if b"incorrect signature" in checked.stderr else None


def _head(bundle_path) -> tuple:
    """(manifest bytes, signature bytes or None) of a bundle, by the agent's own reader of its first members."""
    with tarfile.open(bundle_path, "r:") as tar:
        blob, sig, _ = agent_bundle._read_head(tar)
    return blob, sig


def describe_signature(sig: bytes) -> dict:
    """{key: fingerprint, key_type, namespace} of a signature, its names bounded and escaped: they are the signer's
    text, unverified (an ANSI sequence or a newline in a namespace reached the terminal)."""
    key, namespace = agent_bundle.signature_fields(sig)
    if key is None:
        return {"key": None, "key_type": None, "namespace": None}
    (length,) = struct.unpack(">I", key[:4]) if len(key) >= 4 else (0,)
    key_type = key[4:4 + length].decode("ascii", "replace")
    return {"key": agent_bundle.key_fingerprint(key), "key_type": agent_bundle.shown_text(key_type),
            "namespace": agent_bundle.shown_text(namespace)}


def check_signature(bundle_path, allowed_signers) -> str:
    """The principal of `allowed_signers` (a file on this host) whose key signed the bundle's manifest, as the
    agent judges it on the device; BadInput naming the bundle and why not."""
    allowed = pathlib.Path(allowed_signers).expanduser()
    if not allowed.is_file():   # said of this host: the agent's words are the device's
        raise BadInput(f"--allowed-signers {allowed}: {'a directory' if allowed.is_dir() else 'no such file'}, not an "
                       "OpenSSH allowed-signers file")
    if shutil.which("ssh-keygen") is None:
        raise BadInput("--allowed-signers needs OpenSSH's ssh-keygen (8.2 or later) on this machine")
    blob, sig = _head(bundle_path)
    if sig is None:
        raise BadInput(f"bundle {bundle_path}: is not signed (no {agent_manifest.SIGNATURE}), so no key in {allowed} "
                       "signed it")
    try:
        return agent_bundle.check_signature(blob, sig, str(allowed))
    except (BundleError, AgentError) as e:
        raise BadInput(f"bundle {bundle_path}: {e}") from None


def manifest_bytes(bundle_path) -> bytes:
    """The manifest.json bytes of a bundle (its first member), read without unpacking anything else.
    Raises BundleError (not a plain tar, another first member), tarfile.TarError or OSError."""
    with tarfile.open(bundle_path, "r:") as tar:
        first = tar.next()
        if first is None or agent_manifest.safe_path(first.name) != agent_manifest.MANIFEST or not first.isfile():
            raise BundleError(f"the first member must be the file {agent_manifest.MANIFEST}")
        return tar.extractfile(first).read(agent_bundle.MAX_MANIFEST_BYTES + 1)


def manifest_sha256(bundle_path) -> str:
    """sha256 of the manifest.json bytes in the bundle as it is about to be shipped (its first member):
    the agent refuses the bundle if what arrives differs."""
    try:
        return hashlib.sha256(manifest_bytes(bundle_path)).hexdigest()
    except (tarfile.TarError, OSError, BundleError) as e:
        raise BadInput(f"bundle {bundle_path} cannot be read: {e}") from None


@contextlib.contextmanager
def pinned(bundle: pathlib.Path):
    """The bundle under its own name in a scratch folder for the block's length (edgeopt.scratch: locked meanwhile,
    removed after, or by a later run once no process holds it): a hard link, since `package` writes a bundle by a
    rename and the link keeps the file the block began with (a bench, a fleet run: a package meanwhile had one
    measure another bundle than it had checked); a copy where no link can be made (another file system). The
    bundle itself where neither can (said where it is read)."""
    with scratch.folder("pin") as folder:
        pinned = pathlib.Path(folder) / bundle.name
        try:
            os.link(bundle, pinned)
        except OSError:
            try:
                shutil.copyfile(bundle, pinned)
            except OSError:
                pinned = bundle
        yield pinned
