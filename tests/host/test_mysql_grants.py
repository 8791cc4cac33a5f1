"""The Agent's MySQL user and integration config against a real database server.

`userdata/mysql/datadog_user.sql` is applied to a private MariaDB server (see
tests/mariadb_server.py) exactly as the host does it: by converge.sh's own
`apply_mysql_grants` (the script sourced, the password placeholder substituted, piped
into `mysql --user=root`), as root over the server's socket, twice. Then, as `datadog` over TCP 127.0.0.1 (as the Agent
connects, with PyMySQL, the check's driver), every statement that Datadog's `mysql`
check issues for `agent/conf.d/mysql.d/conf.yaml` must succeed, and the config's
custom queries must produce their metrics through datadog_checks.base's QueryManager
(what the check runs them with). Each grant is then revoked in turn on a scratch user:
some collector statement must be denied, so every grant is needed and a missing one
fails this suite.

The statements are those of integrations-core's mysql check (mysql/datadog_checks/mysql:
mysql.py, global_variables.py, innodb_metrics.py, queries.py, index_metrics.py) with
this config: no DBM, `replication: false`, index metrics on (their default).

MariaDB is not MySQL 8 (Debian packages only MariaDB). What differs, and what follows:
* Process name `mariadbd`, not `mysqld`. The check finds the server's pid from its pid
  file (or by process name, and it knows both names); the host runs MySQL 8, so the
  process check and the process monitor watch `mysqld`. Not exercised here.
* performance_schema is off by default in MariaDB and on in MySQL 8: the test server
  turns it on, so the performance_schema grant and queries are exercised as on the host.
* The binary log is on by default in MySQL 8 and off in MariaDB: turned on here, so
  SHOW BINARY LOGS (the reason for REPLICATION CLIENT) is issued as on the host.
* MySQL 8 authenticates with caching_sha2_password by default; MariaDB has no such
  plugin (mysql_native_password here). This proves the grants and the SQL, not the
  authentication handshake of the Agent with MySQL 8.
* MariaDB (10.5+) reads REPLICATION CLIENT as BINLOG MONITOR, and wants REPLICA MONITOR
  for SHOW REPLICA STATUS, which MySQL 8 allows with REPLICATION CLIENT. Replication
  metrics are off in conf.yaml (no replica on this host), so the check never asks for
  replica status; the test pins that option rather than running the statement.
"""
from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path

import pymysql
import pytest
import yaml
from datadog_checks.base import AgentCheck
from datadog_checks.base.utils.db import QueryManager

from tests.support import CONVERGE, USERDATA

SQL_FILE = USERDATA / "mysql" / "datadog_user.sql"
CONF_FILE = USERDATA / "agent" / "conf.d" / "mysql.d" / "conf.yaml"
PLACEHOLDER = "@@DATADOG_MYSQL_PASSWORD@@"
DENIED = {1044, 1142, 1227}  # database / table / privilege access denied

# What the mysql check queries with this config, by collector (integrations-core mysql).
COLLECTOR_STATEMENTS = {
    "global variables (global_variables.py)": "SHOW GLOBAL VARIABLES",
    "global status (mysql.py)": "SHOW /*!50002 GLOBAL */ STATUS",
    "InnoDB engine present (queries.SQL_INNODB_ENGINES)":
        "SELECT engine FROM information_schema.ENGINES "
        "WHERE engine='InnoDB' and support != 'no' and support != 'disabled'",
    "InnoDB status (innodb_metrics.py)": "SHOW /*!50000 ENGINE*/ INNODB STATUS",
    "binary log size (mysql.py, log_bin on)": "SHOW BINARY LOGS",
    "deadlocks (queries.QUERY_DEADLOCKS)":
        "SELECT count as deadlocks FROM information_schema.INNODB_METRICS WHERE NAME='lock_deadlocks'",
    "connections per user (queries.QUERY_USER_CONNECTIONS)":
        "SELECT COUNT(processlist_user) AS connections, processlist_user, processlist_host, "
        "processlist_db, processlist_state FROM performance_schema.threads "
        "WHERE processlist_user IS NOT NULL AND processlist_state IS NOT NULL "
        "GROUP BY processlist_user, processlist_host, processlist_db, processlist_state",
    "index size (index_metrics.QUERY_INDEX_SIZE)":
        "SELECT database_name, table_name, index_name, stat_value * @@innodb_page_size AS index_size_bytes "
        "FROM mysql.innodb_index_stats WHERE stat_name = 'size'",
    "index usage (index_metrics.QUERY_INDEX_USAGE)":
        "SELECT object_schema, object_name, index_name, count_read, count_update, count_delete "
        "FROM performance_schema.table_io_waits_summary_by_index_usage "
        "WHERE index_name IS NOT NULL AND object_schema NOT IN ('mysql', 'performance_schema')",
}


