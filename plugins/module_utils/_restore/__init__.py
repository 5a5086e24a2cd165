# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Restore an artifact into a database and prove the result. Internal to fleet_telemetry.dr; not a public API.

Import each name from the file that defines it (nothing is re-exported here):

* ``errors``: ``RestoreError``, the one exception of the restore (a sentence, a code, mismatches, ``changed``);
* ``names``: names and values in pg_dump's plain text: identifier splitting, table names, COPY headers, COPY text
  escaping and bytea decoding;
* ``scanner``: the COPY scanner (``CopyScanner``, ``scan_reader``) and whether a dump's stream is whole
  (``completeness_problems``);
* ``source``: reading artifacts: compression, ``StreamSource`` (a file, or a chain of processes: ``age -d`` of an
  encrypted artifact, then the decompressor or pg_restore), scanning a plain dump, a custom archive's table
  (``pg_restore -a -t``) and a directory archive's data file, the photos of an artifact, and where pg_restore
  reads an archive over compose (``tools_prefix``, ``toc_runner_for``);
* ``preflight``: the identity of an encrypted artifact (``identity_preflight``: given, one of the manifest's
  recipients), the key preflight (``key_preflight``: fingerprint, cipher, photos from the artifact decrypt) and
  artifact acceptance (``artifact_refusal``);
* ``secrets``: where the key and the age identity come from (options, an identity file, AWS Secrets Manager through
  ``_escrow.resolve``), with secret-free records of their sources (``key_source``, ``identity_source``);
* ``commands``: restore commands: the psql / pg_restore argv and plan, copies into the container, and the restore
  itself (``restore_plain`` in one transaction, ``restore_archive``);
* ``verify``: verification of the restored database: row counts, photos, ANALYZE;
* ``run``: the whole run: ``RestoreRequest`` and ``run_restore_verify`` (preflight, restore, verify, in that order).
"""
