"""Read and verify an .edgepkg bundle: a plain (uncompressed) tar whose first member is manifest.json.

Nothing but the manifest is read before the manifest is checked (size, canonical form, its own
digest, every field: device_agent.manifest), compared with the sha256 the host sent and, when the
device requires it, with its SSH signature. Then each member is checked against the manifest before
a byte of it is written: a listed path, a regular file, its declared size; its sha256 is checked as
it is written. So a bundle writes at most what its manifest declares, and a refused one writes
nothing unlisted. The host uses this same module to read bundles, so there is one verifier.
"""
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile

from . import AgentError, BundleError
from .manifest import MANIFEST, SIGNATURE, parse, safe_path

MAX_MANIFEST_BYTES = 1 << 20
MAX_SIGNATURE_BYTES = 1 << 16
SIGN_NAMESPACE = "edgeopt-bundle"
_CHUNK = 1 << 20
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)
# The most tarfile may read in one call: a member's pax or long-name record is read whole as tarfile reaches it,
# before the manifest can bound the bundle (a 400 MB pax comment cost the agent 1.2 GB of memory first, on a Pi
# with 1 GB). The manifest and the copy's chunks are read in smaller pieces.
MAX_READ_BYTES = MAX_MANIFEST_BYTES + (1 << 16)
# Magic numbers of what a bundle is not: refused by name before tarfile sees (and inflates) it.
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"BZh", "bzip2"), (b"\x28\xb5\x2f\xfd", "zstd"),
               (b"PK\x03\x04", "zip"))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class NoSpace(AgentError):
    """No room to unpack a bundle where it is unpacked: the machine's fault, not the bundle's (exit 3)."""


NO_SPACE_EXIT = 28   # the measuring process's exit code where the disk filled up under it (ENOSPC's number)


class Unpacked(object):
    """What unpack found: the manifest, the sha256 of its bytes (the bundle's identity), the signer (where a
    signature was checked), whether the bundle carries a signature at all."""

    def __init__(self, manifest, manifest_sha256, signer=None, signed=False):
        self.manifest, self.manifest_sha256, self.signer, self.signed = manifest, manifest_sha256, signer, signed


def extract(bundle_path, dest, expected_sha256=None, allowed_signers=None):
    """Unpack and verify into `dest`; returns the manifest dict."""
    return unpack(bundle_path, dest, expected_sha256, allowed_signers).manifest


def unpack(bundle_path, dest, expected_sha256=None, allowed_signers=None):
    """Unpack and verify into `dest`. A refusal is one BundleError line that starts with the bundle."""
    try:
        return _unpack(bundle_path, dest, expected_sha256, allowed_signers)
    except BundleError as e:
        raise BundleError("bundle %s: %s" % (bundle_path, e))


def _unpack(bundle_path, dest, expected_sha256, allowed_signers):
    _check_plain_tar(bundle_path)
    try:
        with open(bundle_path, "rb") as raw, tarfile.open(fileobj=_BoundedReads(raw), mode="r:") as tar:
            blob, signature, member = _read_head(tar)
            digest = hashlib.sha256(blob).hexdigest()
            if expected_sha256 and digest != expected_sha256:
                raise BundleError("manifest sha256 is %s, the host sent %s: changed in transit, refused"
                                  % (digest, expected_sha256))
            manifest = parse(blob)
            _check_total_size(bundle_path, manifest, len(blob) + len(signature or b""))
            signer = check_signature(blob, signature, allowed_signers) if allowed_signers else None
            _write_bytes(dest, MANIFEST, blob)
            _extract_listed(tar, member, manifest, dest)
    except (tarfile.TarError, EOFError) as e:
        raise BundleError("truncated or corrupt: %s" % e)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):   # the device's fault, not the bundle's (exit 3, not 2)
            raise NoSpace("no space left on this device to unpack bundle %s into %s (%s): `edgeopt device "
                             "clean` frees edgeopt's cache there" % (os.path.basename(bundle_path), dest,
                                                                     e.strerror or e))
        raise BundleError("cannot be read or unpacked: %s" % e)
    return Unpacked(manifest, digest, signer, signature is not None)


def _check_plain_tar(path):
    if os.path.isdir(path):
        raise BundleError("is a directory, not a bundle file")
    if not os.path.isfile(path):   # a pipe or a device is no bundle either: reading one never ends
        raise BundleError("is not a regular file" if os.path.exists(path) else "not found")
    with open(path, "rb") as f:
        head = f.read(512)
    for magic, kind in _COMPRESSED:
        if head.startswith(magic):
            raise BundleError("is %s-compressed; edgeopt bundles are plain tar: refused" % kind)
    if len(head) < 512 or head[257:262] != b"ustar":
        raise BundleError("is not an edgeopt bundle (not a plain tar archive)")


