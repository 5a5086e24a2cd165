# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Names and values in pg_dump's plain text. Internal to fleet_telemetry.dr; not a public API.

Identifier lists and qualified table names (``split_identifiers``, ``normalize_table``), ``COPY ... FROM stdin;``
headers (``parse_copy_header``), and the field values of COPY text: its escaping (``copy_unescape``) and bytea
(``decode_bytea``, ``copy_bytea``).
"""

from __future__ import annotations

import binascii
import re

# pg_dump writes ``COPY public.t  FROM stdin;`` (two blanks) for a table without columns.
_COPY_RE = re.compile(br'\ACOPY (?P<table>.+?) +(?:\((?P<columns>.*)\) )?FROM stdin;\Z')
_OCTAL = b'01234567'
_COPY_ESCAPES = {ord('b'): 8, ord('f'): 12, ord('n'): 10, ord('r'): 13, ord('t'): 9, ord('v'): 11}


# --------------------------------------------------------------------------------------------
# Names in pg_dump output
# --------------------------------------------------------------------------------------------

def split_identifiers(text, separator=','):
    """Split a SQL list of (possibly double-quoted) identifiers; return them unquoted.

    ``'id, "Data", "a""b"'`` -> ``['id', 'Data', 'a"b']``; with ``separator='.'`` it splits a qualified name.
    """
    parts = []
    current = []
    quoted = False
    i = 0
    while i < len(text):
        char = text[i]
        if quoted:
            if char == '"':
                if text[i + 1:i + 2] == '"':
                    current.append('"')
                    i += 1
                else:
                    quoted = False
            else:
                current.append(char)
        elif char == '"':
            quoted = True
        elif char == separator:
            parts.append(''.join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    parts.append(''.join(current).strip())
    return parts


def normalize_table(name, sql=False):
    """The collection's table name: ``photo`` for public tables, ``schema.table`` otherwise.

    ``sql=True`` parses a SQL name as pg_dump writes it (``public."Photo"``); otherwise ``name`` is a raw
    option value (``photo``, ``public.photo``, ``app.photo``), as manifests and ``_pg.quote_ident`` use.
    """
    parts = split_identifiers(name, '.') if sql else name.split('.')
    if len(parts) == 2 and parts[0] == 'public':
        return parts[1]
    return '.'.join(parts)


def parse_copy_header(line):
    """``(table, [columns])`` of a ``COPY <table> (<columns>) FROM stdin;`` line (bytes), else None."""
    match = _COPY_RE.match(line.rstrip(b'\r'))
    if not match:
        return None
    table = normalize_table(match.group('table').decode('utf-8', 'replace'), sql=True)
    columns = match.group('columns')
    return table, split_identifiers(columns.decode('utf-8', 'replace')) if columns is not None else []


# --------------------------------------------------------------------------------------------
# COPY text and bytea
# --------------------------------------------------------------------------------------------

def copy_unescape(field):
    """Undo COPY text-format escaping of one field (bytes); ``\\N`` (NULL) gives None."""
    if field == b'\\N':
        return None
    if b'\\' not in field:
        return field
    out = bytearray()
    i = 0
    size = len(field)
    while i < size:
        byte = field[i]
        if byte != 0x5c or i + 1 == size:
            out.append(byte)
            i += 1
            continue
        nxt = field[i + 1]
        if nxt in _OCTAL:
            j = i + 1
            while j < size and j < i + 4 and field[j] in _OCTAL:
                j += 1
            out.append(int(field[i + 1:j], 8) & 0xff)
            i = j
        elif nxt == ord('x') and i + 2 < size and field[i + 2:i + 3] in b'0123456789abcdefABCDEF' and field[i + 2:i + 3]:
            j = i + 2
            while j < size and j < i + 4 and field[j:j + 1] in b'0123456789abcdefABCDEF':
                j += 1
            out.append(int(field[i + 2:j], 16))
            i = j
        else:
            out.append(_COPY_ESCAPES.get(nxt, nxt))
            i += 2
    return bytes(out)


def decode_bytea(text):
    """The bytes of a bytea value in its text form: hex (``\\x0a1b``) or the escape format (``\\\\``, ``\\ooo``)."""
    if text.startswith(b'\\x'):
        try:
            return binascii.unhexlify(text[2:])
        except (binascii.Error, ValueError):
            raise ValueError('invalid hex bytea value')
    out = bytearray()
    i = 0
    size = len(text)
    while i < size:
        byte = text[i]
        if byte != 0x5c:
            out.append(byte)
            i += 1
        elif text[i + 1:i + 2] == b'\\':
            out.append(0x5c)
            i += 2
        elif len(text[i + 1:i + 4]) == 3 and all(c in _OCTAL for c in text[i + 1:i + 4]):
            out.append(int(text[i + 1:i + 4], 8))
            i += 4
        else:
            raise ValueError('invalid escape-format bytea value')
    return bytes(out)


def copy_bytea(field):
    """A bytea field of a COPY text line (bytes, as pg_dump writes it) -> bytes, or None for NULL."""
    if field.startswith(b'\\\\x') and field.count(b'\\') == 2:
        try:
            return binascii.unhexlify(field[3:])
        except (binascii.Error, ValueError):
            raise ValueError('invalid hex bytea value')
    value = copy_unescape(field)
    return None if value is None else decode_bytea(value)
