# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""age encryption of backup artifacts with X25519 recipients. Internal to fleet_telemetry.dr; not a public API.

The stock ``age`` CLI (Debian package ``age``) does the cryptography in the streaming pipelines: ``age -e -r age1...``
after the compressor of a backup, ``age -d -i /dev/fd/N`` before the decompressor of a restore. A person decrypts an
artifact by hand with ``age -d -i identity.txt backup.sql.zst.age | zstd -d | psql``.

This file checks what travels to ``age`` before it runs: recipients (``age1`` + 58 bech32 characters, BIP-173 checksum
checked here), identities (``AGE-SECRET-KEY-1...``, their public keys through ``cryptography``'s X25519), the header of
an encrypted artifact (which a host without identity can still read), and it turns age's stderr into a code and a
sentence. An identity is a secret: it reaches ``age`` through an anonymous pipe (``IdentityPipe``), never argv or disk,
and no message here contains identity text. It imports without ``cryptography``; only ``identity_recipients`` needs it.
It must keep compiling on Python 3.8.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._errors import FleetDrError
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import TransportError, run

try:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
except ImportError:
    HAS_CRYPTOGRAPHY = False
    X25519PrivateKey = Encoding = PublicFormat = None
else:
    HAS_CRYPTOGRAPHY = True

HEADER = b'age-encryption.org/v1\n'
RECIPIENT_HRP = 'age'
IDENTITY_HRP = 'age-secret-key-'
RECIPIENT_RE = re.compile(r'\Aage1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}\Z')
IDENTITY_PREFIX = 'AGE-SECRET-KEY-1'
KEY_SIZE = 32
INSTALL_HINT = 'install the age package (apt-get install age) on the host that runs the backup or the restore'

# A header this long is not one age wrote for a handful of recipients.
_MAX_HEADER = 1024 * 1024
# The payload: a 16-byte nonce, then at least one chunk with its 16-byte tag.
_MIN_PAYLOAD = 32
# An identity pipe is filled before the reader starts: it must fit in the pipe buffer.
MAX_IDENTITY_BYTES = 60000
_B64_LINE_RE = re.compile(br'\A[A-Za-z0-9+/]*\Z')
_ARG_RE = re.compile(br'\A[\x21-\x7e]+\Z')

_CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l'
_GENERATOR = (0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3)


class AgeError(FleetDrError):
    """Codes: age_missing, bad_recipient, bad_identity, no_identity, wrong_identity, decrypt_failed."""

    code = 'decrypt_failed'


# --- bech32 (BIP-173), without the 90-character limit (age's keys are longer) ---

def _polymod(values):
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1ffffff) << 5 ^ value
        for i in range(5):
            check ^= _GENERATOR[i] if (top >> i) & 1 else 0
    return check


def _hrp_expand(hrp):
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data, from_bits, to_bits, pad):
    acc = bits = 0
    out = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad and bits:
        out.append((acc << (to_bits - bits)) & maxv)
    elif not pad and (bits >= from_bits or (acc << (to_bits - bits)) & maxv):
        return None
    return out


def bech32_decode(text):
    """``(hrp, data bytes)`` of a bech32 string (all lower or all upper case), or None when it is not valid."""
    if not text or not text.isascii() or (text.lower() != text and text.upper() != text):
        return None
    text = text.lower()
    pos = text.rfind('1')
    if pos < 1 or pos + 7 > len(text):
        return None
    hrp = text[:pos]
    if any(ord(c) < 33 or ord(c) > 126 for c in hrp) or any(c not in _CHARSET for c in text[pos + 1:]):
        return None
    values = [_CHARSET.find(c) for c in text[pos + 1:]]
    if _polymod(_hrp_expand(hrp) + values) != 1:
        return None
    data = _convert_bits(values[:-6], 5, 8, False)
    return None if data is None else (hrp, bytes(data))


def bech32_encode(hrp, data):
    """The lower-case bech32 string of ``data`` bytes under ``hrp``."""
    values = _convert_bits(bytearray(data), 8, 5, True)
    poly = _polymod(_hrp_expand(hrp) + values + [0] * 6) ^ 1
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + '1' + ''.join(_CHARSET[v] for v in values + checksum)


# --- recipients ---

def _recipient_problem(text):
    decoded = bech32_decode(text)
    if decoded is None:
        return 'is not a valid bech32 string (wrong characters or checksum)'
    hrp, data = decoded
    if hrp != RECIPIENT_HRP:
        return 'is not an age X25519 recipient (it must start with age1)'
    if len(data) != KEY_SIZE:
        return 'holds %d bytes instead of a 32-byte X25519 public key' % len(data)
    return None


