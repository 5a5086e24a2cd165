# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _age
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import TransportError

HAVE_AGE = shutil.which('age') is not None and shutil.which('age-keygen') is not None
needs_age = pytest.mark.skipif(not HAVE_AGE, reason='the age CLI is not installed (apt-get install age)')

# A fixed pair written by age-keygen 1.1.1 (test material only).
IDENTITY = 'AGE-SECRET-KEY-18Y0CN49JQ3JWCE66TDVQ22XMPUKWW8QZS5D724FRS54P2AR8TH8QAP9L7N'
RECIPIENT = 'age1q9z9uv0z65699zee3dvwcd4u8t9dzqg4hqm9pweeg6df36j93p8q73nxs7'
IDENTITY_FILE = '# created: 2026-12-07T01:10:28Z\n# public key: %s\n%s\n' % (RECIPIENT, IDENTITY)


def keygen():
    """A fresh (identity file text, recipient) from the real age-keygen."""
    out = subprocess.run(['age-keygen'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    text = out.stdout.decode()
    recipient = [line.split(': ')[1] for line in text.splitlines() if line.startswith('# public key: ')][0]
    return text, recipient


def encrypt(data, recipients):
    proc = subprocess.run(_age.encrypt_argv(recipients), input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    return proc.stdout


def decrypt(path, identity_text):
    with _age.IdentityPipe(identity_text) as pipe:
        return subprocess.run(_age.decrypt_argv(pipe.argv_path, path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              pass_fds=(pipe.fd,), check=False)


# --- bech32 and recipients ---

def test_bech32_round_trip_of_known_recipient():
    hrp, data = _age.bech32_decode(RECIPIENT)
    assert hrp == 'age' and len(data) == 32
    assert _age.bech32_encode('age', data) == RECIPIENT


def test_bech32_accepts_upper_case_and_rejects_mixed_case():
    assert _age.bech32_decode(RECIPIENT.upper()) == _age.bech32_decode(RECIPIENT)
    assert _age.bech32_decode(RECIPIENT[:10] + RECIPIENT[10:].upper()) is None


def test_bech32_bip173_vectors():
    assert _age.bech32_decode('A12UEL5L') == ('a', b'')
    assert _age.bech32_decode('abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw')[0] == 'abcdef'
    assert _age.bech32_decode('split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w') is not None
    assert _age.bech32_decode('split1checkupstagehandshakeupstreamerranterredcaperred2y9e2w') is None  # checksum
    assert _age.bech32_decode('pzry9x0s0muk') is None  # no separator
    assert _age.bech32_decode('1pzry9x0s0muk') is None  # empty hrp
    assert _age.bech32_decode('x1b4n0q5v') is None  # invalid data character


def test_recipient_regex():
    assert _age.RECIPIENT_RE.match(RECIPIENT)
    assert not _age.RECIPIENT_RE.match(RECIPIENT + 'q')
    assert not _age.RECIPIENT_RE.match(RECIPIENT.replace('age1', 'agf1'))


def test_validate_recipients_strips_lowercases_and_dedups():
    assert _age.validate_recipients(['  %s\n' % RECIPIENT, RECIPIENT.upper(), '']) == [RECIPIENT]
    assert _age.validate_recipients(RECIPIENT) == [RECIPIENT]


@pytest.mark.parametrize('bad', [
    RECIPIENT[:-1] + ('q' if RECIPIENT[-1] != 'q' else 'p'),  # checksum
    RECIPIENT[:-1],  # too short
    'age1qqqq',
    'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI',
    _age.bech32_encode('age', b'\x01' * 31),  # wrong key size
    _age.bech32_encode('agf', b'\x01' * 32),  # wrong hrp
    IDENTITY,  # a secret key where a public key belongs: refused (and it is the bad one named)
])
def test_validate_recipients_refuses_bad_ones(bad):
    with pytest.raises(_age.AgeError) as info:
        _age.validate_recipients([RECIPIENT, bad])
    assert info.value.code == 'bad_recipient'
    assert 'age-keygen' in str(info.value)


@pytest.mark.parametrize('empty', [None, [], ['', '  '], ''])
def test_validate_recipients_needs_one(empty):
    with pytest.raises(_age.AgeError) as info:
        _age.validate_recipients(empty)
    assert info.value.code == 'bad_recipient' and 'age_recipients' in str(info.value)


def test_recipient_fingerprint_matches_sha256sum():
    expected = 'sha256:' + hashlib.sha256(RECIPIENT.encode()).hexdigest()[:16]
    assert _age.recipient_fingerprint(RECIPIENT) == expected
    assert _age.recipient_fingerprint(' %s ' % RECIPIENT.upper()) == expected
    out = subprocess.run('printf %%s %s | sha256sum | cut -c1-16' % RECIPIENT, shell=True, stdout=subprocess.PIPE, check=True)
    assert expected == 'sha256:' + out.stdout.decode().strip()


# --- identities ---

def test_parse_identities_skips_comments_and_blanks():
    text = '\n' + IDENTITY_FILE + '\n# another\n' + IDENTITY.lower() + '\n'
    assert _age.parse_identities(text) == [IDENTITY, IDENTITY]
    assert _age.parse_identities(IDENTITY_FILE.encode()) == [IDENTITY]


@pytest.mark.parametrize('text', [
    '', '# only a comment\n', IDENTITY[:-1] + ('Q' if IDENTITY[-1] != 'Q' else 'P'), IDENTITY[:-2],
    RECIPIENT, 'AGE-PLUGIN-YUBIKEY-1QQQQQQ', 'hunter2-' + IDENTITY, b'\xff\xfe' + IDENTITY.encode(),
])
def test_parse_identities_refuses_without_echoing(text):
    with pytest.raises(_age.AgeError) as info:
        _age.parse_identities(text)
    assert info.value.code == 'bad_identity'
    message = str(info.value) + repr(info.value.to_result())
    assert IDENTITY[16:] not in message and IDENTITY.lower()[16:] not in message and 'hunter2' not in message


def test_identity_recipients_of_known_pair():
    assert _age.identity_recipients(IDENTITY_FILE) == [RECIPIENT]


@needs_age
def test_identity_recipients_match_age_keygen():
    pairs = [keygen() for dummy in range(3)]
    text = ''.join(identity for identity, dummy in pairs)
    assert _age.identity_recipients(text) == [recipient for dummy, recipient in pairs]
    for identity, recipient in pairs:
        out = subprocess.run(['age-keygen', '-y'], input=identity.encode(), stdout=subprocess.PIPE, check=True)
        assert out.stdout.decode().strip() == recipient == _age.identity_recipients(identity)[0]


def test_identity_recipients_without_cryptography(monkeypatch):
    monkeypatch.setattr(_age, 'HAS_CRYPTOGRAPHY', False)
    with pytest.raises(_age.AgeError) as info:
        _age.identity_recipients(IDENTITY_FILE)
    assert 'cryptography' in str(info.value) and IDENTITY not in str(info.value)


# --- the tool ---

def test_check_tool_returns_version():
    calls = []

    def runner(argv, **kwargs):
        calls.append(argv)
        return 0, 'v1.1.1\n', ''
    assert _age.check_tool(runner=runner) == 'v1.1.1'
    assert calls == [['age', '--version']]


@pytest.mark.parametrize('outcome', ['missing', 'fails'])
def test_check_tool_missing(outcome):
    def runner(argv, **kwargs):
        if outcome == 'missing':
            raise TransportError('age is not installed or not on PATH', code='missing_binary')
        return 1, '', 'boom'
    with pytest.raises(_age.AgeError) as info:
        _age.check_tool(runner=runner)
    assert info.value.code == 'age_missing' and 'apt-get install age' in str(info.value)


def test_check_tool_missing_binary_for_real():
    with pytest.raises(_age.AgeError) as info:
        _age.check_tool(binary='/nonexistent/age')
    assert info.value.code == 'age_missing'


@needs_age
def test_check_tool_real():
    assert _age.check_tool()


def test_argv():
    assert _age.encrypt_argv([RECIPIENT, 'age1x']) == ['age', '-e', '-r', RECIPIENT, '-r', 'age1x']
    assert _age.decrypt_argv('/dev/fd/5') == ['age', '-d', '-i', '/dev/fd/5']
    assert _age.decrypt_argv('/dev/fd/5', '/b/x.age', binary='/usr/bin/age') == ['/usr/bin/age', '-d', '-i', '/dev/fd/5', '/b/x.age']


def test_identity_pipe_holds_the_text_and_closes():
    with _age.IdentityPipe(IDENTITY_FILE) as pipe:
        fd = pipe.fd
        assert pipe.argv_path == '/dev/fd/%d' % fd
        assert os.read(fd, 10000).decode() == IDENTITY_FILE
        assert os.read(fd, 10) == b''  # write end closed: EOF
    assert pipe.fd is None
    with pytest.raises(OSError):
        os.fstat(fd)
    pipe.close()


def test_identity_pipe_refuses_huge_text():
    with pytest.raises(_age.AgeError) as info:
        _age.IdentityPipe('#' * 100000)
    assert info.value.code == 'bad_identity'


# --- real round trips and failures ---

@needs_age
def test_round_trip_through_identity_pipe(tmp_path):
    identity, recipient = keygen()
    other_identity, other_recipient = keygen()
    data = os.urandom(200000)
    path = tmp_path / 'x.sql.age'
    path.write_bytes(encrypt(data, [recipient, other_recipient]))
    assert _age.is_encrypted(str(path)) and _age.header_problem(str(path)) is None
    for text in (identity, other_identity):
        proc = decrypt(str(path), text)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == data


@needs_age
def test_wrong_identity_is_classified(tmp_path):
    dummy, recipient = keygen()
    stranger, dummy = keygen()
    path = tmp_path / 'x.age'
    path.write_bytes(encrypt(b'secret rows', [recipient]))
    proc = decrypt(str(path), stranger)
    assert proc.returncode != 0
    code, sentence = _age.classify_stderr(proc.stderr.decode())
    assert code == 'wrong_identity' and 'identity' in sentence


@needs_age
@pytest.mark.parametrize('damage', ['flip_payload', 'truncate_payload', 'truncate_header', 'flip_mac'])
def test_damage_is_decrypt_failed(tmp_path, damage):
    identity, recipient = keygen()
    blob = bytearray(encrypt(os.urandom(100000), [recipient]))
    header_end = blob.index(b'\n---') + 1
    header_end = blob.index(b'\n', header_end) + 1
    if damage == 'flip_payload':
        blob[-1000] ^= 0x01
    elif damage == 'truncate_payload':
        blob = blob[:-500]
    elif damage == 'truncate_header':
        blob = blob[:header_end - 20]
    elif damage == 'flip_mac':
        blob[header_end - 5] ^= 0x01
    path = tmp_path / 'x.age'
    path.write_bytes(bytes(blob))
    proc = decrypt(str(path), identity)
    assert proc.returncode != 0
    code, sentence = _age.classify_stderr(proc.stderr.decode())
    assert code == 'decrypt_failed', proc.stderr
    assert 'damaged' in sentence
    if damage == 'truncate_header':
        assert _age.header_problem(str(path))


def test_classify_stderr_cases():
    assert _age.classify_stderr('age: error: no identity matched any of the recipients\nage: report unexpected')[0] == 'wrong_identity'
    code, sentence = _age.classify_stderr('age: error: reading "/dev/fd/3": failed to read "/dev/fd/3": error at line 1: '
                                          'malformed secret key: %s' % IDENTITY)
    assert code == 'bad_identity' and IDENTITY not in sentence
    code, sentence = _age.classify_stderr('age: error: failed to read header: parsing age header: unexpected intro: "x"\n'
                                          'age: report unexpected or unhelpful errors at https://filippo.io/age/report\n')
    assert code == 'decrypt_failed' and 'unexpected intro' in sentence and 'report' not in sentence
    assert _age.classify_stderr('age: error: failed to read nonce: unexpected EOF')[0] == 'decrypt_failed'
    assert _age.classify_stderr('')[0] == 'decrypt_failed'


# --- header checks without identity ---

def _header(stanzas=None, mac='A' * 43):
    stanzas = stanzas if stanzas is not None else [b'-> X25519 ' + b'B' * 43 + b'\n' + b'C' * 43 + b'\n']
    return _age.HEADER + b''.join(stanzas) + b'--- ' + mac.encode() + b'\n'


@pytest.mark.parametrize('blob,problem', [
    (_header() + b'\0' * 32, None),
    (_header([b'-> X25519 a\n' + b'D' * 64 + b'\n\n', b'-> scrypt s 18\nE\n']) + b'\0' * 40, None),
    (b'-- PostgreSQL dump\n', 'does not start'),
    (b'', 'does not start'),
    (_age.HEADER + b'-> X25519 a\nBB', 'cut short'),
    (_header([]) + b'\0' * 32, 'no recipient stanza'),
    (_header([b'-> \n\n']) + b'\0' * 32, 'stanza'),
    (_header([b'-> X25519 a\n' + b'D' * 64 + b'\n']) + b'\0' * 32, 'stanza'),
    (_header([b'-> X25519 a\n!!\n']) + b'\0' * 32, 'stanza'),
    (_header(mac='short') + b'\0' * 32, 'MAC'),
    (_header() + b'\0' * 10, 'payload'),
])
def test_header_problem(tmp_path, blob, problem):
    path = tmp_path / 'x.age'
    path.write_bytes(blob)
    found = _age.header_problem(str(path))
    if problem is None:
        assert found is None
    else:
        assert found and problem in found
    assert _age.is_encrypted(str(path)) == blob.startswith(_age.HEADER)


def test_header_problem_missing_file(tmp_path):
    assert 'cannot read' in _age.header_problem(str(tmp_path / 'nope'))
    assert _age.is_encrypted(str(tmp_path / 'nope')) is False
