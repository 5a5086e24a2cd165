#!/usr/bin/python
# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: key_escrow
short_description: Escrow the photos' ENCRYPTION_KEY in AWS Secrets Manager and prove the vault still holds the right key
version_added: 0.1.0
description:
  - Keeps a copy of the application's E(ENCRYPTION_KEY) in an AWS Secrets Manager secret, so that the photos of a backup
    can still be decrypted when the host, its configuration and the application's own copy of the key are lost.
  - B(Create) - when the secret O(secret_id) does not exist and O(create=true), it is created (C(CreateSecret)) from
    O(encryption_key), encrypted with O(kms_key_id) when set, then read back. O(encryption_key) is proven first (see below),
    so a wrong key is never escrowed.
  - B(Never overwritten) - an existing secret is never written (no C(PutSecretValue), no C(UpdateSecret)), whatever it
    holds. Rotating the escrowed key is a deliberate step outside this module (a new version, see the notes).
  - B(Prove) - with O(prove=true) the key in the secret's C(AWSCURRENT) version is read, its fingerprint compared with the
    C(key_fingerprint) of O(manifest), and it decrypts up to O(key_check_photos) photos of the live database (read-only).
    When none of the photos decrypts, or the fingerprints differ, the task fails with RV(error_code=vault_drift); the
    message names the fingerprints and how to put the current key into the secret.
  - A given O(encryption_key) that differs from the key of an existing secret fails with
    RV(error_code=secret_exists_differs); nothing is written.
  - The secret holds the key raw (64 hex characters, base64 of 32 bytes, or 32 characters) or as a field of a JSON
    object (O(secret_field)). A secret created here holds the key as 64 lowercase hex characters, or with O(secret_field)
    the JSON object C({"<secret_field>":"<64 hex characters>"}).
  - Neither the key nor any secret value is ever logged, returned or put in a message; only fingerprints are (HMAC-SHA256
    under a fixed label, which cannot reveal the key).
author:
  - fleet_telemetry.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - fleet_telemetry.dr._attributes
  - fleet_telemetry.dr._connection
  - fleet_telemetry.dr._encryption_key
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    details:
      - Creates nothing. Reads the secret (C(GetSecretValue)) and runs the read-only proof on the key the secret holds,
        or, when it would be created, on O(encryption_key); RV(status=would_create) says it would create it.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A secret is only ever created; a second run finds it and reports RV(status=exists) with no change.
options:
  secret_id:
    description:
      - The name (for example V(fleet/prod/encryption-key)) or ARN of the Secrets Manager secret that escrows the key.
      - A name is needed to create the secret.
    type: str
    required: true
  secret_field:
    description:
      - When set, the secret is a JSON object and the key is in this field; a created secret is
        C({"<secret_field>":"<64 hex characters>"}).
      - When unset, a secret that is a JSON object is read at the field C(ENCRYPTION_KEY), any other secret as the raw key.
    type: str
  encryption_key:
    description:
      - The application's E(ENCRYPTION_KEY) that encrypts the photos, 32 bytes given as 64 hexadecimal characters,
        base64 of 32 bytes, or 32 raw characters.
      - Needed to create the secret. When the secret exists it is only compared with the secret's key (by fingerprint).
      - Never logged and never returned; only its fingerprint is.
    type: str
  kms_key_id:
    description:
      - The KMS key (key id, ARN, alias name or alias ARN) that encrypts a created secret; Secrets Manager's own key
        (C(aws/secretsmanager)) when unset.
      - Only used when the secret is created.
    type: str
  description:
    description: The description of a created secret. Only used when the secret is created.
    type: str
  create:
    description:
      - Create the secret from O(encryption_key) when it does not exist.
      - V(false) only reads and proves an existing secret; a missing secret fails with RV(error_code=no_secret).
    type: bool
    default: true
  prove:
    description:
      - Prove the key of the secret's C(AWSCURRENT) version against O(manifest) and the photos of the live database.
      - V(false) still reads the secret and compares it with O(encryption_key) when given, but reads no manifest and no
        photo.
    type: bool
    default: true
  manifest:
    description:
      - A backup's manifest C(<artifact>.manifest.json) (or the artifact beside it); its C(key_fingerprint) must equal the
        fingerprint of the secret's key.
      - A manifest without C(key_fingerprint) (a backup taken without O(encryption_key)) fails with RV(error_code=bad_option).
    type: path
  photo_table:
    description: Table of the encrypted photos, C(table) or C(schema.table), with the columns C(id) and C(data).
    type: str
    default: photo
  key_check_photos:
    description:
      - Decrypt up to this many photos of O(photo_table) (the first ones in id order) with the secret's key.
      - The key is proven when at least one photo decrypts; V(0) checks no photo and needs no database connection.
    type: int
    default: 20
