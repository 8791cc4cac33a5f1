#!/usr/bin/env bash
# Converges this host on one configuration bundle: the directory this script is in.
# Both triggers run it through the same SSM document, on the same files: the first boot
# (CONVERGE_TRIGGER=first-boot, userdata/first-boot/) and the SSM association after every
# change. It does the least: a file is written only when its
# sha256 differs from the installed one; a unit restarts (or its SQL is applied) only when
# its own files or its pinned package changed; apt runs only for a missing package or a
# changed pinned version. Stdout is the change report (one line per file, package and
# service); command output goes to the log. A failing step exits non-zero and says which
# (a FAILED line); a unit whose new files fail their check gets its previous files back,
# from a record that outlives a killed run. Nothing another user can touch is in the way:
# files are written into directories only root may write to, owned and moded from their
# creation; the lock, the log and the state are root's only; no secret is on a command line.
# One bundle serves every host of a stack: the values that differ per host, the Agent's
# hostname and the data volume's id, come from this instance's tags (instance metadata).
# MySQL's data lives on the data volume, which outlives the instance; converge never
# removes anything on it. An Agent version that fails its checks is replaced by the
# previous one again, with its previous files.
set -euo pipefail

BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIGEST=${BUNDLE##*/}
ROOT=${CONVERGE_ROOT:-} # every host path is under ROOT: a scratch directory in tests
STATE=$ROOT/var/lib/observability-lab
LOG=$ROOT/var/log/observability-lab-converge.log
LOCK=$ROOT/run/observability-lab-converge.lock
# Below the association's 30-minute wait: a run stuck behind another fails clearly first.
LOCK_WAIT_SECONDS=${CONVERGE_LOCK_WAIT_SECONDS:-1500}
KEYRING=/usr/share/keyrings/datadog-archive-keyring.gpg
BASE_PACKAGES=(ca-certificates curl gnupg python3-venv acl) # and MYSQL_SERVER_PACKAGE (converge.env); acl: setfacl, for MySQL's log
# The Java workload (JAVA_APP=on): Ubuntu's Tomcat on its default headless JRE, and the
# distribution's JDBC driver for MySQL.
JAVA_PACKAGES=(tomcat10 default-jre-headless libmariadb-java)
# In this order: the apps' pools and the Agent's MySQL check need the grants, the Agent's
# process and JMX checks the apps.
UNITS=(mysql-grants flask-app app-traffic tomcat datadog-agent)
TOMCAT_UNIT=tomcat10.service
TRAFFIC_UNIT=app-traffic.service # the bounded load on the app (appTrafficEnabled)
# The cars app behind the package's own HTTP connector (its server.xml: 8080).
CARS_URL=http://127.0.0.1:8080/cars/
# Passwords made on the host (read_host_secrets); empty while their feature is off.
MYSQL_PASSWORD='' CARS_MYSQL_PASSWORD='' JMX_PASSWORD=''
IMDS=http://169.254.169.254
HOSTNAME_TAG=datadog-hostname
DATA_VOLUME_TAG="data-volume-id"
# The data volume's filesystem, and MySQL's data directory in it (bound onto the package's).
DATA_MOUNT=/var/lib/observability-lab-data
MYSQL_DATADIR=/var/lib/mysql
DATA_MOUNT_OPTIONS=nodev,nosuid,noexec
# How long a first boot waits for its volume: EC2 attaches it once the instance runs.
DATA_VOLUME_WAIT_SECONDS=${CONVERGE_DATA_VOLUME_WAIT_SECONDS:-600}
export DEBIAN_FRONTEND=noninteractive
declare -A REMEMBERED=() # unit -> the files its rollback record lists (remember_previous)
declare -A PLANNED_CHANGES=() # unit -> 1: plan_files changes its files

# The report on stdout, and in the log (a log it cannot write, e.g. on a full disk, does
# not stop the report).
say() {
  printf '%s\n' "$*"
  printf '%s\n' "$*" >>"$LOG" 2>/dev/null || true
  REPORT+=("$*")
}
fail() {
  FAILED_SAID=1 FAILED_IN=${FAILED_IN:-${CURRENT_UNIT:-${FUNCNAME[1]:-converge}}}
  say "FAILED: $*"
  exit 1
}

# Every failure ends the report with a FAILED line naming what failed: fail() says it;
# any other command that stops the run (set -e) is named from the ERR trap.
report_failures() {
  FAILED_SAID='' FAILED_AT='' FAILED_IN='' CURRENT_UNIT=''
  REPORT=() APPLIED=()
  # Inherited by functions and $(...): hence `$(exec tool)` throughout, one process where the
  # trap would make the substitution a subshell that forks the tool again.
  set -o errtrace
  trap 'FAILED_AT="${FUNCNAME[0]:-main}: $BASH_COMMAND"' ERR
  trap 'FAILED_AT="stopped by a signal"; exit 143' TERM INT HUP
  trap on_exit EXIT
}
on_exit() {
  local status=$?
  if [ "$status" -ne 0 ] && [ -z "$FAILED_SAID" ]; then
    FAILED_IN=${CURRENT_UNIT:-${FAILED_AT%%:*}}
    say "FAILED: ${FAILED_AT:-converge} (exit $status)"
  fi
  report_to_datadog "$status"
  [ -z "${WORK:-}" ] || rm -rf "$WORK"
}

# A deliberate restart, even of a unit that crash-looped into its start limit (the Agent's
# unit has Restart=on-failure with StartLimitBurst=5: on a datadog.yaml it cannot start on it
# is refused every start for 10 s, the restore of its previous files included).
# The pattern takes the units bound to it too (the real Agent's trace and process agents,
# datadog-agent-*.service, loop with it and restart with it).
restart_unit() {
  systemctl reset-failed "${1%.service}*" >>"$LOG" 2>&1 || true # none failed, or none loaded yet
  quietly systemctl restart "$1"
}

# Runs a command (not a function: the pipe runs it in a subshell) with its output in the log
# only, the host's passwords masked in it (mysql quotes the statement it refuses); on failure
# the log's last lines go to stderr (SSM keeps it).
quietly() {
  local status=0
  "$@" 2>&1 | mask_secrets >>"$LOG" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "--- $* exited $status; the end of $LOG:" >&2
    tail -n 20 "$LOG" >&2
  fi
  return "$status"
}

# In bash alone: a password on sed's command line would show in the process list.
mask_secrets() {
  local line secret
  while IFS= read -r line || [ -n "$line" ]; do
    for secret in "$MYSQL_PASSWORD" "$CARS_MYSQL_PASSWORD" "$JMX_PASSWORD"; do
      [ -z "$secret" ] || line=${line//"$secret"/[masked]}
    done
    printf '%s\n' "$line"
  done
}

# apt-get's messages (LC_ALL=C) for what waiting can fix: the dpkg lock held by someone
# else (cloud-init and unattended-upgrades on first boot; dpkg's own words for it too), a
# download that failed.
APT_RETRYABLE='Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock|locked by another process|Failed to fetch|Unable to fetch|Temporary failure resolving|Could not resolve|Could not connect|Connection failed|Connection timed out|Some index files failed to download|Hash Sum mismatch'

# Datadog's index signed by a key its keyring lacks (apt's two warnings for it). Other sources'
# warnings are apt's business: a mirror mid-sync must not stop the Agent's converge.
APT_UNVERIFIED="W: (GPG error|An error occurred during the signature verification)[^"$'\n'"]*apt\.datadoghq\.com[^"$'\n'"]*"

# Runs apt-get; retries what waiting can fix, with backoff (bounded: 6 tries, about 2
# minutes in all, on top of apt's own lock wait). Anything else (a package apt cannot
# find, a broken dependency, a failing maintainer script) fails at once, with apt's
# error lines in APT_ERROR and on stderr.
apt_retry() {
  local try output status
  APT_ERROR=
  for try in 1 2 3 4 5 6; do
    status=0
    # A package's changed conffile keeps the local one instead of stopping at a prompt.
    output=$(LC_ALL=C apt-get -o DPkg::Lock::Timeout=60 -o Dpkg::Options::=--force-confdef \
      -o Dpkg::Options::=--force-confold -q -y "$@" 2>&1) || status=$?
    printf '%s\n' "$output" >>"$LOG"
    # An index that does not verify (Datadog's, signed by a key not in the keyring) is only a
    # warning: apt keeps the previous index and exits 0, and the install then cannot find the
    # version. It is an error here, with apt's own words.
    if [ "$status" -eq 0 ] && [ "$1" = update ] && [[ $output =~ $APT_UNVERIFIED ]]; then
      APT_ERROR=${BASH_REMATCH[0]}
      echo "apt-get $* failed: $APT_ERROR" >&2
      return 1
    fi
    [ "$status" -ne 0 ] || return 0
    # A run killed while dpkg unpacked or configured a package: finish dpkg's work, then
    # try again at once (or wait, if dpkg itself finds the lock held).
    if grep -q "dpkg was interrupted" <<<"$output"; then
      status=0
      output=$(LC_ALL=C dpkg --force-confdef --force-confold --configure -a 2>&1) || status=$?
      printf '%s\n' "$output" >>"$LOG"
      [ "$status" -ne 0 ] || continue
    fi
    APT_ERROR=$(grep -E '^(E: |dpkg: error)' <<<"$output" | head -n 3 | paste -sd ' ' || true)
    APT_ERROR=${APT_ERROR:-apt-get exited $status}
    if ! grep -Eq "$APT_RETRYABLE" <<<"$output"; then
      echo "apt-get $* failed: $APT_ERROR" >&2
      return 1
    fi
    echo "apt-get $* failed (try $try): $APT_ERROR; retrying in $((try * 5)) s" >>"$LOG"
    sleep $((try * 5))
  done
  echo "apt-get $* failed after 6 tries: $APT_ERROR" >&2
  return 1
}

# Runs "$@" until it succeeds or $1 seconds have passed, a second apart. The bound is
# for the whole wait: each try finds the seconds left in LEFT, to bound its own wait.
# A try that finds waiting is pointless says why in GAVE_UP, which ends the wait.
retry_until() {
  local deadline
  LEFT=$1
  deadline=$(($(exec date +%s) + LEFT))
  shift
  GAVE_UP=
  while [ "$LEFT" -gt 0 ]; do
    "$@" >>"$LOG" 2>&1 && return 0
    [ -z "$GAVE_UP" ] || return 1
    sleep 1
    LEFT=$((deadline - $(exec date +%s)))
  done
  return 1
}

# For retry_until: the unit $1, just restarted, answers "${@:2}". One systemd gave up on
# (failed: it exited, and Restart= no longer starts it, e.g. past its start limit) never
# will, and the wait ends then; one that is still starting or restarting is waited for.
unit_answers() {
  local unit=$1
  shift
  "$@" && return 0
  ! systemctl is-failed --quiet "$unit" || GAVE_UP="$unit failed and systemd stopped restarting it (journalctl -u $unit)"
  return 1
}

# INSTALLED[package]=version for those of the named packages that are installed.
read_installed() {
  local package status version
  while read -r package status version; do
    if [ "$status" = installed ]; then INSTALLED[$package]=$version; fi
  done < <(exec dpkg-query -W -f='${Package} ${db:Status-Status} ${Version}\n' "$@" 2>/dev/null)
}

# The directory's name is the sha256 of the `sha256sum` listing of its files: a bundle
# cut short or edited on the host is refused before anything changes.
verify_bundle() {
  local digest
  digest=$(cd "$BUNDLE" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum)
  digest=${digest%% *}
  [ "$digest" = "$DIGEST" ] || fail "bundle $BUNDLE: its files hash to $digest, not to its name"
}

# Datadog's apt keys, as its install script fetches them, into a binary OpenPGP keyring.
fetch_datadog_keyring() {
  local key tmp=$WORK/keyring
  rm -rf "$tmp" && mkdir -m 0700 "$tmp"
  # An existing (empty) file makes gpg write a plain OpenPGP keyring; a missing one would
  # become a keybox, which apt ignores ("unsupported filetype") and then refuses the repo.
  : >"$tmp/keyring.gpg"
  for key in CURRENT C0962C7D F14F620E 382E94DE; do
    if ! quietly curl -fsSL --retry 5 "https://keys.datadoghq.com/DATADOG_APT_KEY_${key}.public" -o "$tmp/$key" ||
      ! quietly gpg --batch --no-autostart --no-default-keyring --keyring "$tmp/keyring.gpg" --import "$tmp/$key"; then
      fail "fetching Datadog's apt key $key"
    fi
  done
  mkdir -p "$ROOT${KEYRING%/*}"
  put_file "$tmp/keyring.gpg" "$ROOT$KEYRING" root:root 0644 || fail "writing $KEYRING: $WRITE_ERROR"
}

# apt-get update. Datadog's index not verifying with the keyring this host has (its signing
# key rotated since) gets the keys fetched again and one more update.
apt_update() {
  apt_retry update && return 0
  [[ $APT_ERROR =~ $APT_UNVERIFIED ]] && [ -s "$ROOT$KEYRING" ] || return 1
  say "keyring $KEYRING: Datadog's index does not verify with it; fetching Datadog's keys again"
  fetch_datadog_keyring
  apt_retry update
}

ensure_packages() {
  local missing=() package want="1:${DD_AGENT_VERSION}-1" have packages=("${BASE_PACKAGES[@]}")
  # Switched off, the Java packages stay installed; their unit is stopped (apply_tomcat).
  [ "$JAVA_APP" != on ] || packages+=("${JAVA_PACKAGES[@]}")
  declare -gA INSTALLED=()
  read_installed "${packages[@]}" datadog-agent
  for package in "${packages[@]}"; do
    if [ -n "${INSTALLED[$package]:-}" ]; then say "package $package: kept"; else missing+=("$package"); fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt_update || fail "apt-get update: $APT_ERROR"
    apt_retry install --no-install-recommends "${missing[@]}" || fail "installing ${missing[*]}: $APT_ERROR"
    for package in "${missing[@]}"; do say "package $package: installed"; done
  fi
  # The Agent at exactly DD_AGENT_VERSION, held: an upgrade or a downgrade happens in place.
  have=${INSTALLED[datadog-agent]:-}
  if [ "$have" = "$want" ]; then
    say "package datadog-agent $want: kept"
    return 0
  fi
  [ -s "$ROOT$KEYRING" ] || fetch_datadog_keyring
  mkdir -p "$ROOT/etc/apt/sources.list.d"
  echo "deb [signed-by=$KEYRING] https://apt.datadoghq.com/ stable 7" >"$WORK/datadog.list"
  put_file "$WORK/datadog.list" "$ROOT/etc/apt/sources.list.d/datadog.list" root:root 0644 ||
    fail "writing /etc/apt/sources.list.d/datadog.list: $WRITE_ERROR"
  apt_update || fail "apt-get update: $APT_ERROR"
  # The version to go back to if this one fails its checks, kept until the Agent passes
  # them (the first of several versions that never did, if so).
  if [ -n "$have" ] && [ ! -s "$STATE/rollback.datadog-agent/package" ]; then
    if ! { mkdir -p "$STATE/rollback.datadog-agent" && echo "$have" >"$STATE/rollback.datadog-agent/package"; }; then
      fail "keeping the previous datadog-agent version for a rollback"
    fi
  fi
  : >"$STATE/pending.datadog-agent" # restart it even if this run dies after the install
  install_agent "$want" || fail "installing datadog-agent=$want: $APT_ERROR"
  say "package datadog-agent: ${have:-none} -> $want"
}

ensure_app_user() {
  if ! id -u "$APP_USER" >/dev/null 2>&1; then
    quietly useradd --system --home-dir "$APP_DIR" --shell /usr/sbin/nologin "$APP_USER" || fail "useradd $APP_USER"
    say "user $APP_USER: created"
  fi
}

# The passwords are made on the host and live only in the installed files that use them
# (each readable by its service's user only): they never leave the host. A later run
# reads each back from the first of its files found; a new one (first run, or its files
# gone) must reach what checks it, MySQL, so the grants are applied again. A new JMX
# password changes both of its files, so the JVM and the Agent restart with it.
read_host_secrets() {
  host_secret MYSQL_PASSWORD /etc/datadog-agent/conf.d/mysql.d/conf.yaml || : >"$STATE/pending.mysql-grants"
  [ "$JAVA_APP" = on ] || return 0
  host_secret CARS_MYSQL_PASSWORD /etc/tomcat10/Catalina/localhost/cars.xml || : >"$STATE/pending.mysql-grants"
  host_secret JMX_PASSWORD /etc/datadog-agent/conf.d/tomcat.d/conf.yaml /etc/tomcat10/jmxremote.password || true
}

# host_secret NAME FILE...: NAME's value from the first FILE holding one (`password: "hex"`
# in YAML, `password="hex"` in XML, `monitorRole hex` in a JMX password file), else a new
# one, and then status 1.
host_secret() {
  local name=$1 file value='' line
  shift
  for file in "$@"; do
    [ -f "$ROOT$file" ] || continue
    while IFS= read -r line || [ -n "$line" ]; do
      [[ $line =~ .*password[:=]\ *\"([0-9a-f]{16,})\" || $line =~ ^monitorRole\ ([0-9a-f]{16,})$ ]] &&
        value=${BASH_REMATCH[1]} && break
    done 2>/dev/null <"$ROOT$file" || true
    [ -z "$value" ] || break
  done
  if [ -n "$value" ]; then
    printf -v "$name" '%s' "$value"
    return 0
  fi
  printf -v "$name" '%s' "$(exec openssl rand -hex 24)"
  return 1
}

# This instance's tags, from instance metadata (IMDSv2; tags in metadata are enabled on
# every host): the Agent's hostname and the data volume's id. Read before anything
# changes, so a host without them is left as it is.
read_instance_tags() {
  local token no_tag_hint="in instance metadata (is instance_metadata_tags enabled, the tag set?)"
  token=$(exec curl -fsS --max-time 5 --retry 5 --retry-connrefused -X PUT \
    -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$IMDS/latest/api/token" 2>>"$LOG") ||
    fail "no IMDSv2 token from $IMDS (instance metadata unreachable)"
  instance_tag "$token" "$HOSTNAME_TAG" DATADOG_HOSTNAME || fail "no instance tag $HOSTNAME_TAG $no_tag_hint"
  [[ $DATADOG_HOSTNAME =~ ^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$ ]] ||
    fail "instance tag $HOSTNAME_TAG is not a hostname (lowercase letters, digits, . and -): '$DATADOG_HOSTNAME'"
  say "datadog hostname: $DATADOG_HOSTNAME (instance tag $HOSTNAME_TAG)"
  instance_tag "$token" "$DATA_VOLUME_TAG" DATA_VOLUME_ID || fail "no instance tag $DATA_VOLUME_TAG $no_tag_hint"
  [[ $DATA_VOLUME_ID =~ ^vol-([0-9a-f]{8}|[0-9a-f]{17})$ ]] ||
    fail "instance tag $DATA_VOLUME_TAG is not an EBS volume id (vol- and 8 or 17 hex digits): '$DATA_VOLUME_ID'"
  say "data volume: $DATA_VOLUME_ID (instance tag $DATA_VOLUME_TAG)"
}

# One tag's value into the variable $3. A tag added by the same `pulumi up` can take a
# moment to show in metadata: a missing tag is retried for 2 minutes, then returns 1 (the
# caller fails, so a failed run's event names its step, read_instance_tags).
instance_tag() {
  local token=$1 tag=$2 try value=
  for try in {1..30}; do
    # The token as a header file (printf is bash's own), not on curl's command line.
    value=$(exec curl -fsS --max-time 5 --retry 3 -H @<(printf 'X-aws-ec2-metadata-token: %s\n' "$token") \
      "$IMDS/latest/meta-data/tags/instance/$tag" 2>>"$LOG") && break
    value=
    [ "$try" = 30 ] || sleep 4
  done
  [ -n "$value" ] || return 1
  printf -v "$3" '%s' "$value"
}

# The whole file, in bash (no process per file): `read -d ''` stops at the end.
slurp() { IFS= read -r -d '' "$1" <"$2" || true; }

# Per manifest line: the file as it must be on the host (hostname and password filled in;
# the grants record keeps its placeholder, as it only records which grants were applied)
# and what to do with it. Whatever is not a regular file at a target (a link) is
# replaced, never followed.
plan_files() {
  local file target owner mode unit desired action content installed i
  local -a lines=() units=() kept=()
  while read -r file target owner mode unit; do
    case "$file" in '' | '#'*) continue ;; esac
    desired=$WORK/desired/${file//\//_}
    if [ -f "$BUNDLE/$file" ]; then
      slurp content "$BUNDLE/$file"
      content=${content//@@DATADOG_HOSTNAME@@/"$DATADOG_HOSTNAME"}
      if [ "$unit" != mysql-grants ]; then
        content=${content//@@DATADOG_MYSQL_PASSWORD@@/$MYSQL_PASSWORD}
        content=${content//@@CARS_MYSQL_PASSWORD@@/$CARS_MYSQL_PASSWORD}
        content=${content//@@JMX_PASSWORD@@/$JMX_PASSWORD}
      fi
      printf '%s' "$content" >"$desired"
      if [ -L "$ROOT$target" ] || { [ -e "$ROOT$target" ] && [ ! -f "$ROOT$target" ]; }; then
        action=updated
      elif [ ! -e "$ROOT$target" ]; then
        action=created
      else
        slurp installed "$ROOT$target"
        if [ "$content" = "$installed" ]; then action=unchanged kept+=("${#lines[@]}"); else action=updated; fi
      fi
    elif [ -e "$ROOT$target" ] || [ -L "$ROOT$target" ]; then
      action=removed # a feature switched off
    else continue; fi
    lines+=("$action $target $owner $mode $desired") units+=("$unit")
  done <"$BUNDLE/manifest"
  [ ${#kept[@]} -eq 0 ] || owners_and_modes_kept
  for i in "${!lines[@]}"; do
    echo "${lines[$i]}" >>"$WORK/plan.${units[$i]}"
    [[ ${lines[$i]} == "unchanged "* ]] || PLANNED_CHANGES[${units[$i]}]=1
  done
}

# A file whose content is right but whose owner or mode is not the manifest's (the manifest
# changed, or someone changed the file on the host) is written again, as an update: one
# stat for them all, one lookup of the owners' numbers. Reads and edits plan_files' lines.
owners_and_modes_kept() {
  local i name number rest target owner mode users=() groups=() paths=() found=()
  local -A uid=() gid=()
  for i in "${kept[@]}"; do
    read -r _ target owner _ <<<"${lines[$i]}"
    users+=("${owner%%:*}") groups+=("${owner#*:}") paths+=("$ROOT$target")
  done
  while IFS=: read -r name _ number rest; do uid[$name]=$number; done < <(exec getent passwd "${users[@]}")
  while IFS=: read -r name _ number rest; do gid[$name]=$number; done < <(exec getent group "${groups[@]}")
  mapfile -t found < <(exec stat -c '%u:%g %a' -- "${paths[@]}" 2>>"$LOG")
  # A file gone since it was read leaves no line: every kept file is then written again.
  [ ${#found[@]} -eq ${#kept[@]} ] || found=()
  for i in "${!kept[@]}"; do
    read -r _ target owner mode rest <<<"${lines[${kept[$i]}]}"
    printf -v mode '%o' "$((8#$mode))" # as stat prints it: 0640 -> 640
    if [ "${found[$i]:-}" != "${uid[${owner%%:*}]:-?}:${gid[${owner#*:}]:-?} $mode" ]; then
      lines[${kept[$i]}]="updated ${lines[${kept[$i]}]#unchanged }"
    fi
  done
}

# What undoing a unit's changes needs outlives the run, until the unit is applied: a run
# killed while the unit is checked leaves it to the next run, which checks (or undoes)
# the same changes. $STATE/rollback.<unit>/changed lists every file changed since the
# unit was last applied, and backup/<path> keeps each one as it was before the first of
# those changes (no backup: the file was new).
remember_previous() {
  local record=$STATE/rollback.$1 target=$2 listed
  if [ -z "${REMEMBERED[$1]:-}" ]; then # the record as an earlier run left it, read once
    REMEMBERED[$1]=$'\n'
    while read -r listed; do REMEMBERED[$1]+=$listed$'\n'; done 2>/dev/null <"$record/changed" || true
  fi
  [[ ${REMEMBERED[$1]} != *$'\n'$target$'\n'* ]] || return 0
  [ -d "$record/backup${target%/*}" ] || mkdir -p "$record/backup${target%/*}" || return 1
  if [ -e "$ROOT$target" ] || [ -L "$ROOT$target" ]; then
    cp -a "$ROOT$target" "$record/backup$target.part" &&
      mv -fT "$record/backup$target.part" "$record/backup$target" || return 1
  elif [ -e "$record/backup$target" ] || [ -L "$record/backup$target" ]; then
    rm -f "$record/backup$target" || return 1 # left by a run killed before it listed the file
  fi
  echo "$target" >>"$record/changed" || return 1
  REMEMBERED[$1]+=$target$'\n'
}

# Every directory on the way to a file converge writes is root's, and only root may
# write to it: the Agent's user (its package leaves /etc/datadog-agent its own) or the
# app's could otherwise swap a file or a directory for a link between two of converge's
# steps and have root write, chown or copy through it. Top down, so that each
# directory's parent is already safe when it is looked at; a link on the way is refused.
# A missing directory is made root's, readable by the group of the file it is for.
secure_directories() {
  local action target owner rest path paths=() groups=() depths=() i
  local -A seen=()
  while read -r action target owner rest; do
    rest=${target%/*} path=
    while [ -n "$rest" ]; do
      rest=${rest#/}
      path=$path/${rest%%/*}
      if [[ $rest == */* ]]; then rest=${rest#*/}; else rest=; fi
      [ -z "${seen[$path]:-}" ] || continue
      seen[$path]=1 paths+=("$path") groups+=("${owner#*:}") depths+=("${rest:-parent}")
    done
  done < <(exec cat "$WORK"/plan.* 2>/dev/null)
  # Usually all there and root's already: one stat says so. A directory found root's and
  # writable by root only, below others found so, cannot have changed since.
  if [ "$(stat -c '%u %A' -- "${paths[@]/#/$ROOT}" 2>/dev/null | grep -c '^0 d....-..-.')" = "${#paths[@]}" ]; then
    return 0
  fi
  for i in "${!paths[@]}"; do secure_directory "${paths[$i]}" "${groups[$i]}" "${depths[$i]}"; done
}

secure_directory() {
  local path=$1 group=$2 depth=$3 directory=$ROOT$1 uid mode
  if [ -L "$directory" ]; then
    fail "$path is a symbolic link: converge does not write through one"
  elif [ ! -e "$directory" ]; then
    if [ "$depth" = parent ]; then
      install -d -o root -g "$group" -m 0750 "$directory" || fail "creating $path"
    else
      install -d -o root -g root -m 0755 "$directory" || fail "creating $path"
    fi
    say "directory $path: created"
  elif [ ! -d "$directory" ]; then
    fail "$path is not a directory"
  else
    read -r uid mode < <(exec stat -c '%u %a' "$directory")
    if [ "$uid" != 0 ] || ((8#$mode & 8#022)); then
      { chown -h root "$directory" && chmod go-w "$directory"; } || fail "making $path root's"
      say "directory $path: made root's, writable by root only (was uid $uid, mode $mode)"
    fi
  fi
}

# Writes $1's content as the file $2 (owner:group $3, mode $4): next to it, then renamed
# over it, so readers see the old file or the new one, and a failed write (a full disk)
# leaves nothing behind. install -o -g -m makes the file root's 0600 and then its owner's
# with its mode, before anyone else can see it under its name; only root can write to
# the directory (secure_directories). WRITE_ERROR says why it failed.
put_file() {
  local new=$2.converge-new
  if WRITE_ERROR=$({ install -o "${3%%:*}" -g "${3#*:}" -m "$4" "$1" "$new" && exec mv -fT "$new" "$2"; } 2>&1); then
    return 0
  fi
  rm -f "$new"
  return 1
}

# Writes one unit's changed files, each remembered first for restore_files, and reports
# each once it is done.
write_files() {
  local unit=$1 action target owner mode desired
  [ -f "$WORK/plan.$unit" ] || return 0
  while read -r action target owner mode desired; do
    if [ "$action" != unchanged ]; then
      remember_previous "$unit" "$target" || fail "keeping the previous $target for a rollback"
      if [ "$action" = removed ]; then
        WRITE_ERROR=$(exec rm -f "$ROOT$target" 2>&1) || write_failed "$unit" "removing $target"
      else
        put_file "$desired" "$ROOT$target" "$owner" "$mode" || write_failed "$unit" "writing $target"
      fi
    fi
    say "file $target: $action"
  done <"$WORK/plan.$unit"
}

# A file of the unit could not be written: the unit's files go back to what they were
# (its service still runs on them), and the run ends.
write_failed() {
  local unit=$1 what="$2: $WRITE_ERROR"
  restore_files "$unit" ||
    fail "$what; restoring $unit's previous files failed too ($WRITE_ERROR); what is left to restore is in $STATE/rollback.$unit"
  fail "$what; $unit's files are as they were before this run"
}

# Puts back every file the unit's record lists that differs from its backup (RESTORED: how
# many), then forgets the record.
restore_files() {
  local record=$STATE/rollback.$1 target
  RESTORED=0
  [ -f "$record/changed" ] || return 0
  while read -r target; do
    if [ ! -L "$record/backup$target" ] && [ ! -L "$ROOT$target" ] &&
      cmp -s "$record/backup$target" "$ROOT$target" 2>/dev/null; then
      continue # never written (the run stopped first): nothing to put back
    elif [ -e "$record/backup$target" ] || [ -L "$record/backup$target" ]; then
      if ! WRITE_ERROR=$({ cp -a "$record/backup$target" "$ROOT$target.converge-new" &&
        exec mv -fT "$ROOT$target.converge-new" "$ROOT$target"; } 2>&1); then
        rm -f "$ROOT$target.converge-new"
        return 1
      fi
      say "file $target: restored"
    elif [ -e "$ROOT$target" ] || [ -L "$ROOT$target" ]; then
      rm -f "$ROOT$target" || return 1
      say "file $target: removed again (it was new)"
    else
      continue # new, and never written
    fi
    RESTORED=$((RESTORED + 1))
  done <"$record/changed"
  forget_record "$1"
}

# Applied: neither the marker nor the record is needed any more (the record goes first:
# a record without its marker would be taken for a later change's).
forget_pending() {
  forget_record "$1"
  rm -f "$STATE/pending.$1"
}
# remove PATH: rm -rf, only when there is something to remove (most runs have nothing).
remove() { [ ! -e "$1" ] && [ ! -L "$1" ] || rm -rf "$1"; }

forget_record() {
  remove "$STATE/rollback.$1"
  unset 'REMEMBERED[$1]'
}

# What applying each unit means, and how it is checked.
# The grants as installed (after a rollback, the previous ones).
apply_mysql_grants() {
  local sql statements all=
  UNIT_FAILURE="mysql refused the grants for datadog"
  [ -f "$STATE/mysql/datadog_user.sql" ] || return 1
  for sql in "$STATE/mysql/datadog_user.sql" "$STATE/mysql/cars_user.sql"; do
    if [ -f "$sql" ]; then slurp statements "$sql" && all+=$statements; fi
  done
  # The cars app switched off: its MySQL user goes (its database is kept).
  [ -f "$STATE/mysql/cars_user.sql" ] || all+=$'DROP USER IF EXISTS \'cars\'@\'127.0.0.1\';\n'
  all=${all//@@DATADOG_MYSQL_PASSWORD@@/$MYSQL_PASSWORD}
  # printf is bash's own: the passwords are on no command line (process collection sees those).
  { printf '%s' "${all//@@CARS_MYSQL_PASSWORD@@/$CARS_MYSQL_PASSWORD}"; maintenance_user_sql; } |
    quietly mysql --user=root
}

# Data another host made keeps that host's password for the package's maintenance user
# (Ubuntu's MySQL: debian-sys-maint, whose password the package writes to this host's
# /etc/mysql/debian.cnf; logrotate and the package's scripts log in with it): it gets this
# host's again. Debian's MariaDB names root there, with no password: nothing to do.
maintenance_user_sql() {
  local cnf=$ROOT/etc/mysql/debian.cnf user password
  [ -f "$cnf" ] || return 0
  user=$(exec sed -n '/^[[:space:]]*user[[:space:]]*=/{s/^[^=]*=[[:space:]]*//p;q}' "$cnf")
  password=$(exec sed -n '/^[[:space:]]*password[[:space:]]*=/{s/^[^=]*=[[:space:]]*//p;q}' "$cnf")
  [ "$user" = debian-sys-maint ] && [ -n "$password" ] || return 0
  password=${password//\\/\\\\}
  printf "\nALTER USER IF EXISTS 'debian-sys-maint'@'localhost' IDENTIFIED BY '%s';\n" "${password//\'/\'\'}"
}

app_answers() { curl -fsS -o /dev/null --max-time $((LEFT < 2 ? LEFT : 2)) "http://127.0.0.1:$APP_PORT/"; }
agent_answers() { timeout "$LEFT" datadog-agent status; }

# A venv counts as built only once `python3 -m venv` has finished (one killed half-way
# has python but no pip): its marker is written last, and a venv without it is built
# again from nothing. (Built elsewhere and moved in, its scripts would name the wrong path.)
ensure_venv() {
  local venv=$1
  [ ! -e "$venv/.converge-complete" ] || return 0
  rm -rf "$venv"
  quietly python3 -m venv "$venv" && : >"$venv/.converge-complete"
}

apply_flask_app() {
  local venv=$ROOT$APP_DIR/venv
  UNIT_FAILURE="$APP_UNIT does not start or answer"
  ensure_venv "$venv" || return 1
  quietly "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT$APP_DIR/requirements.txt" &&
    quietly systemctl daemon-reload && quietly systemctl enable "$APP_UNIT" &&
    restart_unit "$APP_UNIT" || return 1
  retry_until 30 unit_answers "$APP_UNIT" app_answers || {
    echo "${GAVE_UP:-$APP_UNIT does not answer on 127.0.0.1:$APP_PORT 30 s after its restart}" >&2
    return 1
  }
}

# The traffic generator runs while its unit file is installed; switched off, its files are
# gone (the manifest's rule for a feature's files) and it is stopped and disabled for good.
apply_app_traffic() {
  if [ -f "$ROOT/etc/systemd/system/$TRAFFIC_UNIT" ]; then
    quietly systemctl daemon-reload && quietly systemctl enable "$TRAFFIC_UNIT" &&
      restart_unit "$TRAFFIC_UNIT"
  else
    quietly systemctl stop "$TRAFFIC_UNIT" || true # not running (or never installed) is fine
    rm -f "$ROOT/etc/systemd/system/multi-user.target.wants/$TRAFFIC_UNIT"
    quietly systemctl daemon-reload
  fi
}

cars_answers() { curl -fsS -o /dev/null --max-time $((LEFT < 5 ? LEFT : 5)) "$CARS_URL"; }

# Remote JMX listens on the loopback only: every socket listening on its port is
# 127.0.0.1's (the JVM's local-attach connector on an ephemeral port is another matter:
# it accepts only this host's own connections). JMX_LISTENING: what listens there.
jmx_on_loopback_only() {
  JMX_LISTENING=$(ss -Hltn "sport = :$JAVA_JMX_PORT" | awk '{print $4}')
  [ -n "$JMX_LISTENING" ] && ! grep -qvE '^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]):' <<<"$JMX_LISTENING"
}

# What the Agent's JMXFetch collects from the Tomcat JVM, as `jmx list collected` shows it
# ("Matching: 3/350. Bean name: <bean> - Attribute name: <attribute>  - Attribute type: ...").
# Its exit status is 0 even when it cannot connect: its report must list every bean and
# attribute the monitors and the dashboard read (JMX_COLLECTED: domain:key=value/attribute
# ...). JMX_MISSING: what it did not list.
tomcat_collected() {
  local report expected domain key attribute pattern within_line="[^"$'\n'"]*"
  report=$(exec timeout 120 datadog-agent jmx list collected --checks tomcat 2>&1) || true
  printf '%s\n' "$report"
  JMX_MISSING=()
  for expected in $JMX_COLLECTED; do
    domain=${expected%%:*} key=${expected#*:} key=${key%/*} attribute=${expected##*/}
    # Found on one line of the report, as grep would (no process per bean and try).
    pattern="Matching: [0-9]+/[0-9]+\. Bean name: ${domain//./\\.}:($within_line,)?$key(,$within_line)?"
    pattern+=" - Attribute name: $attribute "
    [[ $report =~ $pattern ]] || JMX_MISSING+=("$expected")
  done
  [ ${#JMX_MISSING[@]} -eq 0 ]
}

tomcat_checked_by_the_agent() {
  retry_until 180 tomcat_collected && return 0
  echo "datadog-agent jmx list collected --checks tomcat does not list ${JMX_MISSING[*]} (its report is in $LOG)" >&2
  return 1
}

# The JVM restarts only when its own files changed. Switched off (its files removed), the
# packaged unit is stopped and disabled; the packages stay.
apply_tomcat() {
  UNIT_FAILURE="$TOMCAT_UNIT does not start, answer, or keep JMX on the loopback"
  quietly systemctl daemon-reload || return 1
  if [ "$JAVA_APP" != on ]; then
    quietly systemctl disable --now "$TOMCAT_UNIT"
    return
  fi
  quietly systemctl enable "$TOMCAT_UNIT" && restart_unit "$TOMCAT_UNIT" || return 1
  retry_until 120 unit_answers "$TOMCAT_UNIT" cars_answers || {
    echo "${GAVE_UP:-the cars app does not answer on $CARS_URL 120 s after $TOMCAT_UNIT restarted}" >&2
    return 1
  }
  quietly systemctl is-active "$TOMCAT_UNIT" || { echo "$TOMCAT_UNIT is not active" >&2 && return 1; }
  retry_until 10 jmx_on_loopback_only || {
    echo "JMX port $JAVA_JMX_PORT: listening on '${JMX_LISTENING//$'\n'/ }', expected 127.0.0.1 only" >&2
    return 1
  }
  # The Agent's tomcat.d changing in this run is checked once the Agent runs on it.
  grep -qsE '^(created|updated|removed) [^ ]*/conf.d/tomcat.d/conf.yaml ' "$WORK/plan.datadog-agent" ||
    tomcat_checked_by_the_agent
}

# Check names of Agent files (checks.d/<name>.py, conf.d/<name>.yaml, conf.d/<name>.d/conf.yaml), one
# path a line. A removed one (a feature switched off) has nothing left to run: `datadog-agent check`
# would fail, "no valid check found".
check_names() {
  local target name
  while read -r target; do
    [ -e "$ROOT$target" ] || continue
    case "$target" in
      */checks.d/*.py) name=${target##*/} && echo "${name%.py}" ;;
      */conf.d/*.d/conf.yaml)
        # A configuration with logs only (no check instances) is no check to run.
        grep -q '^instances:' "$ROOT$target" 2>/dev/null || continue
        name=${target%/conf.yaml} && name=${name##*/} && echo "${name%.d}"
        ;;
      */conf.d/*.yaml) name=${target##*/} && echo "${name%.yaml}" ;;
    esac
  done
}

# The checks to run once: after a new Agent version, every check of the bundle; otherwise
# those whose code or configuration changed since the Agent last ran on its files.
checks_to_run() {
  if [ -n "${AGENT_PACKAGE_CHANGED:-}" ] || [ -s "$STATE/rollback.datadog-agent/package" ]; then
    awk '$1 != "removed" {print $2}' "$WORK/plan.datadog-agent" 2>/dev/null | check_names
  elif [ -f "$STATE/rollback.datadog-agent/changed" ]; then
    check_names <"$STATE/rollback.datadog-agent/changed"
  fi
}

# UNIT_FAILURE says what failed, for the run's last line.
apply_datadog_agent() {
  local report check
  UNIT_FAILURE=
  restart_unit datadog-agent || { UNIT_FAILURE="systemctl restart datadog-agent failed"; return 1; }
  retry_until 60 unit_answers datadog-agent agent_answers || {
    UNIT_FAILURE=${GAVE_UP:-"datadog-agent status still fails 60 s after the restart"}
    echo "$UNIT_FAILURE" >&2
    return 1
  }
  # configcheck exits 0 even when it lists check configurations the Agent could not load.
  report=$(exec datadog-agent configcheck 2>&1) || { UNIT_FAILURE="datadog-agent configcheck failed"; return 1; }
  echo "$report" >>"$LOG"
  if grep -q "=== Configuration .*errors" <<<"$report"; then
    grep -A 20 "=== Configuration .*errors" <<<"$report" >&2
    UNIT_FAILURE="datadog-agent configcheck lists configuration errors"
    return 1
  fi
  # configcheck reads YAML only: a check's own code, and the options it validates when it
  # starts, show when it runs once. The JMX check runs in the Agent's JMXFetch, and shows
  # in what it collects.
  for check in $(checks_to_run | sort -u); do
    if [ "$check" = tomcat ]; then
      tomcat_checked_by_the_agent || { UNIT_FAILURE="the Agent's JMXFetch does not collect what tomcat.d expects"; return 1; }
    else
      quietly datadog-agent check "$check" || { UNIT_FAILURE="datadog-agent check $check failed"; return 1; }
    fi
  done
}

converge_unit() {
  local unit=$1 label="service $1" done=restarted
  case "$unit" in
    mysql-grants) label="grants for datadog@mysql" done=applied ;;
    flask-app) label="service $APP_UNIT" ;;
    app-traffic) label="service $TRAFFIC_UNIT" ;;
    tomcat)
      label="service $TOMCAT_UNIT"
      if [ "$JAVA_APP" != on ]; then done=stopped; fi
      ;;
  esac
  # A marker in $STATE outlives a run killed between writing files and applying them:
  # the next run applies the unit even though its files then look unchanged.
  if [ -n "${PLANNED_CHANGES[$unit]:-}" ]; then : >"$STATE/pending.$unit"; fi
  # A record left without its marker belongs to changes already applied.
  [ -e "$STATE/pending.$unit" ] || forget_record "$unit"
  CURRENT_UNIT=$unit # a failure from here on is this unit's
  write_files "$unit"
  if [ ! -e "$STATE/pending.$unit" ]; then
    say "$label: kept"
  elif "apply_${unit//-/_}"; then
    forget_pending "$unit"
    say "$label: $done"
    APPLIED+=("$unit")
  else
    roll_back "$unit"
  fi
}

# A unit failed its check: its previous files back (and for the Agent, after a new version,
# the previous version installed again and held), applied again, and a message that says
# what failed and what really happened. Always ends the run.
roll_back() {
  local unit=$1 failed=${UNIT_FAILURE:-its check failed} previous='' now
  if [ "$unit" = datadog-agent ]; then previous=$(cat "$STATE/rollback.$unit/package" 2>/dev/null || true); fi
  if [ -n "$previous" ]; then
    now="1:${DD_AGENT_VERSION}-1"
    install_agent "$previous" ||
      fail "datadog-agent $now fails, and installing $previous again failed too: $APT_ERROR; what is left to restore is in $STATE/rollback.$unit ($failed; see $LOG)"
    say "package datadog-agent: $now -> $previous (rolled back)"
    AGENT_PACKAGE_CHANGED=1 # the previous version runs every check again
  fi
  restore_files "$unit" ||
    fail "$unit fails with its new files, and restoring the previous ones failed too; what is left to restore is in $STATE/rollback.$unit ($failed; see $LOG)"
  [ "$RESTORED" -gt 0 ] || [ -n "$previous" ] ||
    fail "$unit fails, and none of its files changed since it last ran: there is nothing to restore ($failed; see $LOG)"
  "apply_${unit//-/_}" ||
    fail "$unit fails with its new files, and with the previous ones restored${previous:+ on version $previous} too ($failed, then ${UNIT_FAILURE:-its check failed}; see $LOG)"
  forget_pending "$unit"
  [ -z "$previous" ] ||
    fail "datadog-agent $now failed its checks; rolled back: $previous is installed again and held, its previous files are back, and it passes its checks on them ($failed; see $LOG)"
  fail "$unit rejected its new files; the previous ones are back and it runs on them ($failed; see $LOG)"
}

# install_agent VERSION: that version installed, and held.
install_agent() {
  apt_retry install --allow-downgrades --allow-change-held-packages "datadog-agent=$1" || return 1
  quietly apt-mark hold datadog-agent || { APT_ERROR="holding it failed"; return 1; }
}

# A larger rootVolumeGiB is an in-place EBS modification: grow the partition and the
# filesystem into it (cloud-init's growpart does the same at every boot). The association
# may run while EC2 still modifies the volume: wait (10 minutes at most) for the disk to
# reach ROOT_VOLUME_GIB first. Only an ext4 partition is grown: a root on LVM, an overlay
# (a container) or another filesystem is left to whoever made it, with one report line.
# disk_has_grown DISK GIB: the disk's size (DISK_BYTES) is at least GIB GiB.
disk_has_grown() {
  DISK_BYTES=$(exec lsblk -b -d -n -o SIZE "$1") && [ "$DISK_BYTES" -ge $(($2 * 1024 * 1024 * 1024)) ]
}

grow_root_filesystem() {
  local source number type device disk partition status=0
  read -r source number type < <(exec findmnt -n -o SOURCE,MAJ:MIN,FSTYPE /) || true
  # sysfs names a partition's disk by its parent directory: .../nvme0n1/nvme0n1p1.
  device=$(exec readlink -f "$ROOT/sys/dev/block/${number:-none}") || true
  if [ ! -f "$device/partition" ] || [ "$type" != ext4 ]; then
    [ ! -f "$device/partition" ] || source="$type on $source"
    say "filesystem /: not grown (${source:-its source} is not a growable ext4 partition)"
    return 0
  fi
  read -r partition <"$device/partition" || true
  disk=${device%/*}
  disk=/dev/${disk##*/}
  retry_until 600 disk_has_grown "$disk" "$ROOT_VOLUME_GIB" || fail "$disk is still smaller than $ROOT_VOLUME_GIB GiB after 10 minutes"
  growpart "$disk" "$partition" >>"$LOG" 2>&1 || status=$?
  case "$status" in
    0)
      quietly resize2fs "/dev/${device##*/}" || fail "resize2fs /dev/${device##*/}"
      say "filesystem /: grown"
      ;;
    1) say "filesystem /: kept" ;; # growpart's NOCHANGE
    *) fail "growpart $disk $partition exited $status (see $LOG)" ;;
  esac
}

# --- The data volume: MySQL's data, outliving the instance -----------------------------------
# The instance's data-volume-id tag names its EBS volume. On a Nitro instance it is an NVMe
# disk whose kernel name (nvme1n1, ...) says nothing and can change between boots; udev
# links it under /dev/disk/by-id/ by its serial, which is the volume id without its dash
# (systemd's rule, with the namespace after _ since systemd 254; amazon-ec2-utils' with -ns-).
# DATA_DEVICE: the disk one of those links points at, once one exists.
data_volume_present() {
  local serial=${DATA_VOLUME_ID/-/} by_id=$ROOT/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_ link
  for link in "$by_id$serial" "${by_id}${serial}_1" "${by_id}${serial}-ns-1"; do
    if [ -e "$link" ]; then
      DATA_DEVICE=$(exec readlink -f "$link")
      return 0
    fi
  done
  echo "no $ROOT/dev/disk/by-id/ link for $DATA_VOLUME_ID yet"
  return 1
}

# blkid's low-level probe of the disk: FS_TYPE (ext4, xfs, ...; "partition table <type>"
# for a partitioned disk) and FS_UUID, both empty when it finds nothing.
probe_data_volume() {
  local probe status=0 line
  FS_TYPE='' FS_UUID=''
  probe=$(exec blkid -p -o export "$DATA_DEVICE" 2>>"$LOG") || status=$?
  [ "$status" = 0 ] || [ "$status" = 2 ] || fail "blkid cannot read $DATA_DEVICE (data volume $DATA_VOLUME_ID; exit $status)"
  while read -r line; do
    case "$line" in
      TYPE=*) FS_TYPE=${line#TYPE=} ;;
      UUID=*) FS_UUID=${line#UUID=} ;;
      PTTYPE=*) FS_TYPE="partition table ${line#PTTYPE=}" ;;
    esac
  done <<<"$probe"
}

# The volume as converge leaves it: an ext4 filesystem (made only on a blank volume: no
# signature blkid knows and nothing but zeros in its first MiB), mounted by UUID at
# DATA_MOUNT, in fstab with nofail (a reboot mounts it again; a host whose volume is gone
# still boots, for SSM), and as large as the volume.
ensure_data_volume() {
  local formatted=
  retry_until "$DATA_VOLUME_WAIT_SECONDS" data_volume_present ||
    fail "data volume $DATA_VOLUME_ID (instance tag $DATA_VOLUME_TAG) did not appear under /dev/disk/by-id/ within $DATA_VOLUME_WAIT_SECONDS s: is it attached to this instance? (aws ec2 describe-volumes --volume-ids $DATA_VOLUME_ID)"
  probe_data_volume
  case "$FS_TYPE" in
    ext4) ;;
    '')
      cmp -s -n 1048576 "$DATA_DEVICE" /dev/zero ||
        fail "data volume $DATA_VOLUME_ID ($DATA_DEVICE) has no filesystem blkid knows, but it is not blank: converge formats only a blank volume; nothing was changed on it"
      quietly mkfs.ext4 -q -L obslab-data "$DATA_DEVICE" </dev/null || fail "mkfs.ext4 $DATA_DEVICE (data volume $DATA_VOLUME_ID)"
      probe_data_volume
      [ "$FS_TYPE" = ext4 ] || fail "mkfs.ext4 left no ext4 filesystem on $DATA_DEVICE"
      formatted=1 # it fills the volume: nothing to grow
      say "data volume $DATA_VOLUME_ID: ext4 filesystem made (it was blank)"
      ;;
    *) fail "data volume $DATA_VOLUME_ID ($DATA_DEVICE) holds $FS_TYPE, not ext4: converge mounts only ext4 and formats only a blank volume; nothing was changed on it" ;;
  esac
  mount_data_volume
  ensure_fstab
  [ -n "$formatted" ] || grow_data_filesystem
}

# What is mounted at a directory, in MOUNTED (findmnt's SOURCE: /dev/nvme1n1, or /dev/nvme1n1[/mysql]
# for a bind mount of its mysql/), empty for nothing.
mounted_at() { MOUNTED=$(exec findmnt -n -o SOURCE --mountpoint "$ROOT$1" 2>/dev/null) || true; }

mount_data_volume() {
  local source
  mounted_at "$DATA_MOUNT"
  source=$MOUNTED
  if [ -z "$source" ]; then
    mkdir -p "$ROOT$DATA_MOUNT"
    quietly mount -t ext4 -o "$DATA_MOUNT_OPTIONS" "UUID=$FS_UUID" "$ROOT$DATA_MOUNT" ||
      fail "mounting data volume $DATA_VOLUME_ID (UUID=$FS_UUID) at $DATA_MOUNT"
    say "filesystem $DATA_MOUNT: mounted (UUID=$FS_UUID, data volume $DATA_VOLUME_ID)"
  elif [ "$(exec readlink -f "$source")" = "$DATA_DEVICE" ]; then
    say "filesystem $DATA_MOUNT: kept"
  else
    fail "$DATA_MOUNT has $source mounted, not data volume $DATA_VOLUME_ID ($DATA_DEVICE)"
  fi
}

# Both mounts in fstab, for the next boot: every other line as it is.
ensure_fstab() {
  local fstab=$ROOT/etc/fstab marker="# observability-lab: the data volume and MySQL's data on it (converge.sh)"
  {
    awk -v a="$DATA_MOUNT" -v b="$MYSQL_DATADIR" -v m="$marker" '$0 != m && $2 != a && $2 != b' "$fstab" 2>/dev/null || true
    echo "$marker"
    echo "UUID=$FS_UUID $DATA_MOUNT ext4 defaults,$DATA_MOUNT_OPTIONS,nofail 0 2"
    echo "$DATA_MOUNT/mysql $MYSQL_DATADIR none bind,nofail,x-systemd.requires-mounts-for=$DATA_MOUNT 0 0"
  } >"$WORK/fstab"
  ensure_system_file "$WORK/fstab" /etc/fstab
}

# A system file converge owns outright (root's, 0644): written when it differs, then systemd
# reads its units again.
ensure_system_file() {
  local target=$2
  if cmp -s "$1" "$ROOT$target"; then return 0; fi
  mkdir -p "$ROOT${target%/*}"
  put_file "$1" "$ROOT$target" root:root 0644 || fail "writing $target: $WRITE_ERROR"
  quietly systemctl daemon-reload || fail "systemctl daemon-reload after writing $target"
  say "system file $target: written"
}

filesystem_bytes() {
  dumpe2fs -h "$DATA_DEVICE" 2>>"$LOG" | awk -F: '/^Block count/ {n=$2} /^Block size/ {s=$2} END {print n * s}'
}

# A larger dataVolumeGiB is an in-place EBS modification: once the disk shows the new size
# (10 minutes at most), the mounted filesystem grows into it (resize2fs, online).
grow_data_filesystem() {
  retry_until 600 disk_has_grown "$DATA_DEVICE" "$DATA_VOLUME_GIB" ||
    fail "data volume $DATA_VOLUME_ID is still smaller than $DATA_VOLUME_GIB GiB after 10 minutes"
  # Within 4 MiB of the disk: full (ext4 ends on a whole block group).
  if [ $(($(filesystem_bytes) + 4194304)) -ge "$DISK_BYTES" ]; then return 0; fi
  quietly resize2fs "$DATA_DEVICE" || fail "resize2fs $DATA_DEVICE (data volume $DATA_VOLUME_ID)"
  say "filesystem $DATA_MOUNT: grown"
}

# MySQL's user, as its package makes it (the package then finds it): on a replaced host its
# number (MYSQL_UID) may differ from the one that owns the data, which is then given to it.
ensure_mysql_user() {
  if ! MYSQL_UID=$(exec id -u mysql 2>/dev/null); then
    quietly groupadd --system mysql || fail "groupadd mysql"
    quietly useradd --system --gid mysql --no-create-home --home-dir /nonexistent --shell /bin/false \
      --comment "MySQL Server" mysql || fail "useradd mysql"
    say "user mysql: created"
    MYSQL_UID=$(exec id -u mysql)
  fi
}

# MySQL's data directory is the volume's mysql/, bound onto /var/lib/mysql: the path the
# package, its maintainer scripts and Ubuntu's AppArmor profile for mysqld all use (AppArmor
# checks the path a file is opened by: the bind mount's), so none of them changes. Not the
# volume's root: its lost+found would make the package's `mysqld --initialize` refuse it.
# Existing data (a replaced host's volume) is used as it is; a host whose MySQL ran on its
# root disk before it had a volume gets that data copied onto the blank volume (the root
# disk's copy stays, under the bind mount). Before MySQL's package is installed, so that it
# initialises (or starts on) the volume's directory, never the root disk's.
ensure_mysql_datadir() {
  local data=$ROOT$DATA_MOUNT/mysql source uid gid changed
  ensure_mysql_user
  mounted_at "$MYSQL_DATADIR"
  source=$MOUNTED
  if [ -n "$source" ] && [[ $source != *"[/mysql]" ]]; then
    # fstab's bind at a boot without the volume's mount unit (its line removed; a container,
    # whose fstab generator skips devices): systemd made the empty source on the root disk. Unbound while MySQL is down (the drop-in kept it down); never
    # under a running MySQL, whose data would then be elsewhere.
    systemctl is-active --quiet mysql &&
      fail "$MYSQL_DATADIR has $source mounted, not the data volume's mysql/ directory, and MySQL runs on it"
    quietly umount "$ROOT$MYSQL_DATADIR" || fail "unmounting $source from $MYSQL_DATADIR"
    say "directory $MYSQL_DATADIR: $source unbound (bound at a boot without the data volume)"
    source=''
  fi
  if [ ! -d "$data" ]; then
    if [ -z "$source" ] && [ -n "$(exec find "$ROOT$MYSQL_DATADIR" -mindepth 1 -maxdepth 1 -print -quit 2>/dev/null)" ]; then
      stop_mysql "its data moves onto the data volume"
      # Copied whole before it gets its name: a run killed half-way copies again.
      mkdir -p "$data.converge-new"
      cp -a "$ROOT$MYSQL_DATADIR/." "$data.converge-new/" || fail "copying $MYSQL_DATADIR onto the data volume"
      mv -T "$data.converge-new" "$data"
      say "directory $DATA_MOUNT/mysql: MySQL's data copied from the root disk (which keeps its copy)"
    else
      install -d -m 0700 -o mysql -g mysql "$data"
      say "directory $DATA_MOUNT/mysql: created"
    fi
  fi
  uid=$MYSQL_UID gid=$(exec id -g mysql)
  changed=$(find "$data" -xdev \( ! -uid "$uid" -o ! -gid "$gid" \) -print -exec chown -h "$uid:$gid" {} + | wc -l)
  [ "$changed" = 0 ] || say "directory $DATA_MOUNT/mysql: $changed files given to this host's mysql user ($uid:$gid)"
  if [ -z "$source" ]; then
    stop_mysql "it ran on the root disk's $MYSQL_DATADIR"
    mkdir -p "$ROOT$MYSQL_DATADIR"
    quietly mount --bind "$data" "$ROOT$MYSQL_DATADIR" || fail "binding $DATA_MOUNT/mysql onto $MYSQL_DATADIR"
    say "directory $MYSQL_DATADIR: the data volume's mysql/ bound onto it"
  fi
  # After a reboot MySQL waits for both mounts, and without them (a volume gone, an fstab
  # line removed) it does not start on the root disk: converge starts it once the volume is
  # back. Both mount points: at a boot without the volume systemd still binds the root disk's
  # directory (it makes a bind's missing source). (Drop-ins of mysql.service also apply to
  # MariaDB's unit, its alias: the booted-host tests show it.)
  printf '%s\n' "# observability-lab (converge.sh): MySQL runs on the data volume or not at all." \
    "[Unit]" "RequiresMountsFor=$DATA_MOUNT $MYSQL_DATADIR" "ConditionPathIsMountPoint=$DATA_MOUNT" \
    "ConditionPathIsMountPoint=$MYSQL_DATADIR" >"$WORK/mysql-data-volume.conf"
  ensure_system_file "$WORK/mysql-data-volume.conf" /etc/systemd/system/mysql.service.d/observability-lab-data-volume.conf
}

stop_mysql() {
  if systemctl is-active --quiet mysql; then
    quietly systemctl stop mysql || fail "stopping mysql"
    say "service mysql: stopped ($1)"
  fi
}

# The Agent collects two logs it does not own (conf.d/flask_app.d, conf.d/mysql.d). The
# journal: as a member of systemd-journal, as Datadog's journald integration says. MySQL's
# error log (mysql:adm 0640 on Ubuntu): a POSIX ACL on its directory only, the default ACL
# too, so the file logrotate makes next inherits it; not the adm group, which reads all of
# /var/log. A new group takes effect when the Agent restarts: this run restarts it.
MYSQL_LOG_DIR=/var/log/mysql
grant_log_access() {
  local dir=$ROOT$MYSQL_LOG_DIR file groups
  groups=$(exec id -nG dd-agent) || groups=
  if [[ " $groups " != *" systemd-journal "* ]]; then
    quietly usermod -aG systemd-journal dd-agent || fail "adding dd-agent to the systemd-journal group"
    : >"$STATE/pending.datadog-agent"
    say "user dd-agent: added to systemd-journal"
  fi
  if [ ! -d "$dir" ]; then
    say "directory $MYSQL_LOG_DIR: not found (MySQL's error log is not collected)"
  elif ! getfacl -p "$dir" 2>/dev/null | grep -qx 'default:user:dd-agent:r--'; then
    quietly setfacl -m u:dd-agent:rx -m d:u:dd-agent:r "$dir" || fail "giving dd-agent read access to $MYSQL_LOG_DIR"
    for file in "$dir"/*.log; do
      [ ! -f "$file" ] || quietly setfacl -m u:dd-agent:r "$file" || fail "giving dd-agent read access to $file"
    done
    say "directory $MYSQL_LOG_DIR: readable by dd-agent"
  fi
}

ensure_mysql_running() {
  if systemctl is-active --quiet mysql; then say "service mysql: kept"; else
    quietly systemctl enable --now mysql || fail "starting mysql"
    say "service mysql: started"
  fi
}

converge_units() {
  local unit
  APPLIED=()
  for unit in "${UNITS[@]}"; do
    # No file of it in the bundle or on the host: a feature never switched on here.
    [ -e "$WORK/plan.$unit" ] || [ -e "$STATE/pending.$unit" ] || continue
    converge_unit "$unit"
  done
  CURRENT_UNIT=''
}

# Where converge keeps its state, and its log: root's only (the state holds backups of
# the MySQL check's conf, with its password; the log, what every command printed).
open_state_and_log() {
  [ -d "${STATE%/*}" ] && [ -d "${LOG%/*}" ] || mkdir -p "${STATE%/*}" "${LOG%/*}"
  (umask 077 && { [ -d "$STATE" ] || mkdir -p "$STATE"; } && : >>"$LOG")
  chmod 0700 "$STATE"
  chmod 0600 "$LOG"
}

# One converge at a time: the first boot's and the association's may overlap. The lock
# is in /run, where only root creates files, and is root's 0600: no other user can open
# it, so none can hold it (a lock in the world-writable /run/lock could be). The wait is
# bounded: then a clear message and a non-zero exit.
take_lock() {
  local mask
  mask=$(umask)
  [ -d "${LOCK%/*}" ] || mkdir -p "${LOCK%/*}"
  umask 077
  exec 9>>"$LOCK"
  umask "$mask"
  { [ -O "$LOCK" ] && chmod 0600 "$LOCK"; } || fail "$LOCK is not root's"
  flock -w "$LOCK_WAIT_SECONDS" 9 ||
    fail "another converge has held $LOCK for $LOCK_WAIT_SECONDS s; this one stops here (run it again once that one is done)"
}

announce() {
  touch "$BUNDLE" # the newest bundles are the ones in use (prune_bundles goes by age)
  local started
  TZ=UTC0 printf -v started '%(%FT%TZ)T' -1
  say "== converge ${DIGEST:0:12} (${CONVERGE_TRIGGER:-association}) $started"
}

# The association may have run a newer bundle before the first boot got here: never go back.
superseded_at_first_boot() {
  [ "${CONVERGE_TRIGGER:-}" = first-boot ] && [ -s "$STATE/applied" ] || return 1
  say "already converged on $(cut -c1-12 "$STATE/applied"); the first-boot bundle is not applied"
}

load_settings() {
  # DD_AGENT_VERSION, APP_USER, APP_DIR, APP_UNIT, APP_PORT, MYSQL_SERVER_PACKAGE, ROOT_VOLUME_GIB, DATA_VOLUME_GIB,
  # JAVA_APP, JAVA_JMX_PORT, JMX_COLLECTED, DD_ENV, DD_SERVICE
  # shellcheck source=/dev/null
  . "$BUNDLE/converge.env"
  BASE_PACKAGES+=("$MYSQL_SERVER_PACKAGE")
}

# This run's scratch space: the files as they must be (the password filled in), and the
# plan per unit. In the state directory, so that one left by a killed run is root's only
# and goes at the next run (which holds the lock: no other run is using it).
make_workspace() {
  WORK=$STATE/work # removed by on_exit
  remove "$WORK"
  mkdir -p "$WORK/desired"
}

record_applied() {
  echo "$DIGEST" >"$STATE/applied"
}

# Keep this bundle and the two before it, newest first, for comparing after a change.
prune_bundles() {
  local old all=("${BUNDLE%/*}"/*) # three or fewer: nothing to prune (tail -n +4 finds none)
  [ ${#all[@]} -le 3 ] || find "${BUNDLE%/*}" -mindepth 1 -maxdepth 1 -type d -regextype egrep -regex '.*/[0-9a-f]{64}' \
    -printf '%T@ %p\n' | sort -rn | tail -n +4 | cut -d' ' -f2- | while read -r old; do
    if [ "$old" != "$BUNDLE" ]; then rm -rf "$old"; fi
  done
  # Left by a delivery killed while it unpacked.
  ! compgen -G "${BUNDLE%/*}/.incoming.*" >/dev/null ||
    find "${BUNDLE%/*}" -mindepth 1 -maxdepth 1 -name '.incoming.*' -mmin +60 -exec rm -rf {} +
}

# The steps, in order. Each is a function above; a failing step ends the run with FAILED.
main() {
  report_failures
  open_state_and_log
  take_lock
  verify_bundle
  announce
  if superseded_at_first_boot; then return 0; fi
  load_settings
  read_instance_tags
  make_workspace
  ensure_data_volume
  ensure_mysql_datadir
  ensure_packages
  ensure_app_user
  ensure_mysql_running
  grant_log_access
  read_host_secrets
  plan_files
  secure_directories
  converge_units
  grow_root_filesystem
  record_applied
  prune_bundles
  say "== converged on ${DIGEST:0:12}; restarted or applied: ${APPLIED[*]:-nothing}"
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
  datagram="_e{${#title},${#text}}:$title|$text${DATADOG_HOSTNAME:+|h:$DATADOG_HOSTNAME}|t:$alert_type"
  if [ ${#tags[@]} -gt 0 ]; then datagram+="|#$(IFS=,; echo "${tags[*]}")"; fi
  { printf '%s\n' "$datagram" >"/dev/udp/${DOGSTATSD%:*}/${DOGSTATSD##*:}"; } 2>/dev/null || true
}

# What this run changed: every report line but those saying something was left as it was.
changes() {
  local line
  for line in "${REPORT[@]}"; do
    case "$line" in
      "== "* | *": kept" | *": unchanged" | *": not grown ("* | *": not found ("*) ;;
      "FAILED: "* | "already converged on "* | "datadog hostname: "* | "data volume: "*) ;;
      *) printf '%s\n' "$line" ;;
    esac
  done
}

# One Datadog event per run that changed something (titled with what it changed, its text
# the change report) or failed (an error naming the unit, or the step, that failed); none for
# a run that changed nothing. Tagged so that the stack's dashboards overlay them.
report_to_datadog() {
  local status=$1 changed title files packages units host=${DATADOG_HOSTNAME:-this host} tags=()
  changed=$(changes)
  [ "$status" -ne 0 ] || [ -n "$changed" ] || return 0
  [ -z "${DD_ENV:-}" ] || tags+=("env:$DD_ENV")
  [ -z "${DD_SERVICE:-}" ] || tags+=("service:$DD_SERVICE")
  [ -z "${DATADOG_HOSTNAME:-}" ] || tags+=("host:$DATADOG_HOSTNAME")
  tags+=(source:observability-lab)
  local text="${changed:+$changed$'\n'}bundle ${DIGEST:-unknown} (${CONVERGE_TRIGGER:-association})"
  if [ "$status" -ne 0 ]; then
    dogstatsd_event error "Converge FAILED on $host: ${FAILED_IN:-converge}" \
      "$(printf '%s\n' "${REPORT[@]}" | grep '^FAILED: ' | tail -n 1)"$'\n'"$text" "${tags[@]}"
    return 0
  fi
  files=$(exec grep -c '^file ' <<<"$changed") || true
  packages=$(exec grep -c '^package ' <<<"$changed") || true
  title="Converge on $host:"
  printf -v units '%s, ' "${APPLIED[@]}"
  [ ${#APPLIED[@]} -eq 0 ] || title+=" ${units%, } restarted or applied;"
  [ "$files" -eq 0 ] || title+=" $files file$([ "$files" -eq 1 ] || echo s) changed;"
  [ "$packages" -eq 0 ] || title+=" $packages package$([ "$packages" -eq 1 ] || echo s) changed;"
  [ "$title" != "Converge on $host:" ] || title+=" ${changed%%$'\n'*};"
  dogstatsd_event info "${title%;}" "$text" "${tags[@]}"
}

# Run when executed; only define the steps when sourced (tests).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
