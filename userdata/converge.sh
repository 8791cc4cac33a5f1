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
# One bundle serves every host of a stack: the one value that differs per host, the
# Agent's hostname, comes from this instance's datadog-hostname tag (instance metadata).
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
# In this order: the Agent's MySQL check needs the grants, its process check the app.
UNITS=(mysql-grants flask-app app-traffic datadog-agent)
TRAFFIC_UNIT=app-traffic.service # the bounded load on the app (appTrafficEnabled)
IMDS=http://169.254.169.254
HOSTNAME_TAG=datadog-hostname
export DEBIAN_FRONTEND=noninteractive
declare -A REMEMBERED=() # unit -> the files its rollback record lists (remember_previous)

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

# apt-get's messages (LC_ALL=C) for what waiting can fix: the dpkg lock held by someone
# else (cloud-init and unattended-upgrades on first boot; dpkg's own words for it too), a
# download that failed.
APT_RETRYABLE='Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock|locked by another process|Failed to fetch|Unable to fetch|Temporary failure resolving|Could not resolve|Could not connect|Connection failed|Connection timed out|Some index files failed to download|Hash Sum mismatch'

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

now() { date +%s; }

# Runs "$@" until it succeeds or $1 seconds have passed, a second apart. The bound is
# for the whole wait: each try finds the seconds left in LEFT, to bound its own wait.
retry_until() {
  local deadline
  deadline=$(($(now) + $1))
  shift
  while LEFT=$((deadline - $(now))) && [ "$LEFT" -gt 0 ]; do
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
  [ "$digest" = "$DIGEST" ] || fail "bundle $BUNDLE: its files hash to $digest, not to its name"
}

ensure_packages() {
  local missing=() package want="1:${DD_AGENT_VERSION}-1" have
  declare -gA INSTALLED=()
  read_installed "${BASE_PACKAGES[@]}" datadog-agent
  for package in "${BASE_PACKAGES[@]}"; do
    if [ -n "${INSTALLED[$package]:-}" ]; then say "package $package: kept"; else missing+=("$package"); fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt_retry update || fail "apt-get update: $APT_ERROR"
    apt_retry install --no-install-recommends "${missing[@]}" || fail "installing ${missing[*]}: $APT_ERROR"
    for package in "${missing[@]}"; do say "package $package: installed"; done
  fi
  # The Agent at exactly DD_AGENT_VERSION, held: an upgrade or a downgrade happens in place.
  have=${INSTALLED[datadog-agent]:-}
  if [ "$have" = "$want" ]; then
    say "package datadog-agent $want: kept"
    return 0
  fi
  if [ ! -s "$ROOT$KEYRING" ]; then
    local key tmp=$WORK/keyring
    mkdir -m 0700 "$tmp"
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
  fi
  mkdir -p "$ROOT/etc/apt/sources.list.d"
  echo "deb [signed-by=$KEYRING] https://apt.datadoghq.com/ stable 7" >"$WORK/datadog.list"
  put_file "$WORK/datadog.list" "$ROOT/etc/apt/sources.list.d/datadog.list" root:root 0644 ||
    fail "writing /etc/apt/sources.list.d/datadog.list: $WRITE_ERROR"
  apt_retry update || fail "apt-get update: $APT_ERROR"
  : >"$STATE/pending.datadog-agent" # restart it even if this run dies after the install
  apt_retry install --allow-downgrades --allow-change-held-packages "datadog-agent=$want" ||
    fail "installing datadog-agent=$want: $APT_ERROR"
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
    # The token as a header file (printf is bash's own), not on curl's command line.
    DATADOG_HOSTNAME=$(curl -fsS --max-time 5 --retry 3 -H @<(printf 'X-aws-ec2-metadata-token: %s\n' "$token") \
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
# and what to do with it. Whatever is not a regular file at a target (a link) is
# replaced, never followed.
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
      if [ -L "$ROOT$target" ] || { [ -e "$ROOT$target" ] && [ ! -f "$ROOT$target" ]; }; then
        action=updated
      elif [ ! -e "$ROOT$target" ]; then
        action=created
      else
        slurp installed "$ROOT$target"
        if [ "$content" = "$installed" ]; then action=unchanged; else action=updated; fi
      fi
    elif [ -e "$ROOT$target" ] || [ -L "$ROOT$target" ]; then
      action=removed # a feature switched off
    else continue; fi
    echo "$action $target $owner $mode $desired" >>"$WORK/plan.$unit"
  done <"$BUNDLE/manifest"
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
  else
    rm -f "$record/backup$target" || return 1
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
  done < <(cat "$WORK"/plan.* 2>/dev/null || true)
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
    read -r uid mode < <(stat -c '%u %a' "$directory")
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
  if WRITE_ERROR=$({ install -o "${3%%:*}" -g "${3#*:}" -m "$4" "$1" "$new" && mv -fT "$new" "$2"; } 2>&1); then
    return 0
  fi
  rm -f "$new"
  return 1
}

# Writes one unit's changed files, each remembered first for restore_files, and reports
# each once it is done.
write_files() {
  local unit=$1 action target owner mode desired
  while read -r action target owner mode desired; do
    if [ "$action" != unchanged ]; then
      remember_previous "$unit" "$target" || fail "keeping the previous $target for a rollback"
      if [ "$action" = removed ]; then
        WRITE_ERROR=$(rm -f "$ROOT$target" 2>&1) || write_failed "$unit" "removing $target"
      else
        put_file "$desired" "$ROOT$target" "$owner" "$mode" || write_failed "$unit" "writing $target"
      fi
    fi
    say "file $target: $action"
  done < <(cat "$WORK/plan.$unit" 2>/dev/null || true)
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
        mv -fT "$ROOT$target.converge-new" "$ROOT$target"; } 2>&1); then
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
forget_record() {
  rm -rf "$STATE/rollback.$1"
  unset 'REMEMBERED[$1]'
}

