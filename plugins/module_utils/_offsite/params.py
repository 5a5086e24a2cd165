# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The ``target`` option of the offsite modules (doc fragment ``fleet_telemetry.dr._offsite_target``) and the target it
describes. Internal to fleet_telemetry.dr: not a public API.

An S3 target's connection (region, credentials, ``endpoint_url`` for S3-compatible stores) is the amazon.aws options of
the module, so the credential lookup is amazon.aws's own; the S3 client is made only for an S3 target, so a backup
server over SSH needs no boto3.
"""

from __future__ import annotations

TARGET_KINDS = ('s3', 'ssh')
LOCK_MODES = ('GOVERNANCE', 'COMPLIANCE')


def target_argument_spec(required=True):
    """The ``target`` option: a dict with ``kind`` and the settings of that kind."""
    return dict(target=dict(type='dict', required=required, required_if=[
        ('kind', 's3', ['bucket']), ('kind', 'ssh', ['host', 'path'])], options=dict(
        name=dict(type='str'),
        kind=dict(type='str', required=True, choices=list(TARGET_KINDS)),
        bucket=dict(type='str'),
        endpoint_url=dict(type='str'),
        prefix=dict(type='str', default=''),
        storage_class=dict(type='str'),
        sse=dict(type='str', choices=['AES256', 'aws:kms']),
        kms_key_id=dict(type='str', no_log=False),
        object_lock_mode=dict(type='str', choices=list(LOCK_MODES)),
        object_lock_days=dict(type='int', default=0),
        object_lock_weekly_days=dict(type='int', default=0),
        object_lock_monthly_days=dict(type='int', default=0),
        part_size_mb=dict(type='int', default=8),
        concurrency=dict(type='int', default=6),
        host=dict(type='str'),
        user=dict(type='str'),
        port=dict(type='int', default=22),
        path=dict(type='str'),
        identity_file=dict(type='path'),
        known_hosts_file=dict(type='path'),
        connect_timeout=dict(type='int', default=30),
        retention=dict(type='dict', options=dict(daily=dict(type='int'), weekly=dict(type='int'), monthly=dict(type='int'))),
    )))


def s3_client_config(concurrency):
    """botocore settings of an S3 target: a connection per upload thread, and botocore's standard retries."""
    from botocore.config import Config  # only an S3 target needs botocore
    return Config(max_pool_connections=max(10, concurrency + 2), retries={'mode': 'standard', 'max_attempts': 5})


def make_target(module, options):
    """The OffsiteTarget of the ``target`` option ``options``; ``module`` (an AnsibleAWSModule) makes the S3 client."""
    if options['kind'] == 's3':
        from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.s3 import S3Target
        extra = {'endpoint': options['endpoint_url']} if options['endpoint_url'] else {}
        client = module.client('s3', config=s3_client_config(options['concurrency']), **extra)
        return S3Target(client, options['bucket'], prefix=options['prefix'], storage_class=options['storage_class'],
                        sse=options['sse'], kms_key_id=options['kms_key_id'], part_size=options['part_size_mb'] << 20,
                        concurrency=options['concurrency'])
    from ansible_collections.fleet_telemetry.dr.plugins.module_utils._offsite.ssh import SshTarget
    return SshTarget(options['host'], options['path'], user=options['user'], port=options['port'],
                     identity_file=options['identity_file'], known_hosts_file=options['known_hosts_file'],
                     connect_timeout=options['connect_timeout'])


def target_name(options):
    """How results name the target: its ``name``, else its kind and place."""
    if options.get('name'):
        return options['name']
    if options['kind'] == 's3':
        return 's3://%s/%s' % (options['bucket'], options.get('prefix') or '')
    return '%s:%s' % (options['host'], options['path'])
