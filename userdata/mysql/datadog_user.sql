-- The Agent's MySQL user, as Datadog documents it for MySQL 8. converge.sh fills
-- in the password generated on the host; every statement is safe to run again.
CREATE USER IF NOT EXISTS 'datadog'@'127.0.0.1' IDENTIFIED BY '@@DATADOG_MYSQL_PASSWORD@@';
CREATE USER IF NOT EXISTS 'datadog'@'localhost' IDENTIFIED BY '@@DATADOG_MYSQL_PASSWORD@@';
ALTER USER 'datadog'@'127.0.0.1' IDENTIFIED BY '@@DATADOG_MYSQL_PASSWORD@@' WITH MAX_USER_CONNECTIONS 5;
ALTER USER 'datadog'@'localhost' IDENTIFIED BY '@@DATADOG_MYSQL_PASSWORD@@' WITH MAX_USER_CONNECTIONS 5;
GRANT REPLICATION CLIENT ON *.* TO 'datadog'@'127.0.0.1', 'datadog'@'localhost';
GRANT PROCESS ON *.* TO 'datadog'@'127.0.0.1', 'datadog'@'localhost';
GRANT SELECT ON performance_schema.* TO 'datadog'@'127.0.0.1', 'datadog'@'localhost';
