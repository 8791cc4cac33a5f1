#!/usr/bin/env bash
# Converges this host on one configuration bundle: the directory this script is in.
# Both triggers run it through the same SSM document, on the same files: the first boot
# (CONVERGE_TRIGGER=first-boot, userdata/first-boot/) and the SSM association after every
# change. It does the least: a file is written only when its
# sha256 differs from the installed one; a unit restarts (or its SQL is applied) only when
# its own files or its pinned package changed; apt runs only for a missing package or a
# changed pinned version. Stdout is the change report (one line per file, package and
# service); command output goes to the log. A failing step exits non-zero and says which;
# a unit whose new files fail their check gets its previous files back.
# One bundle serves every host of a stack: the one value that differs per host, the
# Agent's hostname, comes from this instance's datadog-hostname tag (instance metadata).
set -euo pipefail

BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=${CONVERGE_ROOT:-} # every host path is under ROOT: a scratch directory in tests
STATE=$ROOT/var/lib/observability-lab
LOG=$ROOT/var/log/observability-lab-converge.log
KEYRING=/usr/share/keyrings/datadog-archive-keyring.gpg
BASE_PACKAGES=(ca-certificates curl gnupg python3-venv mysql-server-8.0)
# In this order: the Agent's MySQL check needs the grants, its process check the app.
UNITS=(mysql-grants flask-app datadog-agent)
IMDS=http://169.254.169.254
HOSTNAME_TAG=datadog-hostname
export DEBIAN_FRONTEND=noninteractive

say() {
  printf '%s\n' "$*"
  printf '%s\n' "$*" >>"$LOG"
}
fail() {
  say "FAILED: $*"
  exit 1
}

# Runs a command with its output in the log only; on failure the log's last lines go to stderr.
quietly() {
  local status=0
  "$@" >>"$LOG" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    echo "--- $* exited $status; the end of $LOG:" >&2
    tail -n 20 "$LOG" >&2
  fi
  return "$status"
}

# cloud-init and unattended-upgrades hold the dpkg lock on first boot: retry with
# backoff (bounded: 6 tries, about 2 minutes in all) on top of apt's own lock wait.
apt_retry() {
  local try
  for try in 1 2 3 4 5 6; do
    # A package's changed conffile keeps the local one instead of stopping at a prompt.
    quietly apt-get -o DPkg::Lock::Timeout=60 -o Dpkg::Options::=--force-confdef \
      -o Dpkg::Options::=--force-confold -q -y "$@" && return 0
    echo "apt-get $* failed (try $try), retrying in $((try * 5)) s" >>"$LOG"
    sleep $((try * 5))
  done
  echo "apt-get $* failed after 6 tries" >&2
  return 1
}

# Runs "$@" until it succeeds, at most $1 times, a second apart.
retry_for() {
  local tries=$1 try
  shift
  for ((try = 1; try <= tries; try++)); do
    "$@" >>"$LOG" 2>&1 && return 0
    sleep 1
  done
  return 1
}

# INSTALLED[package]=version for those of the named packages that are installed.
read_installed() {
  local package status version
  while read -r package status version; do
    if [ "$status" = installed ]; then INSTALLED[$package]=$version; fi
  done < <(dpkg-query -W -f='${Package} ${db:Status-Status} ${Version}\n' "$@" 2>/dev/null || true)
}

# The directory's name is the sha256 of the `sha256sum` listing of its files: a bundle
# cut short or edited on the host is refused before anything changes.
verify_bundle() {
  local digest
  digest=$(cd "$BUNDLE" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum |
    sha256sum | cut -d' ' -f1)
  [ "$digest" = "${BUNDLE##*/}" ] || fail "bundle $BUNDLE: its files hash to $digest, not to its name"
}