class _BoundedReads:
    """The bundle's file as tarfile reads it, any one read over MAX_READ_BYTES refused: a bound on the metadata
    records tarfile reads whole, whatever their type (x, g, X, L, K) or the size a pax record gives itself."""

    def __init__(self, raw):
        self._raw = raw

    def read(self, size=-1):
        if size is None or size < 0 or size > MAX_READ_BYTES:
            raise BundleError("a tar record of %s bytes, more than the %d a bundle's records may hold: refused"
                              % ("unbounded" if size is None or size < 0 else size, MAX_READ_BYTES))
        return self._raw.read(size)

    def __getattr__(self, name):   # seek, tell, ...
        return getattr(self._raw, name)


def _read_head(tar):
    """(manifest bytes, signature bytes or None, the first payload member or None)."""
    first = tar.next()
    if first is None or safe_path(first.name) != MANIFEST or first.type not in _REGULAR:
        raise BundleError("the first member must be the file %s" % MANIFEST)
    blob = _read_member(tar, first, MAX_MANIFEST_BYTES)
    member, signature = tar.next(), None
    if member is not None and safe_path(member.name) == SIGNATURE:
        if member.type not in _REGULAR:   # a link there read as "not signed (no manifest.json.sig)"
            raise BundleError("member %r is not a regular file: refused" % member.name)
        signature, member = _read_member(tar, member, MAX_SIGNATURE_BYTES), tar.next()
    return blob, signature, member


def _read_member(tar, member, limit):
    if member.size > limit:
        raise BundleError("%s is %d bytes, more than the %d allowed: refused" % (member.name, member.size, limit))
    data = tar.extractfile(member).read()
    if len(data) != member.size:
        raise BundleError("%s is cut short" % member.name)
    return data


def _check_total_size(path, manifest, head_bytes):
    """A bundle no larger than its manifest declares (headers and padding allowed for): bounds what
    tarfile reads into memory (a pax header, say) as well as what is written."""
    declared = head_bytes + sum(e["bytes"] for e in manifest["files"])
    bound = declared + (len(manifest["files"]) + 2) * 8192 + (1 << 16)
    size = os.path.getsize(path)
    if size > bound:
        raise BundleError("is %d bytes, more than its manifest accounts for (%d bytes of files): refused"
                          % (size, declared))


def _extract_listed(tar, member, manifest, dest):
    listed = dict((e["path"], e) for e in manifest["files"])
    done = set()
    while member is not None:
        name = safe_path(member.name)
        if member.issym() or member.islnk():
            raise BundleError("member %r is a link: refused" % member.name)
        if member.issparse() or any(k.startswith("GNU.sparse.") for k in member.pax_headers):
            # its size is what it expands to, not what the bundle holds: a 10 KB bundle wrote 300 MB
            raise BundleError("member %r is a sparse file: refused" % member.name)
        if member.isdir() and name not in listed:
            member = tar.next()
            continue  # directories are made for the files that need them; nothing to write
        if member.type not in _REGULAR:
            raise BundleError("member %r is not a regular file: refused" % member.name)
        entry = listed.get(name)
        if entry is None:
            raise BundleError("holds %s, which its manifest does not list: refused" % name)
        if name in done:
            raise BundleError("holds %s twice: refused" % name)
        if member.size != entry["bytes"]:
            raise BundleError("file %s is %d bytes, manifest says %d: refused" % (name, member.size, entry["bytes"]))
        _copy_verified(tar.extractfile(member), dest, entry)
        done.add(name)
        member = tar.next()
    missing = sorted(set(listed) - done)
    if missing:
        raise BundleError(_why_missing(tar, missing))


def _why_missing(tar, missing):
    """Why listed files were not reached. tarfile reads a damaged or cut-short header after the first as the end
    of the archive, so only the block where it stopped tells a file left out (a proper end: zeros) from a
    bundle that is corrupt or truncated there."""
    tar.fileobj.seek(tar.offset)
    block = tar.fileobj.read(tarfile.BLOCKSIZE)
    if block == tarfile.NUL * tarfile.BLOCKSIZE:
        return "file %s is missing" % missing[0]
    unread = ", ".join(missing)
    if len(block) < tarfile.BLOCKSIZE:
        return "truncated: it ends at byte %d, before the end of its tar archive (%s not read)" % (
            tar.offset + len(block), unread)
    return "truncated or corrupt: the tar header at byte %d is damaged (%s not read)" % (tar.offset, unread)


def _copy_verified(src, dest, entry):
    target = _target(dest, entry["path"])
    h, written = hashlib.sha256(), 0
    with src, open(target, "xb") as out:
        for block in iter(lambda: src.read(_CHUNK), b""):
            written += len(block)
            h.update(block)
            out.write(block)
    if written != entry["bytes"]:
        raise BundleError("file %s is cut short" % entry["path"])
    if h.hexdigest() != entry["sha256"]:
        raise BundleError("file %s does not match its sha256: the bundle was modified, refused" % entry["path"])


def _target(dest, name):
    target = os.path.join(dest, *name.split("/"))
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        os.makedirs(parent)
    return target


def _write_bytes(dest, name, data):
    with open(_target(dest, name), "xb") as out:
        out.write(data)


def load_manifest(root):
    """The manifest of an unpacked bundle, checked again (the measuring process reads it this way)."""
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path) or os.path.getsize(path) > MAX_MANIFEST_BYTES:
        raise BundleError("unpacked bundle %s has no %s of at most %d bytes" % (root, MANIFEST, MAX_MANIFEST_BYTES))
    with open(path, "rb") as f:
        return parse(f.read())


