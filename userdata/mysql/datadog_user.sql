-- The Agent's MySQL user: Datadog's documented MySQL 8 setup, and only what the
-- collectors enabled in agent/conf.d/mysql.d/conf.yaml query (tests/test_mysql_grants.py
-- proves each grant is needed against a real server). converge.sh fills in the
-- password generated on the host; every statement is safe to run again.
CREATE USER IF NOT EXISTS 'datadog'@'127.0.0.1' IDENTIFIED BY '@@DATADOG_MYSQL_PASSWORD@@';
CREATE USER IF NOT EXISTS 'datadog'@'localhost' IDENTIFIED BY '@@DATADOG_MYSQL_PASSWORD@@';
ALTER USER 'datadog'@'127.0.0.1' IDENTIFIED BY '@@DATADOG_MYSQL_PASSWORD@@' WITH MAX_USER_CONNECTIONS 5;
ALTER USER 'datadog'@'localhost' IDENTIFIED BY '@@DATADOG_MYSQL_PASSWORD@@' WITH MAX_USER_CONNECTIONS 5;
-- SHOW BINARY LOGS (the binary log is on by default in MySQL 8).
GRANT REPLICATION CLIENT ON *.* TO 'datadog'@'127.0.0.1', 'datadog'@'localhost';
-- SHOW ENGINE INNODB STATUS, information_schema.INNODB_METRICS (deadlocks).
GRANT PROCESS ON *.* TO 'datadog'@'127.0.0.1', 'datadog'@'localhost';
-- Connections per user, index usage, statement digests (the custom queries).
GRANT SELECT ON performance_schema.* TO 'datadog'@'127.0.0.1', 'datadog'@'localhost';
-- Index sizes (mysql.index.size; index metrics are on by default).
GRANT SELECT ON mysql.innodb_index_stats TO 'datadog'@'127.0.0.1', 'datadog'@'localhost';