ensure_packages() {
  local missing=() package want="1:${DD_AGENT_VERSION}-1" have
  declare -gA INSTALLED=()
  read_installed "${BASE_PACKAGES[@]}" datadog-agent
  for package in "${BASE_PACKAGES[@]}"; do
    if [ -n "${INSTALLED[$package]:-}" ]; then say "package $package: kept"; else missing+=("$package"); fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt_retry update || fail "apt-get update"
    apt_retry install --no-install-recommends "${missing[@]}" || fail "installing ${missing[*]}"
    for package in "${missing[@]}"; do say "package $package: installed"; done
  fi
  # The Agent at exactly DD_AGENT_VERSION, held: an upgrade or a downgrade happens in place.
  have=${INSTALLED[datadog-agent]:-}
  if [ "$have" = "$want" ]; then
    say "package datadog-agent $want: kept"
    return 0
  fi
  if [ ! -s "$ROOT$KEYRING" ]; then
    local key tmp
    tmp=$(mktemp -d)
    # An existing (empty) file makes gpg write a plain OpenPGP keyring; a missing one would
    # become a keybox, which apt ignores ("unsupported filetype") and then refuses the repo.
    : >"$tmp/keyring.gpg"
    for key in CURRENT C0962C7D F14F620E 382E94DE; do
      if ! quietly curl -fsSL --retry 5 "https://keys.datadoghq.com/DATADOG_APT_KEY_${key}.public" -o "$tmp/$key" ||
        ! quietly gpg --batch --no-autostart --no-default-keyring --keyring "$tmp/keyring.gpg" --import "$tmp/$key"; then
        fail "fetching Datadog's apt key $key"
      fi
    done
    install -D -m 0644 "$tmp/keyring.gpg" "$ROOT$KEYRING"
    rm -rf "$tmp"
  fi
  mkdir -p "$ROOT/etc/apt/sources.list.d"
  echo "deb [signed-by=$KEYRING] https://apt.datadoghq.com/ stable 7" >"$ROOT/etc/apt/sources.list.d/datadog.list"
  apt_retry update || fail "apt-get update"
  : >"$STATE/pending.datadog-agent" # restart it even if this run dies after the install
  apt_retry install --allow-downgrades --allow-change-held-packages "datadog-agent=$want" ||
    fail "installing datadog-agent=$want"
  quietly apt-mark hold datadog-agent || fail "holding datadog-agent"
  say "package datadog-agent: ${have:-none} -> $want"
}

ensure_app_user() {
  if ! id -u "$APP_USER" >/dev/null 2>&1; then
    quietly useradd --system --home-dir "$APP_DIR" --shell /usr/sbin/nologin "$APP_USER" || fail "useradd $APP_USER"
    say "user $APP_USER: created"
  fi
}

# The datadog MySQL user's password is made on the host and lives only in the
# integration's conf.yaml (0640 dd-agent): it never leaves the host. Later runs reuse it.
read_mysql_password() {
  MYSQL_PASSWORD=$(sed -n 's/^ *password: "\([0-9a-f]*\)"$/\1/p' \
    "$ROOT/etc/datadog-agent/conf.d/mysql.d/conf.yaml" 2>/dev/null || true)
  if [ -z "$MYSQL_PASSWORD" ]; then
    MYSQL_PASSWORD=$(openssl rand -hex 24)
    # A new password (first run, or its conf.yaml gone) must reach MySQL too.
    : >"$STATE/pending.mysql-grants"
  fi
}