notes:
  - >-
    IAM permissions on the secret - C(secretsmanager:GetSecretValue) always; C(secretsmanager:CreateSecret) to create it;
    with a customer managed KMS key, C(kms:Decrypt) on it (and C(kms:GenerateDataKey) to create the secret). A restore
    that looks for an older version by fingerprint also needs C(secretsmanager:ListSecretVersionIds).
  - >-
    After a rotation of E(ENCRYPTION_KEY), put the new key into the secret as a new version (for example
    C(aws secretsmanager put-secret-value --secret-id ID --secret-string file://FILE)); the previous key stays readable as
    C(AWSPREVIOUS) (or under a label of its own, with C(--version-stages)), and M(fleet_telemetry.dr.pg_restore_verify) picks
    the version whose fingerprint a backup's manifest names.
  - The connection options (O(transport), O(project_src), ...) are only used for the photo proof; with O(prove=false) or
    O(key_check_photos=0) no database is reached.
seealso:
  - module: fleet_telemetry.dr.pg_logical_backup
  - module: fleet_telemetry.dr.pg_restore_verify
"""

EXAMPLES = r"""
- name: Escrow the key (created once, then only proven)
  fleet_telemetry.dr.key_escrow:
    secret_id: fleet/prod/encryption-key
    kms_key_id: alias/fleet-escrow
    encryption_key: "{{ vault_encryption_key }}"
    project_src: /srv/telemetry
    region: eu-west-1

- name: Prove that the vault still holds the key of the last backup and of the live photos
  fleet_telemetry.dr.key_escrow:
    secret_id: fleet/prod/encryption-key
    create: false
    manifest: "{{ fleet_dr_last_backup.path }}"
    transport: direct
    db_host: db.internal
    db_password: "{{ vault_db_password }}"
    region: eu-west-1

- name: A secret that holds several settings as JSON, the key under APP_ENCRYPTION_KEY
  fleet_telemetry.dr.key_escrow:
    secret_id: arn:aws:secretsmanager:eu-west-1:123456789012:secret:fleet/prod/app-AbCdEf
    secret_field: APP_ENCRYPTION_KEY
    create: false
    key_check_photos: 0
    region: eu-west-1
"""

RETURN = r"""
started_at:
  description: When the module started on the host (ISO 8601 UTC, the host's clock), for the step records of a run.
  returned: always
  type: str
  sample: "2026-12-06T03:00:00.123456Z"
finished_at:
  description: When the module ended, success or failure (ISO 8601 UTC, the host's clock).
  returned: always
  type: str
  sample: "2026-12-06T03:00:02.654321Z"
secret_id:
  description: The secret, as given in O(secret_id).
  returned: always
  type: str
  sample: fleet/prod/encryption-key
status:
  description:
    - V(created) (this run created the secret), V(exists) (it existed; nothing was written), or in check mode
      V(would_create).
  returned: success
  type: str
  sample: exists
created:
  description: Whether this run created the secret.
  returned: success
  type: bool
version_id:
  description: The C(AWSCURRENT) version of the secret that was read (none in check mode when it would be created).
  returned: success
  type: str
  sample: 5d8fd0e4-7d7f-4b3c-9a51-2f0c8f0f6a10
stages:
  description: The staging labels of that version.
  returned: success
  type: list
  elements: str
  sample: [AWSCURRENT]
fingerprint:
  description:
    - The fingerprint of the key in the secret (in check mode, when it would be created, of O(encryption_key)); the same
      value as a manifest's C(key_fingerprint) when both hold the same key.
  returned: success
  type: str
  sample: "v1:0f3a9c2e5b7d41e6a8c09b1d2e3f4a5b"
manifest_fingerprint:
  description: The C(key_fingerprint) of O(manifest), when given with O(prove=true).
  returned: success
  type: str
photos_checked:
  description: How many photos were decrypted with the key (0 without the photo proof).
  returned: success
  type: int
  sample: 20
photos_failed:
  description: How many of them did not decrypt (a damaged photo among others that decrypt; the key is still proven).
  returned: success
  type: int
  sample: 0
photo_failures:
  description: The first photos that did not decrypt, each with C(id), C(reason) and C(msg).
  returned: success
  type: list
  elements: dict
proven:
  description: Whether the key was proven (O(prove=true) and every check passed).
  returned: success
  type: bool
msg:
  description: One sentence - what was created or found, and what proved the key; or why it failed and what fixes it.
  returned: always
  type: str
error_code:
  description:
    - V(vault_unreachable) (the Secrets Manager endpoint cannot be reached), V(vault_denied) (access denied or credentials
      refused; the message names the IAM action), V(no_secret), V(malformed_secret) (the secret holds no 32-byte key, or
      not the field), V(vault_drift) (the vault's key does not open the photos or differs from the manifest's),
      V(secret_exists_differs) (O(encryption_key) differs from the key of the existing secret), V(wrong_key)
      (O(encryption_key) does not open the photos; nothing created), V(bad_key), V(bad_option), V(boto3_missing),
      V(vault_error), or an error of the database connection.
  returned: failure
  type: str
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.client import secretsmanager_client
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.errors import EscrowError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._escrow.prove import EscrowRequest, photo_check, run_escrow
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._params import (
    connection_argument_spec,
    connection_from_params,
    encryption_key_argument_spec,
)
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._results import fail_with, keep_result_as_built, timed


def argument_spec():
    spec = connection_argument_spec()
    spec.update(encryption_key_argument_spec())
    spec.update(
        secret_id=dict(type='str', required=True, no_log=False),
        secret_field=dict(type='str', no_log=False),
        kms_key_id=dict(type='str', no_log=False),
        description=dict(type='str'),
        create=dict(type='bool', default=True),
        prove=dict(type='bool', default=True),
        manifest=dict(type='path'),
        photo_table=dict(type='str', default='photo'),
        key_check_photos=dict(type='int', default=20, no_log=False),
    )
    return spec


def photo_checker(params):
    """The photo proof of the options, or None when no photo is to be checked."""
    if not params['prove'] or params['key_check_photos'] <= 0:
        return None
    if params['transport'] == 'compose' and not params['project_src']:
        raise EscrowError('the photo proof needs the database: set project_src (transport=compose) or transport=direct '
                          'with db_host, or set key_check_photos=0 to skip it', code='bad_option')
    return photo_check(connection_from_params(params), table=params['photo_table'], limit=params['key_check_photos'],
                       cipher=params['cipher'])


def main():
    module = AnsibleAWSModule(argument_spec=argument_spec(), supports_check_mode=True, check_boto3=False)
    keep_result_as_built(module)
    timed(module)
    params = module.params
    try:
        if params['key_check_photos'] < 0:
            raise EscrowError('key_check_photos must be 0 or more', code='bad_option')
        request = EscrowRequest(params['secret_id'], key_text=params['encryption_key'], field=params['secret_field'],
                                kms_key_id=params['kms_key_id'], description=params['description'], create=params['create'],
                                prove=params['prove'], manifest=params['manifest'], cipher=params['cipher'])
        checker = photo_checker(params)
        client = secretsmanager_client(module)
        result = run_escrow(client, request, photo_checker=checker, check_mode=module.check_mode,
                            photo_table=params['photo_table'])
    except FleetDrError as exc:
        fail_with(module, exc, secret_id=params['secret_id'])
    if result['photos_failed']:
        module.warn('%d of the %d photos checked do not decrypt with the vault key while the others do: they are damaged '
                    '(see photo_failures)' % (result['photos_failed'], result['photos_checked']))
    module.exit_json(changed=result['status'] in ('created', 'would_create'), **result)


if __name__ == '__main__':
    main()
