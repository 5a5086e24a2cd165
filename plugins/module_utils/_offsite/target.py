# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What every offsite target offers (S3 in ``_offsite.s3``, a backup server over SSH in ``_offsite.ssh``), and the
errors of offsite work. Internal to fleet_telemetry.dr: not a public API.

A target stores objects by name in one place (a bucket and prefix, a directory on another host). An artifact there is
two objects: the dump file ``<name>`` and its manifest ``<name>.manifest.json``. The manifest is written last, as the
commit marker: an artifact without its manifest is not a backup, whatever else is there.

Every method raises ``OffsiteError`` (or a subclass) with one sentence that names the cause and the fix, never a
secret. Nothing here overwrites: ``put_file`` and ``put_bytes`` refuse a name that exists (``OffsiteExistsError``).

This file imports nothing from the collection but the error base class, and must keep compiling on Python 3.8.
"""

from __future__ import annotations

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError

MANIFEST_SUFFIX = '.manifest.json'


class OffsiteError(FleetDrError):
    """An offsite target failed: unreachable, denied, missing, or what it holds is not what was sent."""

    code = 'offsite_error'


class OffsiteExistsError(OffsiteError):
    """The name is taken at the target (never overwritten)."""

    code = 'offsite_exists'


class OffsiteConflictError(OffsiteError):
    """The target holds a different object under the artifact's name: refused, never overwritten."""

    code = 'offsite_conflict'


class OffsiteMismatchError(OffsiteError):
    """What was read back (or downloaded) does not hash to the checksum computed locally."""

    code = 'offsite_mismatch'


class OffsiteLockedError(OffsiteError):
    """The object is under Object Lock (retain-until or legal hold): it cannot be deleted, and is not tried again."""

    code = 'offsite_locked'


class OffsiteTarget(object):
    """The interface of an offsite target. Names are base names (no ``/``); the target maps them to its own keys or paths.

    - ``label``: how reports name the target (``s3://bucket/prefix/``, ``user@host:/dir``), never a secret.
    - ``location(name)``: where ``name`` lives (``s3://bucket/prefix/name``, ``user@host:/dir/name``).
    - ``list_names()``: every object name at the target (artifacts, manifests, anything else), as a set.
    - ``stat(name)``: ``None`` when absent, else ``{'size': int, 'locked_until': aware datetime or None,
      'legal_hold': bool}``.
    - ``get_bytes(name, limit)``: the whole object (manifests), refused when larger than ``limit``.
    - ``put_file(path, name, size, progress=None, lock=None)``: upload a local file under ``name``, never overwriting, so that it is
      visible only once complete (S3: a multipart upload completed with ``If-None-Match: *``, aborted on any error;
      SSH: a temporary name, then a rename that refuses an existing name). ``progress(bytes_done)`` is called now and then.
      Returns the sha256 of the bytes sent (computed while sending) as hex. ``lock`` is None or ``(mode, until)``
      (``GOVERNANCE``/``COMPLIANCE``, an aware datetime): S3 creates the object under that Object Lock retention;
      a target without Object Lock raises ``OffsiteError`` when given one.
    - ``put_bytes(name, data, lock=None)``: the same for a small object (the manifest).
    - ``hash_object(name)``: read the object back and return ``(sha256 hex, size)``.
    - ``download(name, writer)``: stream the object into ``writer.write(chunk)``.
    - ``delete(name)``: delete it; ``OffsiteLockedError`` when Object Lock forbids it.
    """

    kind = None
    label = None

    def location(self, name):
        raise NotImplementedError

    def list_names(self):
        raise NotImplementedError

    def stat(self, name):
        raise NotImplementedError

    def get_bytes(self, name, limit):
        raise NotImplementedError

    def put_file(self, path, name, size, progress=None, lock=None):
        raise NotImplementedError

    def put_bytes(self, name, data, lock=None):
        raise NotImplementedError

    def hash_object(self, name):
        raise NotImplementedError

    def download(self, name, writer):
        raise NotImplementedError

    def delete(self, name):
        raise NotImplementedError


def manifest_name(name):
    """The name of the manifest object of the artifact ``name``."""
    return name + MANIFEST_SUFFIX


def artifact_names(names):
    """The artifact names among ``names`` (a target's listing) whose manifest is there too: the complete artifacts."""
    names = set(names)
    return sorted(name[:-len(MANIFEST_SUFFIX)] for name in names
                  if name.endswith(MANIFEST_SUFFIX) and name[:-len(MANIFEST_SUFFIX)] in names)