# The Agent's hostname: this instance's datadog-hostname tag, from instance metadata
# (IMDSv2; tags in metadata are enabled on every host). Read before anything changes, so
# a host without it is left as it is. A tag added by the same `pulumi up` can take a
# moment to show in metadata: a missing tag is retried for 2 minutes.
read_datadog_hostname() {
  local token try
  token=$(curl -fsS --max-time 5 --retry 5 --retry-connrefused -X PUT \
    -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$IMDS/latest/api/token" 2>>"$LOG") ||
    fail "no IMDSv2 token from $IMDS (instance metadata unreachable)"
  for try in {1..30}; do
    DATADOG_HOSTNAME=$(curl -fsS --max-time 5 --retry 3 -H "X-aws-ec2-metadata-token: $token" \
      "$IMDS/latest/meta-data/tags/instance/$HOSTNAME_TAG" 2>>"$LOG") && break
    DATADOG_HOSTNAME=
    [ "$try" = 30 ] || sleep 4
  done
  [ -n "$DATADOG_HOSTNAME" ] ||
    fail "no instance tag $HOSTNAME_TAG in instance metadata (is instance_metadata_tags enabled, the tag set?)"
  [[ $DATADOG_HOSTNAME =~ ^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$ ]] ||
    fail "instance tag $HOSTNAME_TAG is not a hostname (lowercase letters, digits, . and -): '$DATADOG_HOSTNAME'"
  say "datadog hostname: $DATADOG_HOSTNAME (instance tag $HOSTNAME_TAG)"
}

# The whole file, in bash (no process per file): `read -d ''` stops at the end.
slurp() { IFS= read -r -d '' "$1" <"$2" || true; }

# Per manifest line: the file as it must be on the host (hostname and password filled in;
# the grants record keeps its placeholder, as it only records which grants were applied)
# and what to do with it.
plan_files() {
  local file target owner mode unit desired action content installed
  while read -r file target owner mode unit; do
    case "$file" in '' | '#'*) continue ;; esac
    desired=$WORK/desired/${file//\//_}
    if [ -f "$BUNDLE/$file" ]; then
      slurp content "$BUNDLE/$file"
      content=${content//@@DATADOG_HOSTNAME@@/"$DATADOG_HOSTNAME"}
      [ "$unit" = mysql-grants ] || content=${content//@@DATADOG_MYSQL_PASSWORD@@/$MYSQL_PASSWORD}
      printf '%s' "$content" >"$desired"
      installed=
      [ ! -f "$ROOT$target" ] || slurp installed "$ROOT$target"
      if [ ! -e "$ROOT$target" ]; then action=created
      elif [ "$content" = "$installed" ]; then action=unchanged
      else action=updated; fi
    elif [ -e "$ROOT$target" ]; then action=removed # a feature switched off
    else continue; fi
    echo "$action $ROOT$target $owner $mode $desired" >>"$WORK/plan.$unit"
  done <"$BUNDLE/manifest"
}

# Writes one unit's changed files, keeping the previous ones for restore_files.
write_files() {
  local unit=$1 action target owner mode desired
  while read -r action target owner mode desired; do
    say "file ${target#"$ROOT"}: $action"
    [ "$action" = unchanged ] && continue
    if [ "$action" != created ]; then
      mkdir -p "$WORK/backup.$unit${target%/*}"
      cp -p "$target" "$WORK/backup.$unit$target"
    fi
    if [ "$action" = removed ]; then
      rm -f "$target"
      continue
    fi
    if [ ! -d "${target%/*}" ]; then
      install -d -m 0750 "${target%/*}"
      chown "$owner" "${target%/*}"
    fi
    # Next to the target, then renamed: readers see the old file or the new one.
    install -m "$mode" "$desired" "$target.converge-new"
    chown "$owner" "$target.converge-new"
    mv -f "$target.converge-new" "$target"
  done < <(cat "$WORK/plan.$unit" 2>/dev/null || true)
}

restore_files() {
  local unit=$1 action target rest
  [ -f "$WORK/plan.$unit" ] || return 0
  while read -r action target rest; do
    case "$action" in
      created) rm -f "$target" ;;
      updated | removed) cp -p "$WORK/backup.$unit$target" "$target" ;;
    esac
  done <"$WORK/plan.$unit"
}

# What applying each unit means, and how it is checked.
# The grants as installed (after a rollback, the previous ones).
apply_mysql_grants() {
  local sql=$STATE/mysql/datadog_user.sql
  [ -f "$sql" ] || return 1
  sed "s/@@DATADOG_MYSQL_PASSWORD@@/$MYSQL_PASSWORD/g" "$sql" | quietly mysql --user=root
}

app_answers() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$APP_PORT/"; }

apply_flask_app() {
  local venv=$ROOT$APP_DIR/venv
  [ -x "$venv/bin/python" ] || quietly python3 -m venv "$venv" || return 1
  quietly "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT$APP_DIR/requirements.txt" &&
    quietly systemctl daemon-reload && quietly systemctl enable "$APP_UNIT" &&
    quietly systemctl restart "$APP_UNIT" || return 1
  retry_for 30 app_answers || {
    echo "$APP_UNIT does not answer on 127.0.0.1:$APP_PORT 30 s after its restart" >&2
    return 1
  }
}

# The checks whose code or configuration this run changed (checks.d/<name>.py,
# conf.d/<name>.yaml, conf.d/<name>.d/conf.yaml).
changed_checks() {
  local action target rest name
  [ -f "$WORK/plan.datadog-agent" ] || return 0
  while read -r action target rest; do
    [ "$action" != unchanged ] || continue
    case "$target" in
      */checks.d/*.py) name=${target##*/} && echo "${name%.py}" ;;
      */conf.d/*.d/conf.yaml) name=${target%/conf.yaml} && name=${name##*/} && echo "${name%.d}" ;;
      */conf.d/*.yaml) name=${target##*/} && echo "${name%.yaml}" ;;
    esac
  done <"$WORK/plan.datadog-agent"
}

