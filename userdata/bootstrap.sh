#!/usr/bin/env bash
# First-boot bootstrap of the monitored host, run by cloud-init (runcmd).
# Installs the pinned Datadog Agent, MySQL 8 and the traced Flask app from the files
# cloud-init staged under /opt/observability-lab. Safe to run again: every step
# converges to the same state and changes nothing the second time.
set -euo pipefail

# Paths can be overridden only so tests can run single steps in a scratch directory.
STAGE=${STAGE:-/opt/observability-lab}
LOG=${LOG:-/var/log/observability-lab-bootstrap.log}
AGENT_ETC=${AGENT_ETC:-/etc/datadog-agent}
KEYRING=/usr/share/keyrings/datadog-archive-keyring.gpg
export DEBIAN_FRONTEND=noninteractive

# cloud-init and unattended-upgrades hold the dpkg lock on first boot: retry with
# backoff (bounded: 6 tries, about 2 minutes in all) on top of apt's own lock wait.
apt_retry() {
  local try
  for try in 1 2 3 4 5 6; do
    if apt-get -o DPkg::Lock::Timeout=60 -q -y "$@"; then
      return 0
    fi
    echo "apt-get $* failed (try $try), retrying in $((try * 5)) s"
    sleep $((try * 5))
  done
  echo "apt-get $* failed after 6 tries" >&2
  return 1
}

install_packages() {
  apt_retry update
  apt_retry install --no-install-recommends ca-certificates curl gnupg python3-venv mysql-server-8.0
}

install_agent() {
  if [ ! -s "$KEYRING" ]; then
    local key tmp
    tmp=$(mktemp -d)
    for key in CURRENT C0962C7D F14F620E 382E94DE; do
      curl -fsSL --retry 5 "https://keys.datadoghq.com/DATADOG_APT_KEY_${key}.public" -o "$tmp/$key.public"
      gpg --batch --no-default-keyring --keyring "$tmp/keyring.gpg" --import "$tmp/$key.public"
    done
    install -m 0644 "$tmp/keyring.gpg" "$KEYRING"
    rm -rf "$tmp"
  fi
  echo "deb [signed-by=$KEYRING] https://apt.datadoghq.com/ stable 7" >/etc/apt/sources.list.d/datadog.list
  apt_retry update
  apt_retry install --allow-downgrades "datadog-agent=1:${DD_AGENT_VERSION}-1"
  apt-mark hold datadog-agent >/dev/null
}

# Our config replaces the package's; dd-agent must read it, nobody else needs to.
install_agent_files() {
  install -o dd-agent -g dd-agent -m 0640 "$STAGE/agent/datadog.yaml" "$AGENT_ETC/datadog.yaml"
  install -o dd-agent -g dd-agent -m 0640 "$STAGE/agent/checks.d/custom_my_metric.py" "$AGENT_ETC/checks.d/"
  install -o dd-agent -g dd-agent -m 0640 "$STAGE/agent/conf.d/custom_my_metric.yaml" "$AGENT_ETC/conf.d/"
  install -d -o dd-agent -g dd-agent -m 0750 "$AGENT_ETC/conf.d/process.d" "$AGENT_ETC/conf.d/mysql.d"
  install -o dd-agent -g dd-agent -m 0640 "$STAGE/agent/conf.d/process.d/conf.yaml" "$AGENT_ETC/conf.d/process.d/"
}

# The datadog MySQL user's password is made here and lives only in the integration's
# conf.yaml (0640 dd-agent): it never leaves the host. A re-run reuses it.
configure_mysql() {
  local conf="$AGENT_ETC/conf.d/mysql.d/conf.yaml" password
  systemctl enable --now mysql
  if [ -s "$conf" ]; then
    password=$(sed -n 's/^ *password: "\([0-9a-f]*\)"$/\1/p' "$conf")
  fi
  if [ -z "${password:-}" ]; then
    password=$(openssl rand -hex 24)
  fi
  sed "s/@@DATADOG_MYSQL_PASSWORD@@/$password/g" "$STAGE/mysql/datadog_user.sql" | mysql --user=root
  local tmp
  tmp=$(mktemp)
  sed "s/@@DATADOG_MYSQL_PASSWORD@@/$password/g" "$STAGE/agent/conf.d/mysql.d/conf.yaml" >"$tmp"
  install -o dd-agent -g dd-agent -m 0640 "$tmp" "$conf"
  rm -f "$tmp"
}

install_app() {
  id -u "$APP_USER" >/dev/null 2>&1 || useradd --system --home-dir "$APP_DIR" --shell /usr/sbin/nologin "$APP_USER"
  install -d -o root -g "$APP_USER" -m 0750 "$APP_DIR"
  install -o root -g "$APP_USER" -m 0640 "$STAGE/app/app.py" "$STAGE/app/gunicorn.conf.py" \
    "$STAGE/app/requirements.txt" "$STAGE/app/app.env" "$APP_DIR/"
  [ -x "$APP_DIR/venv/bin/python" ] || python3 -m venv "$APP_DIR/venv"
  "$APP_DIR/venv/bin/pip" install --quiet --disable-pip-version-check -r "$APP_DIR/requirements.txt"
  install -o root -g root -m 0644 "$STAGE/app/$APP_UNIT" "/etc/systemd/system/$APP_UNIT"
  systemctl daemon-reload
  systemctl enable "$APP_UNIT"
  systemctl restart "$APP_UNIT"
}

main() {
  exec >>"$LOG" 2>&1
  echo "== bootstrap start $(date -u +%FT%TZ)"
  # shellcheck source=/dev/null
  . "$STAGE/bootstrap.env"   # DD_AGENT_VERSION, APP_USER, APP_DIR, APP_UNIT
  install_packages
  install_agent
  install_agent_files
  configure_mysql
  install_app
  systemctl restart datadog-agent
  echo "== bootstrap done $(date -u +%FT%TZ)"
}

# Run when executed (cloud-init); only define the steps when sourced (tests).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
