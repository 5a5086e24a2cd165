# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Escrow of the application's ENCRYPTION_KEY (and of age identities) in AWS Secrets Manager. Internal to
fleet_telemetry.dr; not a public API.

Import each name from the file that defines it (nothing is re-exported here):

* ``errors``: ``EscrowError`` and ``classify``, which turns a boto3/botocore exception into one sentence naming the
  cause and the fix (the IAM action, the option to set);
* ``value``: the key (or age identity) inside a secret value: raw text, or a field of a JSON object;
* ``secrets``: the Secrets Manager calls: a secret's versions, one version's value, ``create_if_absent``;
* ``resolve``: which version of a secret holds the key of a manifest (``key_for_manifest``) or an identity of its
  recipients (``identity_for_manifest``);
* ``prove``: the run of the key_escrow module: create when absent, then prove the vault's key on the live photos and a
  backup's manifest.

The boto3 ``secretsmanager`` client is always given by the caller (``AnsibleAWSModule.client('secretsmanager')``, or
boto3 in tests); nothing here imports boto3 or botocore. A secret value never reaches a message, a result or a log:
only its fingerprint (``_photo_crypto.key_fingerprint``, HMAC-based) or, for an age identity, its recipients'
fingerprints (``_age.recipient_fingerprint``) do.
"""