apply_datadog_agent() {
  local report check
  quietly systemctl restart datadog-agent || return 1
  retry_for 60 datadog-agent status || {
    echo "datadog-agent status still fails 60 s after the restart" >&2
    return 1
  }
  # configcheck exits 0 even when it lists check configurations the Agent could not load.
  report=$(datadog-agent configcheck 2>&1) || return 1
  echo "$report" >>"$LOG"
  if grep -q "=== Configuration .*errors" <<<"$report"; then
    grep -A 20 "=== Configuration .*errors" <<<"$report" >&2
    return 1
  fi
  # configcheck reads YAML only: a check's own code, and the options it validates when it
  # starts, show when it runs once.
  for check in $(changed_checks | sort -u); do
    quietly datadog-agent check "$check" || return 1
  done
}

converge_unit() {
  local unit=$1 label="service $1" done=restarted
  case "$unit" in
    mysql-grants) label="grants for datadog@mysql" done=applied ;;
    flask-app) label="service $APP_UNIT" ;;
  esac
  # A marker in $STATE outlives a run killed between writing files and applying them:
  # the next run applies the unit even though its files then look unchanged.
  if grep -qv '^unchanged ' "$WORK/plan.$unit" 2>/dev/null; then : >"$STATE/pending.$unit"; fi
  write_files "$unit"
  if [ ! -e "$STATE/pending.$unit" ]; then
    say "$label: kept"
  elif "apply_${unit//-/_}"; then
    rm -f "$STATE/pending.$unit"
    say "$label: $done"
    APPLIED+=("$unit")
  else
    restore_files "$unit"
    "apply_${unit//-/_}" || fail "$unit fails with its new files, and with the previous ones restored (see $LOG)"
    rm -f "$STATE/pending.$unit"
    fail "$unit rejected its new files; the previous ones are back and it runs on them (see $LOG)"
  fi
}

# A larger rootVolumeGiB is an in-place EBS modification: grow the partition and the
# filesystem into it (cloud-init's growpart does the same at every boot). The association
# may run while EC2 still modifies the volume: wait (10 minutes at most) for the disk to
# reach ROOT_VOLUME_GIB first.
disk_has_grown() {
  [ "$(lsblk -b -d -n -o SIZE "$1")" -ge $((ROOT_VOLUME_GIB * 1024 * 1024 * 1024)) ]
}

grow_root_filesystem() {
  local source disk partition status=0
  if ! { source=$(findmnt -n -o SOURCE /) && disk=/dev/$(lsblk -n -o PKNAME "$source") &&
    partition=$(cat "$ROOT/sys/class/block/${source##*/}/partition"); }; then
    fail "finding the root partition"
  fi
  retry_for 600 disk_has_grown "$disk" || fail "$disk is still smaller than $ROOT_VOLUME_GIB GiB after 10 minutes"
  growpart "$disk" "$partition" >>"$LOG" 2>&1 || status=$?
  case "$status" in
    0)
      quietly resize2fs "$source" || fail "resize2fs $source"
      say "filesystem /: grown"
      ;;
    1) say "filesystem /: kept" ;; # growpart's NOCHANGE
    *) fail "growpart $disk $partition exited $status (see $LOG)" ;;
  esac
}