def manifest_digest(root):
    """The bundle's identity: sha256 of its manifest, which pins every file's sha256."""
    return sha256_file(os.path.join(root, MANIFEST))


def check_signature(blob, signature, allowed_signers):
    """The principal whose key (listed in `allowed_signers`) signed these manifest bytes in the
    edgeopt-bundle namespace, by OpenSSH's `ssh-keygen -Y`; else BundleError."""
    if os.path.isdir(allowed_signers):
        raise BundleError("cannot check its signature: %s on this device is a directory, not an allowed-signers file"
                          % allowed_signers)
    if not os.path.isfile(allowed_signers):
        raise BundleError("cannot check its signature: allowed-signers file %s not found on this device"
                          % allowed_signers)
    if signature is None:
        raise BundleError("is not signed (no %s) and this device accepts only bundles signed by a key in %s: refused"
                          % (SIGNATURE, allowed_signers))
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise AgentError("this device has no ssh-keygen (OpenSSH 8.2+) to check bundle signatures: install openssh-client")
    tmp = tempfile.mkdtemp(prefix="edgeopt-sig-")
    try:
        sig_path = os.path.join(tmp, SIGNATURE)
        with open(sig_path, "wb") as f:
            f.write(signature)
        found = _keygen([keygen, "-Y", "find-principals", "-s", sig_path, "-f", allowed_signers])
        if found.returncode != 0 and b"Unsupported operation" in found.stderr:
            raise AgentError("this device's ssh-keygen is older than OpenSSH 8.2 (no -Y find-principals): "
                             "it cannot check bundle signatures")
        if found.returncode != 0:   # ssh-keygen names a line it cannot read, an expired key, a namespace left out
            said = _keygen_said(found)
            raise BundleError("its signature is not made by a key in %s%s: refused"
                              % (allowed_signers, " that is valid for it (ssh-keygen: %s)" % said if said else ""))
        # One line of principals per matching key; a line may list several, comma-separated.
        lines = found.stdout.decode("utf-8", "replace").splitlines()
        said = ""
        for principal in [p for line in lines for p in line.split(",") if p]:
            verify = [keygen, "-Y", "verify", "-f", allowed_signers, "-I", principal, "-n", SIGN_NAMESPACE,
                      "-s", sig_path]
            verified = _keygen(verify, blob)
            if verified.returncode == 0:
                return principal
            said = said or _keygen_said(verified)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    namespace = signature_fields(signature)[1]
    if namespace is not None and namespace != SIGN_NAMESPACE:   # the signer's own text: shown as data, bounded
        said = "signed for namespace %s, not %s" % (shown_text(namespace), SIGN_NAMESPACE)
    elif not said or "incorrect signature" in said:
        said = "the manifest or its signature changed after signing"
    raise BundleError("its signature does not verify against %s (%s): refused" % (allowed_signers, said))


def _keygen_said(result):
    """ssh-keygen's own reason on stderr ("FILE:3: key has expired: ...", "FILE:1: invalid key", "key is not
    permitted for use in signature namespace ..."), without its generic closing lines; "" where it gave none."""
    generic = ("No principal matched.", "Could not verify signature.")
    lines = [line.strip() for line in result.stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line and line not in generic and not line.startswith("sig_find_principals:")]
    return "; ".join(dict.fromkeys(lines))[:300]


def signature_fields(signature):
    """(the signing public key's blob, the namespace) of an armored SSHSIG signature (PROTOCOL.sshsig: magic,
    uint32 version, string publickey, string namespace, ...), or (None, None) where it is no such signature."""
    import base64
    import struct

    body = b"".join(line for line in signature.splitlines() if line and not line.startswith(b"-----"))
    try:
        blob = base64.b64decode(body)
        if blob[:6] != b"SSHSIG":
            return None, None
        (length,) = struct.unpack(">I", blob[10:14])
        key, at = blob[14:14 + length], 14 + length
        (length,) = struct.unpack(">I", blob[at:at + 4])
        namespace = blob[at + 4:at + 4 + length].decode("utf-8", "replace")
        return (key, namespace) if len(key) and at + 4 + length <= len(blob) else (None, None)
    except (ValueError, struct.error):
        return None, None


def shown_text(text, limit=64):
    """A name read from a signature (its namespace, its key type) as it may be shown in a one-line message: as it
    is where it is a plain name, else quoted with its escapes, and at most `limit` characters."""
    if re.match(r"[A-Za-z0-9@._+-]{1,%d}\Z" % limit, text):
        return text
    return json.dumps(text[:limit])


def key_fingerprint(key):
    """OpenSSH's SHA256 fingerprint of a public key blob (as ssh-keygen -l prints it)."""
    import base64
    return "SHA256:" + base64.b64encode(hashlib.sha256(key).digest()).decode("ascii").rstrip("=")


def _keygen(argv, stdin=b""):
    try:
        return subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AgentError("ssh-keygen failed while checking the bundle's signature: %s" % e)
