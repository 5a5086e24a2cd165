# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This doc fragment is PRIVATE to fleet_telemetry.dr and may change at any time.

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  transport:
    description:
      - How to reach PostgreSQL.
      - V(compose) runs the client tools inside the running container of O(service) of the compose project in
        O(project_src), found with C(docker compose ps) (v2) or C(docker-compose ps) (v1), through C(docker exec -i).
      - V(direct) runs the host's client tools over TCP or a Unix socket (libpq), for example against a managed server.
        Their major version must not be older than the server's.
    type: str
    choices: [compose, direct]
    default: compose
  project_src:
    description:
      - Directory of the compose project (the one holding C(docker-compose.yml) and C(.env)).
      - Required with O(transport=compose).
    type: path
  project_name:
    description:
      - Compose project name. Defaults to what compose derives from O(project_src).
    type: str
  service:
    description: Compose service of the database.
    type: str
    default: db
  compose_command:
    description:
      - The compose command, for example C(docker compose) or C(docker-compose).
      - Detected when not set; v2 is preferred when both work.
    type: str
  db_host:
    description: Host name, IP address or Unix socket directory of the server, with O(transport=direct).
    type: str
  db_port:
    description: Port of the server, with O(transport=direct).
    type: int
  db_user:
    description: PostgreSQL user.
    type: str
    default: challengeuser
  db_password:
    description:
      - Password of O(db_user). Passed to the client tools in the environment (E(PGPASSWORD)), never on a command line.
      - With O(transport=compose) local connections inside the container usually need none.
    type: str
  db_name:
    description: Database.
    type: str
    default: telemetry_db
  pg_bin_dir:
    description: Directory of C(pg_dump), C(psql) and C(pg_restore) on the host, with O(transport=direct). Default is E(PATH).
    type: path
  connect_timeout:
    description: Seconds to wait for a connection (E(PGCONNECT_TIMEOUT)).
    type: int
    default: 10
"""