main() {
  local digest unit old
  mkdir -p "$STATE" "${LOG%/*}" "$ROOT/run/lock"
  touch "$BUNDLE" # the newest bundles are the ones in use (pruning below goes by age)
  # One converge at a time: the first boot's and the association's may overlap.
  exec 9>"$ROOT/run/lock/observability-lab-converge.lock"
  flock 9
  verify_bundle
  digest=${BUNDLE##*/}
  say "== converge ${digest:0:12} (${CONVERGE_TRIGGER:-association}) $(date -u +%FT%TZ)"
  # The association may have run a newer bundle before the first boot got here: never go back.
  if [ "${CONVERGE_TRIGGER:-}" = first-boot ] && [ -s "$STATE/applied" ]; then
    say "already converged on $(cut -c1-12 "$STATE/applied"); the first-boot bundle is not applied"
    return 0
  fi
  # shellcheck source=/dev/null
  . "$BUNDLE/converge.env" # DD_AGENT_VERSION, APP_USER, APP_DIR, APP_UNIT, APP_PORT, ROOT_VOLUME_GIB
  read_datadog_hostname
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  mkdir "$WORK/desired"
  APPLIED=()
  ensure_packages
  ensure_app_user
  if systemctl is-active --quiet mysql; then say "service mysql: kept"; else
    quietly systemctl enable --now mysql || fail "starting mysql"
    say "service mysql: started"
  fi
  read_mysql_password
  plan_files
  for unit in "${UNITS[@]}"; do converge_unit "$unit"; done
  grow_root_filesystem
  echo "$digest" >"$STATE/applied"
  # Keep this bundle and the two before it, newest first, for comparing after a change.
  find "${BUNDLE%/*}" -mindepth 1 -maxdepth 1 -type d -regextype egrep -regex '.*/[0-9a-f]{64}' \
    -printf '%T@ %p\n' | sort -rn | tail -n +4 | cut -d' ' -f2- | while read -r old; do
    if [ "$old" != "$BUNDLE" ]; then rm -rf "$old"; fi
  done
  # Left by a delivery killed while it unpacked.
  find "${BUNDLE%/*}" -mindepth 1 -maxdepth 1 -name '.incoming.*' -mmin +60 -exec rm -rf {} +
  say "== converged on ${digest:0:12}; restarted or applied: ${APPLIED[*]:-nothing}"
}

# Datadog events through the local Agent's DogStatsD: one UDP datagram to loopback, so the
# host needs no API or application key for them. The datagram is DogStatsD's event format
# as Datadog's own clients write it (the datadog package's DogStatsd.event):
#   _e{<title length>,<text length>}:<title>|<text>|h:<hostname>|t:<alert type>|#<tag>,<tag>
# lengths in bytes, newlines written as \n, tag characters outside [A-Za-z0-9_:/.-] as _
# (the tags converge sends are ASCII: non-ASCII letters, which the client keeps, become _), and
# the datagram ends in a newline as the client ends it.
# UDP is fire and forget: an Agent that is down loses the event, and the converge's outcome
# never depends on it.
DOGSTATSD=${CONVERGE_DOGSTATSD:-127.0.0.1:8125}
EVENT_TEXT_MAX=4000 # Datadog keeps at most 4000 characters of an event's text

dogstatsd_event() {
  local alert_type=$1 title=$2 text=$3 tag tags=() datagram LC_ALL=C
  shift 3
  for tag in "$@"; do tags+=("${tag//[^[:alnum:]_:\/.-]/_}"); done
  title=${title//$'\n'/\\n}
  text=${text//$'\n'/\\n}
  if [ ${#text} -gt $EVENT_TEXT_MAX ]; then text="${text:0:EVENT_TEXT_MAX-15}\\n(truncated)"; fi
  datagram="_e{${#title},${#text}}:$title|$text|h:$DATADOG_HOSTNAME|t:$alert_type"
  if [ ${#tags[@]} -gt 0 ]; then datagram+="|#$(IFS=,; echo "${tags[*]}")"; fi
  { printf '%s\n' "$datagram" >"/dev/udp/${DOGSTATSD%:*}/${DOGSTATSD##*:}"; } 2>/dev/null || true
}

# Run when executed; only define the steps when sourced (tests).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