# What applying each unit means, and how it is checked.
# The grants as installed (after a rollback, the previous ones).
apply_mysql_grants() {
  local sql=$STATE/mysql/datadog_user.sql statements
  [ -f "$sql" ] || return 1
  slurp statements "$sql"
  # printf is bash's own: the password is on no command line (process collection sees those).
  printf '%s' "${statements//@@DATADOG_MYSQL_PASSWORD@@/$MYSQL_PASSWORD}" | quietly mysql --user=root
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
  ensure_venv "$venv" || return 1
  quietly "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT$APP_DIR/requirements.txt" &&
    quietly systemctl daemon-reload && quietly systemctl enable "$APP_UNIT" &&
    quietly systemctl restart "$APP_UNIT" || return 1
  retry_until 30 app_answers || {
    echo "$APP_UNIT does not answer on 127.0.0.1:$APP_PORT 30 s after its restart" >&2
    return 1
  }
}

# The traffic generator runs while its unit file is installed; switched off, its files are
# gone (the manifest's rule for a feature's files) and it is stopped and disabled for good.
apply_app_traffic() {
  if [ -f "$ROOT/etc/systemd/system/$TRAFFIC_UNIT" ]; then
    quietly systemctl daemon-reload && quietly systemctl enable "$TRAFFIC_UNIT" &&
      quietly systemctl restart "$TRAFFIC_UNIT"
  else
    quietly systemctl stop "$TRAFFIC_UNIT" || true # not running (or never installed) is fine
    rm -f "$ROOT/etc/systemd/system/multi-user.target.wants/$TRAFFIC_UNIT"
    quietly systemctl daemon-reload
  fi
}

# The checks whose code or configuration changed since the Agent last ran on its files
# (checks.d/<name>.py, conf.d/<name>.yaml, conf.d/<name>.d/conf.yaml). A removed one (a feature
# switched off) has nothing left to run: `datadog-agent check` would fail, "no valid check found".
changed_checks() {
  local target name
  [ -f "$STATE/rollback.datadog-agent/changed" ] || return 0
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
  done <"$STATE/rollback.datadog-agent/changed"
}