def validate_recipients(recipients):
    """The recipients stripped and in lower case; AgeError ``bad_recipient`` naming the first bad one.

    Recipients are public keys: naming one in a message is fine.
    """
    if isinstance(recipients, str):
        recipients = [recipients]
    cleaned = [str(r).strip() for r in (recipients or []) if r is not None and str(r).strip()]
    if not cleaned:
        raise AgeError('encryption=age needs at least one recipient: set age_recipients to the age1... public key(s) '
                       'printed by age-keygen (keep the identity off the database host)', code='bad_recipient')
    result = []
    for recipient in cleaned:
        problem = _recipient_problem(recipient)
        if problem:
            raise AgeError('age recipient %r %s: give the age1... public key printed by age-keygen -y' % (recipient[:100], problem),
                           code='bad_recipient', recipient=recipient[:100])
        if recipient.lower() not in result:
            result.append(recipient.lower())
    return result


def recipient_fingerprint(recipient):
    """``sha256:`` and the first 16 hex digits of sha256 of the recipient text (``printf %s age1... | sha256sum``)."""
    text = str(recipient).strip().lower()
    return 'sha256:' + hashlib.sha256(text.encode('ascii')).hexdigest()[:16]


# --- identities (secrets: never in a message) ---

def _identity_key(line, number):
    """The 32 private key bytes of one identity line, else AgeError ``bad_identity`` (without the line)."""
    if line.upper().startswith('AGE-PLUGIN-'):
        raise AgeError('line %d of the age identity is a plugin identity; only X25519 identities (AGE-SECRET-KEY-1...) '
                       'are supported' % number, code='bad_identity')
    decoded = bech32_decode(line)
    if decoded is None or decoded[0] != IDENTITY_HRP or len(decoded[1]) != KEY_SIZE:
        raise AgeError('line %d of the age identity is not a valid X25519 identity (AGE-SECRET-KEY-1 and 58 characters, '
                       'as age-keygen writes it)' % number, code='bad_identity')
    return decoded[1]


def _identity_lines(text):
    if isinstance(text, bytes):
        try:
            text = text.decode('utf-8')
        except UnicodeDecodeError:
            raise AgeError('the age identity is not text: give the file age-keygen wrote', code='bad_identity') from None
    if not isinstance(text, str):
        raise AgeError('the age identity must be text, not %s' % type(text).__name__, code='bad_identity')
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith('#'):
            yield number, line


def parse_identities(text):
    """The ``AGE-SECRET-KEY-1...`` lines of an identity file (comments and blank lines ignored), upper case.

    AgeError ``bad_identity`` when a line is not an X25519 identity or there is none; its message names the line
    number, never the text.
    """
    identities = []
    for number, line in _identity_lines(text):
        _identity_key(line, number)
        identities.append(line.upper())
    if not identities:
        raise AgeError('the age identity holds no AGE-SECRET-KEY-1... line: give the file age-keygen wrote',
                       code='bad_identity')
    return identities


def identity_recipients(text):
    """The ``age1...`` recipient (public key) of each identity in ``text``, in order."""
    if not HAS_CRYPTOGRAPHY:
        raise AgeError('the Python library cryptography is needed to read an age identity; install it on the host that '
                       'runs this (python3-cryptography)', code='bad_identity')
    recipients = []
    for number, line in enumerate(parse_identities(text), 1):
        private = X25519PrivateKey.from_private_bytes(_identity_key(line, number))
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        recipients.append(bech32_encode(RECIPIENT_HRP, public))
    return recipients


# --- the age tool ---

def missing_tool_error(binary='age'):
    """The AgeError ``age_missing`` of an age command that is not installed or does not run."""
    return AgeError('the age tool (%s) is not installed or does not run: %s' % (binary, INSTALL_HINT), code='age_missing')


def check_tool(binary='age', runner=run):
    """The version line of ``age --version``; AgeError ``age_missing`` when it does not run."""
    try:
        rc, out, err = runner([binary, '--version'], timeout=30)
    except TransportError:
        rc, out, err = 127, '', ''
    if rc != 0:
        raise missing_tool_error(binary)
    return (out or err).strip()


def encrypt_argv(recipients, binary='age'):
    """``age -e -r r1 -r r2 ...``: encrypts stdin to stdout for every recipient (public keys: fine in argv)."""
    argv = [binary, '-e']
    for recipient in recipients:
        argv += ['-r', recipient]
    return argv


def decrypt_argv(identity_path, path=None, binary='age'):
    """``age -d -i <identity_path> [path]``; the identity path is an ``IdentityPipe.argv_path``, never the secret."""
    argv = [binary, '-d', '-i', identity_path]
    if path is not None:
        argv.append(path)
    return argv