def mysql_instance() -> dict:
    """The conf's one instance, parsed anew for each caller (the check may change its copy)."""
    (instance,) = yaml.load(CONF_FILE.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["instances"]
    return instance


def all_statements() -> dict[str, str]:
    custom = {f"custom query #{i}": q["query"] for i, q in enumerate(mysql_instance()["custom_queries"], 1)}
    return {**COLLECTOR_STATEMENTS, **custom}


def apply_sql_as_the_host_does(server, password: str, state: Path) -> None:
    """converge.sh's own step, on the SQL file installed where converge.sh records it."""
    (state / "mysql").mkdir(parents=True, exist_ok=True)
    (state / "mysql" / "datadog_user.sql").write_text(SQL_FILE.read_text())
    script = f'source "{CONVERGE}"\nSTATE="$STATE_DIR" LOG="$STATE_DIR/log" MYSQL_PASSWORD="$password"\napply_mysql_grants'
    env = {**os.environ, "PATH": f"{server.client_dir}{os.pathsep}{os.environ['PATH']}",
           "password": password, "STATE_DIR": str(state)}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + (state / "log").read_text()
    assert password not in (state / "log").read_text()


def run_statements(connection) -> dict[str, tuple[int, str]]:
    """Every collector statement; returns the denied ones (name -> (errno, message))."""
    denied = {}
    with connection.cursor() as cursor:
        for name, sql in all_statements().items():
            try:
                cursor.execute(sql)
                cursor.fetchall()
            except (pymysql.err.OperationalError, pymysql.err.ProgrammingError) as error:
                errno, message = error.args
                if errno not in DENIED:
                    raise
                denied[name] = (errno, message)
    return denied


def grant_statements() -> list[str]:
    return [line for line in SQL_FILE.read_text().splitlines() if line.startswith("GRANT ")]


@pytest.fixture(scope="module")
def datadog_user(mariadb, tmp_path_factory):
    """The server with sample data and the datadog user applied twice, and its password."""
    with mariadb.root() as root, root.cursor() as cursor:
        # An InnoDB table with an index, used a little, so index and digest rows exist.
        for sql in ("CREATE DATABASE shop", "CREATE TABLE shop.orders (id INT PRIMARY KEY, "
                    "customer INT, KEY by_customer (customer)) ENGINE=InnoDB",
                    "INSERT INTO shop.orders VALUES (1, 10), (2, 20), (3, 10)", "ANALYZE TABLE shop.orders",
                    "USE shop", "SELECT id FROM orders WHERE customer = 10"):
            cursor.execute(sql)
    password = secrets.token_hex(24)  # as converge.sh makes it (openssl rand -hex 24)
    state = tmp_path_factory.mktemp("converge-state")
    apply_sql_as_the_host_does(mariadb, password, state)
    apply_sql_as_the_host_does(mariadb, password, state)  # a second boot / converge run
    return mariadb, password


def test_the_sql_file_leaves_the_password_to_the_host():
    assert PLACEHOLDER in SQL_FILE.read_text()


def test_both_accounts_exist_with_the_same_grants_and_a_connection_cap(datadog_user):
    server, _ = datadog_user
    with server.root() as root, root.cursor() as cursor:
        cursor.execute("SELECT host, max_user_connections FROM mysql.user WHERE user = 'datadog' ORDER BY host")
        assert cursor.fetchall() == (("127.0.0.1", 5), ("localhost", 5))
        grants = {}
        for host in ("127.0.0.1", "localhost"):
            cursor.execute(f"SHOW GRANTS FOR 'datadog'@'{host}'")
            grants[host] = {row[0].replace(f"`datadog`@`{host}`", "`datadog`") for row in cursor.fetchall()}
        assert grants["127.0.0.1"] == grants["localhost"]


def test_every_collector_statement_succeeds_as_datadog_over_tcp(datadog_user):
    server, password = datadog_user
    with server.connect("datadog", password) as connection:
        assert run_statements(connection) == {}


def test_index_statistics_are_visible_to_datadog(datadog_user):
    server, password = datadog_user
    with server.connect("datadog", password) as connection, connection.cursor() as cursor:
        cursor.execute(COLLECTOR_STATEMENTS["index size (index_metrics.QUERY_INDEX_SIZE)"])
        indexes = {(db, table, index) for db, table, index, _ in cursor.fetchall()}
    assert {("shop", "orders", "PRIMARY"), ("shop", "orders", "by_customer")} <= indexes


def test_custom_queries_report_the_former_extra_performance_metrics(datadog_user, aggregator):
    server, password = datadog_user
    check = AgentCheck("mysql", {}, [mysql_instance()])
    with server.connect("datadog", password) as connection:
        def execute(sql):
            with connection.cursor() as cursor:
                cursor.execute(sql)
                yield from cursor.fetchall()

        manager = QueryManager(check, execute)
        manager.compile_queries()
        manager.execute()
    aggregator.assert_metric("mysql.performance.query_run_time.avg", tags=["schema:shop"])
    aggregator.assert_metric("mysql.performance.digest_95th_percentile.avg_us", tags=[], count=1)
    aggregator.assert_all_metrics_covered()


def test_conf_keeps_replication_off_and_drops_the_deprecated_option():
    options = mysql_instance()["options"]
    assert options["replication"] is False  # no replica status query (see module docstring)
    assert "extra_performance_metrics" not in options
    assert (mysql_instance()["host"], mysql_instance()["port"]) == ("127.0.0.1", 3306)


@pytest.mark.parametrize("grant", grant_statements(), ids=lambda g: g.split(" TO ")[0])
def test_each_grant_is_needed_by_some_collector(datadog_user, grant):
    server, password = datadog_user
    privilege, target = re.fullmatch(r"GRANT (.+) ON (\S+) TO .*;", grant).groups()
    scratch = f"scratch_{secrets.token_hex(4)}"
    with server.root() as root, root.cursor() as cursor:
        sql = SQL_FILE.read_text().replace(PLACEHOLDER, password).replace("'datadog'@", f"'{scratch}'@")
        for statement in filter(str.strip, re.sub(r"(?m)^--.*$", "", sql).split(";")):
            cursor.execute(statement)
        cursor.execute(f"REVOKE {privilege} ON {target} FROM '{scratch}'@'127.0.0.1'")
    with server.connect(scratch, password) as connection:
        denied = run_statements(connection)
    assert denied, f"nothing the check runs needs {privilege} ON {target}"