apply_datadog_agent() {
  local report check
  quietly systemctl restart datadog-agent || return 1
  retry_until 60 agent_answers || {
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
    app-traffic) label="service $TRAFFIC_UNIT" ;;
  esac
  # A marker in $STATE outlives a run killed between writing files and applying them:
  # the next run applies the unit even though its files then look unchanged.
  if grep -qv '^unchanged ' "$WORK/plan.$unit" 2>/dev/null; then : >"$STATE/pending.$unit"; fi
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

# A unit failed its check: its previous files back, applied again, and a message that
# says what really happened. Always ends the run.
roll_back() {
  local unit=$1
  restore_files "$unit" ||
    fail "$unit fails with its new files, and restoring the previous ones failed too; what is left to restore is in $STATE/rollback.$unit (see $LOG)"
  [ "$RESTORED" -gt 0 ] ||
    fail "$unit fails, and none of its files changed since it last ran: there is nothing to restore (see $LOG)"
  "apply_${unit//-/_}" || fail "$unit fails with its new files, and with the previous ones restored (see $LOG)"
  forget_pending "$unit"
  fail "$unit rejected its new files; the previous ones are back and it runs on them (see $LOG)"
}

# A larger rootVolumeGiB is an in-place EBS modification: grow the partition and the
# filesystem into it (cloud-init's growpart does the same at every boot). The association
# may run while EC2 still modifies the volume: wait (10 minutes at most) for the disk to
# reach ROOT_VOLUME_GIB first. Only an ext4 partition is grown: a root on LVM, an overlay
# (a container) or another filesystem is left to whoever made it, with one report line.
disk_has_grown() {
  [ "$(lsblk -b -d -n -o SIZE "$1")" -ge $((ROOT_VOLUME_GIB * 1024 * 1024 * 1024)) ]
}

grow_root_filesystem() {
  local source number type device disk partition status=0
  read -r source number type < <(findmnt -n -o SOURCE,MAJ:MIN,FSTYPE /) || true
  # sysfs names a partition's disk by its parent directory: .../nvme0n1/nvme0n1p1.
  device=$(readlink -f "$ROOT/sys/dev/block/${number:-none}" || true)
  if [ ! -f "$device/partition" ] || [ "$type" != ext4 ]; then
    [ ! -f "$device/partition" ] || source="$type on $source"
    say "filesystem /: not grown (${source:-its source} is not a growable ext4 partition)"
    return 0
  fi
  partition=$(cat "$device/partition")
  disk=${device%/*}
  disk=/dev/${disk##*/}
  retry_until 600 disk_has_grown "$disk" || fail "$disk is still smaller than $ROOT_VOLUME_GIB GiB after 10 minutes"
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

# The Agent collects two logs it does not own (conf.d/flask_app.d, conf.d/mysql.d). The
# journal: as a member of systemd-journal, as Datadog's journald integration says. MySQL's
# error log (mysql:adm 0640 on Ubuntu): a POSIX ACL on its directory only, the default ACL
# too, so the file logrotate makes next inherits it; not the adm group, which reads all of
# /var/log. A new group takes effect when the Agent restarts: this run restarts it.
MYSQL_LOG_DIR=/var/log/mysql
grant_log_access() {
  local dir=$ROOT$MYSQL_LOG_DIR file
  if ! id -nG dd-agent | tr ' ' '\n' | grep -qx systemd-journal; then
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
  for unit in "${UNITS[@]}"; do converge_unit "$unit"; done
  CURRENT_UNIT=''
}

# Where converge keeps its state, and its log: root's only (the state holds backups of
# the MySQL check's conf, with its password; the log, what every command printed).
open_state_and_log() {
  mkdir -p "${STATE%/*}" "${LOG%/*}"
  (umask 077 && mkdir -p "$STATE" && : >>"$LOG")
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
  mkdir -p "${LOCK%/*}"
  umask 077
  exec 9>>"$LOCK"
  umask "$mask"
  { [ -O "$LOCK" ] && chmod 0600 "$LOCK"; } || fail "$LOCK is not root's"
  flock -w "$LOCK_WAIT_SECONDS" 9 ||
    fail "another converge has held $LOCK for $LOCK_WAIT_SECONDS s; this one stops here (run it again once that one is done)"
}

announce() {
  touch "$BUNDLE" # the newest bundles are the ones in use (prune_bundles goes by age)
  say "== converge ${DIGEST:0:12} (${CONVERGE_TRIGGER:-association}) $(date -u +%FT%TZ)"
}

# The association may have run a newer bundle before the first boot got here: never go back.
superseded_at_first_boot() {
  [ "${CONVERGE_TRIGGER:-}" = first-boot ] && [ -s "$STATE/applied" ] || return 1
  say "already converged on $(cut -c1-12 "$STATE/applied"); the first-boot bundle is not applied"
}

load_settings() {
  # shellcheck source=/dev/null
  . "$BUNDLE/converge.env" # DD_AGENT_VERSION, APP_USER, APP_DIR, APP_UNIT, APP_PORT, MYSQL_SERVER_PACKAGE, DD_ENV, DD_SERVICE, ROOT_VOLUME_GIB
  BASE_PACKAGES+=("$MYSQL_SERVER_PACKAGE")
}

# This run's scratch space: the files as they must be (the password filled in), and the
# plan per unit. In the state directory, so that one left by a killed run is root's only
# and goes at the next run (which holds the lock: no other run is using it).
make_workspace() {
  WORK=$STATE/work # removed by on_exit
  rm -rf "$WORK"
  mkdir -p "$WORK/desired"
}

record_applied() {
  echo "$DIGEST" >"$STATE/applied"
}

# Keep this bundle and the two before it, newest first, for comparing after a change.
prune_bundles() {
  local old
  find "${BUNDLE%/*}" -mindepth 1 -maxdepth 1 -type d -regextype egrep -regex '.*/[0-9a-f]{64}' \
    -printf '%T@ %p\n' | sort -rn | tail -n +4 | cut -d' ' -f2- | while read -r old; do
    if [ "$old" != "$BUNDLE" ]; then rm -rf "$old"; fi
  done
  # Left by a delivery killed while it unpacked.
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
  read_datadog_hostname
  make_workspace
  ensure_packages
  ensure_app_user
  ensure_mysql_running
  grant_log_access
  read_mysql_password
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
      "FAILED: "* | "already converged on "* | "datadog hostname: "*) ;;
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
  files=$(grep -c '^file ' <<<"$changed" || true)
  packages=$(grep -c '^package ' <<<"$changed" || true)
  title="Converge on $host:"
  units=$(printf '%s, ' "${APPLIED[@]}")
  [ ${#APPLIED[@]} -eq 0 ] || title+=" ${units%, } restarted or applied;"
  [ "$files" -eq 0 ] || title+=" $files file$([ "$files" -eq 1 ] || echo s) changed;"
  [ "$packages" -eq 0 ] || title+=" $packages package$([ "$packages" -eq 1 ] || echo s) changed;"
  [ "$title" != "Converge on $host:" ] || title+=" $(head -n 1 <<<"$changed");"
  dogstatsd_event info "${title%;}" "$text" "${tags[@]}"
}

# Run when executed; only define the steps when sourced (tests).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
