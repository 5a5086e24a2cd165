# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A live psql session and the SQL the collection asks. Internal to fleet_telemetry.dr.

The backup needs row counts taken in the same snapshot as the dump: a session opens a
REPEATABLE READ transaction, exports its snapshot for ``pg_dump --snapshot`` and counts rows in it,
and stays open until the dump is done. psql is driven over pipes so that the compose transport
(``docker exec -i``) and the direct transport work the same way.
"""

from __future__ import annotations

import re
import subprocess
import tempfile

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._transport import (
    TransportError,
    client_argv,
    client_env,
    fail_from_stderr,
)

_END = '__fleet_dr_end__'
_SEP = '\x1f'
_IDENT = re.compile(r'^[A-Za-z_][A-Za-z0-9_$]*$')


def quote_ident(name):
    """Quote a (possibly schema-qualified) table name; ``photo`` -> ``"photo"``, ``a.b`` -> ``"a"."b"``."""
    parts = name.split('.')
    if len(parts) > 2 or not all(parts):
        raise TransportError('table name %r is not of the form table or schema.table' % name, code='bad_option')
    return '.'.join('"%s"' % part.replace('"', '""') for part in parts)


def count_query(tables):
    """One statement that returns ``table<US>count`` for each table, exact (``count(*)``)."""
    if not tables:
        raise TransportError('no table to count', code='bad_option')
    selects = ["SELECT %s, count(*) FROM ONLY %s" % ("'" + t.replace("'", "''") + "'", quote_ident(t)) for t in tables]
    return ' UNION ALL '.join(selects)


USER_TABLES_QUERY = (
    "SELECT CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1"
)

DATA_SIZE_QUERY = (
    "SELECT coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
)


class PsqlSession(object):
    """A psql process kept open over pipes; ``query()`` returns rows as lists of strings."""

    def __init__(self, conn, runner=None, database=None, extra_args=()):
        self.conn = conn
        kwargs = {} if runner is None else {'runner': runner}
        self.argv = client_argv(conn, 'psql', ['-X', '-q', '-A', '-t', '-F', _SEP, '-v', 'ON_ERROR_STOP=1'] + list(extra_args),
                                database=database, stdin=True, **kwargs)
        self._stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                         env=client_env(conn))
        except FileNotFoundError:
            raise TransportError('%s is not installed or not on PATH' % self.argv[0], code='missing_binary', cmd=self.argv)

    def _failure(self, what):
        rc = self.proc.poll()
        if rc is None:
            self.proc.kill()
            rc = self.proc.wait()
        self._stderr.seek(0)
        err = self._stderr.read().decode('utf-8', 'replace')
        return fail_from_stderr(self.conn, rc, err, self.argv, what)

    def query(self, sql):
        """Run one statement (or several separated by ``;``); return its rows."""
        try:
            self.proc.stdin.write((sql.rstrip().rstrip(';') + ';\n\\echo ' + _END + '\n').encode('utf-8'))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._failure('psql')
        rows = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise self._failure('psql')
            text = line.decode('utf-8', 'replace').rstrip('\n')
            if text == _END:
                return rows
            rows.append(text.split(_SEP))

    def scalar(self, sql):
        rows = self.query(sql)
        return rows[0][0] if rows and rows[0] else None

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'\\q\n')
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_counts(rows):
    return dict((row[0], int(row[1])) for row in rows)


class SnapshotSession(PsqlSession):
    """A read-only REPEATABLE READ transaction whose snapshot pg_dump shares."""

    def begin(self):
        self.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
        return self.scalar('SELECT pg_export_snapshot()')

    def counts(self, tables):
        return parse_counts(self.query(count_query(tables)))

    def user_tables(self):
        return [row[0] for row in self.query(USER_TABLES_QUERY)]

    def finish(self):
        self.query('COMMIT')


def server_facts(session):
    """Server version, data size estimate and database name as seen by the session."""
    rows = session.query("SELECT current_setting('server_version'), current_setting('server_version_num'), "
                         "current_database(), (" + DATA_SIZE_QUERY + ")")
    version, version_num, database, size = rows[0]
    return {'server_version': version, 'server_version_num': int(version_num), 'database': database, 'data_size': int(size)}