class IdentityPipe(object):
    """An anonymous pipe holding the identity text, the write end already closed.

    The reader (``age -d -i /dev/fd/<fd>``) gets it with ``subprocess.Popen(..., pass_fds=(pipe.fd,))``. The identity
    never touches the disk nor argv. It is read once: one pipe per process.
    """

    def __init__(self, text):
        data = text.encode('utf-8') if isinstance(text, str) else bytes(text)
        if len(data) > MAX_IDENTITY_BYTES:
            raise AgeError('the age identity is %d bytes; an identity file is a few lines' % len(data), code='bad_identity')
        self.fd, write_fd = os.pipe()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view):]
        except BaseException:
            os.close(self.fd)
            self.fd = None
            raise
        finally:
            os.close(write_fd)

    @property
    def argv_path(self):
        return '/dev/fd/%d' % self.fd

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_STDERR_CLASSES = (
    (r'no identity matched', 'wrong_identity',
     'none of the given age identities is a recipient of this artifact: give the identity whose public key the backup '
     'was encrypted to'),
    (r'no secret keys found|malformed secret key|failed to read .*identit|reading "/dev/fd/', 'bad_identity',
     'age could not read the identity: give the file age-keygen wrote (AGE-SECRET-KEY-1...)'),
    (r'header|nonce|payload|unexpected EOF|\bEOF\b|decrypt|armor|stream', 'decrypt_failed',
     'the encrypted artifact is damaged or truncated (age: {detail}): use another backup or its offsite copy'),
)


def _age_error_line(stderr):
    lines = [line.strip() for line in (stderr or '').splitlines() if line.strip() and 'report unexpected' not in line]
    errors = [line for line in lines if line.startswith('age: error:')]
    line = (errors or lines or ['age failed without a message'])[0]
    return line[len('age: error:'):].strip() if line.startswith('age: error:') else line


def classify_stderr(stderr):
    """``(code, sentence)`` of a failed ``age -d``; identity errors never quote age (it may echo identity text)."""
    text = stderr or ''
    for pattern, code, sentence in _STDERR_CLASSES:
        if re.search(pattern, text):
            detail = _age_error_line(text) if code == 'decrypt_failed' else ''
            return code, sentence.format(detail=detail[:300])
    return 'decrypt_failed', 'age failed to decrypt the artifact (%s)' % _age_error_line(text)[:300]


# --- the header of an encrypted artifact ---

def _header_lines(handle):
    """The header's lines (without newline) up to and including the ``--- `` line, and the bytes read."""
    lines = []
    size = 0
    while size < _MAX_HEADER:
        line = handle.readline(_MAX_HEADER - size)
        size += len(line)
        if not line.endswith(b'\n'):
            return lines, size, False
        lines.append(line[:-1])
        if line.startswith(b'---'):
            return lines, size, True
    return lines, size, False


def _stanza_problem(lines):
    """Why the stanza lines (between the intro and the mac line) are not well formed, or None."""
    if not lines or not lines[0].startswith(b'-> '):
        return 'the header has no recipient stanza'
    index = 0
    while index < len(lines):
        args = lines[index][3:].split(b' ') if lines[index].startswith(b'-> ') else None
        if not args or not all(_ARG_RE.match(a) for a in args):
            return 'line %d of the header is not a well-formed stanza' % (index + 2)
        index += 1
        while True:
            if index >= len(lines) or not _B64_LINE_RE.match(lines[index]) or len(lines[index]) > 64:
                return 'the body of the stanza ending at line %d of the header is not well formed' % (index + 1)
            index += 1
            if len(lines[index - 1]) < 64:
                break
    return None


def _mac_problem(line):
    if not line.startswith(b'--- '):
        return 'the header does not end in a "--- " line'
    mac = line[4:]
    if len(mac) != 43 or not _B64_LINE_RE.match(mac):
        return 'the header MAC is not 43 base64 characters'
    try:
        base64.b64decode(mac + b'=', validate=True)
    except (binascii.Error, ValueError):
        return 'the header MAC is not base64'
    return None


def header_problem(path):
    """None when ``path`` starts with a well-formed age v1 header followed by a payload, else a sentence.

    The header's MAC and the payload can only be checked with an identity (``age -d``); this catches a file that is
    not age at all, a cut header and a missing payload, on a host that holds only the public keys.
    """
    try:
        with open(path, 'rb') as handle:
            if handle.read(len(HEADER)) != HEADER:
                return 'the file does not start with the age v1 header (age-encryption.org/v1)'
            lines, size, complete = _header_lines(handle)
            if not complete:
                return 'the age header is cut short or longer than %d bytes' % _MAX_HEADER
            problem = _stanza_problem(lines[:-1]) or _mac_problem(lines[-1])
            if problem:
                return problem
            if len(handle.read(_MIN_PAYLOAD)) < _MIN_PAYLOAD:
                return 'the payload after the age header is missing or cut short'
    except (IOError, OSError) as exc:
        return 'cannot read %s: %s' % (path, exc.strerror or exc)
    return None


def is_encrypted(path):
    """True when the file at ``path`` starts with the age v1 header."""
    try:
        with open(path, 'rb') as handle:
            return handle.read(len(HEADER)) == HEADER
    except (IOError, OSError):
        return False
