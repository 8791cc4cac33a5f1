"""Runs userdata/converge.sh for real, with bash, in a scratch root.

Every host path of the script is under CONVERGE_ROOT. The commands that would change the
machine or need a real host (apt-get, dpkg-query, apt-mark, systemctl, mysql,
datadog-agent, dpkg, useradd, groupadd, id, python3's venv, curl, growpart, resize2fs, findmnt,
lsblk, blkid, mkfs.ext4, mount, dumpe2fs, sleep, date +%s) are small executables first on PATH
that record each call in `calls` and act out the part of their behaviour the script depends
on, from state files the tests can set: installed packages, active services, a failing Agent
config check, the disks' sizes, the instance's tags in instance metadata, what is mounted.
The data volume is a small file of zeros under the root's /dev (its size as EC2 shows it is
the file size.<disk>), linked from /dev/disk/by-id/ as udev links an NVMe EBS volume; a
filesystem on it is a `TYPE=`/`UUID=` header that blkid reads. Everything else (gpg, sha256sum, install,
chown, flock, tar, base64, openssl) is the real tool; curl's downloads of Datadog's apt
keys get a real public key made for the tests. The host's users do not exist here:
install and chown get the numbers HOST_USERS gives their names (spare ones of this
machine), so owners on disk are real. Tests run as root (as CI does).
"""

from __future__ import annotations

import functools
import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rendering.bundle import JMX_COLLECTED, Bundle
from tests.support.dogstatsd_events import Event, Listener, parse_event

# What the instance metadata of a test host says by default (Host.set() changes it).
IMDS_TOKEN = "imds-session-token-for-tests"
DEFAULT_DATADOG_HOSTNAME = "observability-lab-dev-1"

# Each recorder first records its call. kill_run kills the whole converge run, as SSM's
# timeout or a reboot would: its session (Host.run starts one), and this recorder's own
# process group (`timeout` makes one of its own; procps kill: dash's takes no `--`).
# LAST is the last argument.
# Every command line also goes to `argv`, with those of the real tools (see PASS_THROUGH).
# A recorder's own tools are the machine's (PATH reset): they are not converge's commands.
# Recorders and wrappers are plain sh: dash starts in about half bash's time, and a converge
# runs hundreds of them (a wait loop several a second). printf, not dash's echo, which would
# expand a command line's backslashes (dpkg-query's -f format).
_ARGV = 'printf "%s\\n" "${0##*/} $*" >>"$FAKE/argv"\n'
_OWN_TOOLS = _ARGV + "PATH=/usr/bin:/bin\n"
_RECORD = _OWN_TOOLS + r'''printf "%s\n" "${0##*/} $*" >>"$FAKE/calls"
kill_run() { /usr/bin/kill -KILL -- "-$(ps -o sid= -p $$ | tr -d ' ')" 0; }
[ $# -eq 0 ] || eval "LAST=\${$#}"
'''

# name -> body run after recording the call ($FAKE is the recorders' state directory).
RECORDERS = {
    "apt-get": r'''
case " $* " in *" install "*)
  # dpkg-interrupted: a run killed while dpkg unpacked or configured, as apt sees it.
  if [ -e "$FAKE/dpkg-interrupted" ]; then
    echo "E: dpkg was interrupted, you must manually run 'dpkg --configure -a' to correct the problem."
    exit 100
  fi
  # fail.apt-get-install: an install fails with the file's content as apt's output.
  if [ -e "$FAKE/fail.apt-get-install" ]; then cat "$FAKE/fail.apt-get-install"; exit 100; fi ;;
# warn.apt-get-update: an update that prints the file's content (apt's warnings) and exits 0;
# warn.apt-get-update.once: the same, for the next update only.
*" update "*)
  if [ -e "$FAKE/warn.apt-get-update" ]; then cat "$FAKE/warn.apt-get-update"; exit 0; fi
  if [ -e "$FAKE/warn.apt-get-update.once" ]; then cat "$FAKE/warn.apt-get-update.once"; rm "$FAKE/warn.apt-get-update.once"; exit 0; fi ;;
esac
installing=0
for arg in "$@"; do
  if [ "$arg" = install ]; then installing=1; continue; fi
  [ "$installing" = 1 ] || continue
  case "$arg" in
    -*) ;;
    *=*) sed -i "/^${arg%%=*} /d" "$FAKE/dpkg"; echo "${arg%%=*} ${arg#*=}" >>"$FAKE/dpkg" ;;
    *) echo "$arg 1.0" >>"$FAKE/dpkg" ;;
  esac
done''',
    "dpkg-query": r'''
status=0
for package in "$@"; do
  case "$package" in -*) continue ;; esac
  found= version=  # the package's last line, as apt-get appends them
  while read -r name line; do [ "$name" != "$package" ] || found=1 version=$line; done <"$FAKE/dpkg"
  [ -n "$found" ] || { status=1; continue; }
  echo "$package installed $version"
done
exit "$status"''',
    "apt-mark": "",
    "dpkg": 'case " $* " in *" --configure -a "*) rm -f "$FAKE/dpkg-interrupted" ;; esac',
    "systemctl": r'''
# A run killed mid-way (SSM timeout, reboot): the restart never happens, nor anything after.
if [ "$1" = restart ] && [ -e "$FAKE/kill-at-restart.$2" ]; then kill_run; fi
# term-at-restart.<unit>: converge is asked to stop (SIGTERM) while it restarts the unit.
if [ "$1" = restart ] && [ -e "$FAKE/term-at-restart.$2" ]; then kill -TERM "$PPID"; fi
# start-limit-hit.<unit>: the unit crash-looped past its StartLimitBurst; systemd refuses
# every start until its interval ends or `reset-failed` clears the count.
if [ "$1" = restart ] && [ -e "$FAKE/start-limit-hit.$2" ]; then
  echo "Job for $2 failed because start of the service was attempted too often." >&2; exit 1
fi
case "$1" in
  # reset-failed PATTERN (converge passes `<unit>*`, for the units bound to it too).
  reset-failed) for hit in "$FAKE"/start-limit-hit.$2; do [ ! -e "$hit" ] || rm -f "$hit"; done ;;
  is-active) [ -e "$FAKE/active.$LAST" ] ;;
  # Failed for good: it died at its start (no Restart=), or looped into its start limit.
  is-failed) [ -e "$FAKE/start-limit-hit.$LAST" ] || { [ -e "$FAKE/dies-at-start.$LAST" ] && [ ! -e "$FAKE/active.$LAST" ]; } ;;
  stop) [ ! -e "$FAKE/active.$LAST" ] || rm -f "$FAKE/active.$LAST" ;;
  enable) [ "$2" != --now ] || : >"$FAKE/active.$LAST" ;;
  # A unit restarted is active, one stopped is not (dies-at-start.<unit>: it exits at once).
  restart) if [ -e "$FAKE/dies-at-start.$2" ]; then rm -f "$FAKE/active.$2"; else : >"$FAKE/active.$2"; fi
    # The Agent exits at once on a datadog.yaml it cannot start on, and Restart=on-failure
    # loops it into its start limit (StartLimitBurst=5 in 10 s) well within converge's wait.
    if [ "$2" = datadog-agent ] && contains AGENT_WONT_START "$CONVERGE_ROOT/etc/datadog-agent/datadog.yaml"; then
      : >"$FAKE/start-limit-hit.$2"
    fi ;;
  disable) [ "$2" != --now ] || [ ! -e "$FAKE/active.$LAST" ] || rm -f "$FAKE/active.$LAST" ;;
esac''',
    # fail.mysql: mysql refuses the statements, quoting them as it does ("near '...'").
    "mysql": r'''
cat >>"$FAKE/mysql.sql"
if [ -e "$FAKE/fail.mysql" ]; then
  echo "ERROR 1064 (42000) at line 1: You have an error in your SQL syntax; check the manual for the right syntax to use near '$(grep -m 1 "IDENTIFIED BY" "$FAKE/mysql.sql")' at line 1"
  exit 1
fi''',
    "datadog-agent": r'''
# kill-at-<command>: the run is killed while the Agent runs it.
[ ! -e "$FAKE/kill-at-$1" ] || kill_run
case "$1" in
  # The Agent does not come up on a datadog.yaml that says AGENT_WONT_START.
  status) [ ! -e "$FAKE/fail.agent-status" ] && ! contains AGENT_WONT_START "$CONVERGE_ROOT/etc/datadog-agent/datadog.yaml" ;;
  # Running a check once fails when its code or configuration says so, or on every check
  # when the installed version is the one fail.agent-version names (a broken release).
  check)
    installed= broken=
    while read -r name version rest; do [ "$name" != datadog-agent ] || installed=$version; done <"$FAKE/dpkg"
    [ ! -e "$FAKE/fail.agent-version" ] || read -r broken <"$FAKE/fail.agent-version" || true
    [ "$broken" != "$installed" ] && ! grep -rqs CHECK_FAILS "$CONVERGE_ROOT/etc/datadog-agent" ;;
  # What JMXFetch collects, in its report's format (its exit status is 0 whatever it finds):
  # jmx.collected if set; else, when tomcat.d's port and password are the JVM's (its
  # drop-in's port, its password file's), jmx.report (every bean and attribute converge
  # expects, jmx_report()); else a connection it cannot make, as with fail.jmx.
  jmx)
    if [ -e "$FAKE/jmx.collected" ]; then exec cat "$FAKE/jmx.collected"; fi
    conf=$CONVERGE_ROOT/etc/datadog-agent/conf.d/tomcat.d/conf.yaml
    port=$(sed -n 's/^ *port: //p' "$conf" 2>/dev/null)
    password=$(sed -n 's/^ *password: "\(.*\)"$/\1/p' "$conf" 2>/dev/null)
    if [ -e "$FAKE/fail.jmx" ] || ! grep -qs "jmxremote.port=$port " "$CONVERGE_ROOT"/etc/systemd/system/tomcat10.service.d/*.conf ||
      ! grep -qsx "monitorRole $password" "$CONVERGE_ROOT/etc/tomcat10/jmxremote.password"; then
      echo "Cannot connect to instance cars-tomcat (127.0.0.1:$port): java.lang.SecurityException: Authentication failed!"
    else
      exec cat "$FAKE/jmx.report"
    fi ;;
  configcheck)
    # Like the real Agent: config errors are listed, and the exit status is still 0.
    if grep -rqs BROKEN "$CONVERGE_ROOT/etc/datadog-agent"; then
      printf '=== Configuration errors ===\n\ncustom_my_metric: Configuration error: BROKEN\n'
    fi
    echo "=== custom_my_metric check ===" ;;
esac''',
    # Listening sockets on the port of `sport = :PORT`, as the JVM binds them: on the
    # drop-in's jmxremote.host (every address without one) when the drop-in names that port.
    "ss": r'''
port=${LAST##*:}
opts=$(cat "$CONVERGE_ROOT"/etc/systemd/system/tomcat10.service.d/*.conf 2>/dev/null)
case "$opts" in *"jmxremote.port=$port "*) ;; *) exit 0 ;; esac
address=$(printf '%s\n' "$opts" | sed -n 's/.*jmxremote\.host=\([^ "]*\).*/\1/p')
case "$address" in 127.0.0.1) address="[::ffff:127.0.0.1]" ;; "" | 0.0.0.0) address="*" ;; esac
echo "LISTEN 0      50     $address:$port      *:*"''',
    # getent passwd|group NAME...: the test host's number for each name it has (`passwd`).
    "getent": r'''
shift
for name in "$@"; do owner_id "$name"; [ "$OWNER_ID" = "$name" ] || echo "$name:x:$OWNER_ID:$OWNER_ID::/:/bin/sh"; done''',
    "useradd": 'echo "$LAST" >>"$FAKE/users"',
    "groupadd": 'echo "$LAST" >>"$FAKE/groups"',
    # id -nG USER: its groups (usermod -aG); id -u/-g NAME: the test host's number for a user converge
    # created (useradd); else whether it exists.
    "id": r'''
if [ "$1" = -nG ]; then  # one line, a space between each name (as id prints them)
  groups=
  [ ! -e "$FAKE/groups.$2" ] || while read -r group; do groups="$groups $group"; done <"$FAKE/groups.$2"
  echo "$2${groups:- }"; exit 0
fi
created=
[ ! -e "$FAKE/users" ] || while read -r user; do [ "$user" != "$LAST" ] || created=1; done <"$FAKE/users"
[ -n "$created" ] || exit 1
case "$1" in -u | -g) owner_id "$LAST" && echo "$OWNER_ID" ;; esac''',
    # usermod -aG <group> <user>; setfacl/getfacl keep a directory's ACL entries in $FAKE/acl.<name>.
    "usermod": '[ "$1" != -aG ] || echo "$2" >>"$FAKE/groups.$3"',
    "setfacl": r'''
target=$LAST
while [ $# -gt 1 ]; do [ "$1" != -m ] || echo "$2" >>"$FAKE/acl.${target##*/}"; shift; done''',
    "getfacl": r'''
target=$LAST
sed -e 's/^d:u:\(.*\):r$/default:user:\1:r--/' -e 's/^u:\(.*\):rx$/user:\1:r-x/' "$FAKE/acl.${target##*/}" 2>/dev/null || true''',
    # The real chown, on the test host's numbers for the owner's names (the arguments
    # rebuilt in place: each taken from the front, put back at the end).
    "chown": r'''
spec= count=$#
while [ "$count" -gt 0 ]; do
  arg=$1 && shift && count=$((count - 1))
  if [ -z "$spec" ]; then
    case "$arg" in
      -*) ;;
      *) spec=$arg && owner_id "${arg%%:*}" && arg=$OWNER_ID
        case "$spec" in *:*) owner_id "${spec#*:}" && arg="$arg:$OWNER_ID" ;; esac ;;
    esac
  fi
  set -- "$@" "$arg"
done
exec chown "$@"''',
    "python3": r'''
[ "$1 $2" = "-m venv" ] || exit 2
mkdir -p "$3/bin"
printf '#!/bin/sh\n' >"$3/bin/python"
# kill-in-venv: the run is killed after python is in the venv and before pip is.
if [ -e "$FAKE/kill-in-venv" ]; then chmod +x "$3/bin/python"; kill_run; fi
printf '#!/bin/sh\necho "pip $*" >>"$FAKE/calls"\necho "pip $*" >>"$FAKE/argv"\n' >"$3/bin/pip"
chmod +x "$3/bin/python" "$3/bin/pip"''',
    "curl": r'''
# Instance metadata (IMDSv2): a session token for a PUT, then the instance's tags
# (imds.<tag>, e.g. imds.datadog-hostname; a 404 without it) for that token only.
case "$*" in
  *"-X PUT"*"X-aws-ec2-metadata-token-ttl-seconds: "*" http://169.254.169.254/latest/api/token")
    printf %s "$IMDS_TOKEN"; exit 0 ;;
  *" http://169.254.169.254/latest/meta-data/tags/instance/"*)
    # The token in a header file (-H @file), as converge passes it.
    header=
    while [ $# -gt 0 ]; do
      if [ "$1" = -H ]; then case "$2" in @*)
        while IFS= read -r line || [ -n "$line" ]; do header="$header${header:+
}$line"; done <"${2#@}" ;;
      esac; fi; shift
    done
    [ "$header" = "X-aws-ec2-metadata-token: $IMDS_TOKEN" ] || exit 22  # 401
    tag=${LAST##*/}
    [ -e "$FAKE/imds.$tag" ] || exit 22  # 404
    exec cat "$FAKE/imds.$tag" ;;
  *169.254.169.254*) exit 22 ;;
esac
# fail.curl: no answer; with hang.curl, only after curl's own --max-time (on the clock).
if [ -e "$FAKE/fail.curl" ]; then
  if [ -e "$FAKE/hang.curl" ]; then
    while [ $# -gt 0 ] && [ "$1" != --max-time ]; do shift; done
    read -r now <"$FAKE/clock" && echo $((now + ${2:-300})) >"$FAKE/clock"
    exit 28
  fi
  exit 7
fi
while [ $# -gt 0 ]; do if [ "$1" = -o ] && [ "$2" != /dev/null ]; then cp "$FAKE/apt-key.asc" "$2"; fi; shift; done''',
    # What is mounted at a directory (mounts: "source target" lines, as mount records them);
    # otherwise the root filesystem: its source, device number and type (root.mount; a partition).
    "findmnt": r'''
if [ $# -ge 2 ] && eval "[ \"\${$(($# - 1))}\" = --mountpoint ]"; then
  found=
  [ ! -e "$FAKE/mounts" ] || while read -r source target rest; do
    [ "$target" != "$LAST" ] || { echo "$source"; found=1; }
  done <"$FAKE/mounts"
  [ -n "$found" ]; exit
fi
[ ! -e "$FAKE/root.mount" ] || exec cat "$FAKE/root.mount"
echo "/dev/nvme0n1p1 259:1 ext4"''',
    # A filesystem on a disk file: the TYPE=/UUID= header mkfs.ext4 writes (exit 2: none).
    "blkid": r'''
header=$(head -c 512 "$LAST" | tr -d '\0' | grep -a -E '^(TYPE|UUID|PTTYPE)=') || exit 2
echo "DEVNAME=$LAST"; echo "$header"''',
    "mkfs.ext4": r'''
[ ! -e "$FAKE/fail.mkfs" ] || exit 1
printf 'TYPE=ext4\nUUID=%s\n' "${FS_UUID_FOR_TESTS:-0f3c5e2a-6b1d-4c8e-9a7f-2d4b6c8e0a13}" |
  dd of="$LAST" conv=notrunc status=none''',
    # mount -t ext4 -o OPTS UUID=u DIR: the disk file with that UUID; mount --bind DIR DIR2:
    # the disk and the path inside it, as findmnt shows a bind mount ("/dev/x[/path]").
    "mount": r'''
[ ! -e "$FAKE/fail.mount" ] || exit 32
target=$LAST && eval "source=\${$(($# - 1))}"
if [ "$1" = --bind ]; then
  # The first mount the source is under: its device, and where it is mounted.
  bound=$(awk -v s="$source" 'index(s, $2 "/") == 1 {print $1, $2; exit}' "$FAKE/mounts")
  device=${bound%% *} mountpoint=${bound#* }
  source="$device[${source#"$mountpoint"}]"
else
  for disk in "$CONVERGE_ROOT"/dev/*; do
    [ -f "$disk" ] && head -c 512 "$disk" | tr -d '\0' | grep -aqx "UUID=${source#UUID=}" && source=$disk && break
  done
fi
echo "$source $target" >>"$FAKE/mounts"''',
    "umount": r'''
[ ! -e "$FAKE/fail.umount" ] || exit 32
awk -v t="$LAST" '$2 != t' "$FAKE/mounts" >"$FAKE/mounts.new" && mv "$FAKE/mounts.new" "$FAKE/mounts"''',
    # The filesystem's size (fs.<disk>, bytes; the whole disk, size.<disk>, by default), in 4 KiB blocks.
    "dumpe2fs": r'''
disk=$LAST
if [ -e "$FAKE/fs.${disk##*/}" ]; then size=$FAKE/fs.${disk##*/}; else size=$FAKE/size.${disk##*/}; fi
read -r bytes <"$size" || true
printf 'Block count:              %s\nBlock size:               4096\n' $((bytes / 4096))''',
    # The disk's size: the first line of disk.gib, dropped once read while more lines follow;
    # for a disk file of the root's /dev, size.<disk> (the file is small).
    "lsblk": r'''
case "$*" in
  *SIZE*" $CONVERGE_ROOT/dev/"*) disk=$LAST && exec cat "$FAKE/size.${disk##*/}" ;;
  *SIZE*)
    gib=1024
    if [ -e "$FAKE/disk.gib" ]; then
      gib=$(head -n 1 "$FAKE/disk.gib")
      if [ "$(wc -l <"$FAKE/disk.gib")" -gt 1 ]; then sed -i 1d "$FAKE/disk.gib"; fi
    fi
    echo $((gib * 1024 * 1024 * 1024)) ;;
  *) echo nvme0n1 ;;
esac''',
    "growpart": 'status=1\n[ ! -e "$FAKE/growpart.status" ] || read -r status <"$FAKE/growpart.status" || true\nexit "$status"',
    # resize2fs DISK of the root's /dev: its filesystem now fills it.
    "resize2fs": r'''
case "$LAST" in "$CONVERGE_ROOT"/dev/*) rm -f "$FAKE/fs.${1##*/}" ;; esac''',
    "sleep": 'read -r now <"$FAKE/clock" && echo $((now + $1)) >"$FAKE/clock"',
}

# contains TEXT FILE: a line of FILE has TEXT in it (grep -qsF TEXT FILE, without a process).
_CONTAINS = r'''contains() {
  [ -r "$2" ] || return 1
  while IFS= read -r line || [ -n "$line" ]; do case "$line" in *"$1"*) return 0 ;; esac; done <"$2"
  return 1
}
'''

# A user or group name -> the test host's number for it, in OWNER_ID (no subshell per call;
# `passwd`: "name number" lines): the host's users (dd-agent, the app's) do not exist on the
# test machine.
_OWNER_ID = r'''owner_id() {
  OWNER_ID=$1
  while read -r name number; do [ "$name" != "$1" ] || { OWNER_ID=$number; return; }; done <"$FAKE/passwd"
}
'''

# Real tools in a wrapper, not recorded (they are not what changes the host's services).
WRAPPERS = {
    # The clock (`date +%s`): seconds in the file `clock`, advanced by sleep and by a curl
    # that hangs, so a wait's bound shows without waiting. Any other date is the real one.
    "date": 'if [ "$*" = +%s ]; then read -r now <"$FAKE/clock" && echo "$now"; else exec date "$@"; fi',
    # The real install, on the test host's numbers for -o and -g (the arguments rebuilt in
    # place, as chown's).
    "install": r'''
count=$#
while [ "$count" -gt 0 ]; do
  case "$1" in
    -o | -g) owner_id "$2" && set -- "$@" "$1" "$OWNER_ID" && shift 2 && count=$((count - 2)) ;;
    *) set -- "$@" "$1" && shift && count=$((count - 1)) ;;
  esac
done
exec install "$@"''',
}


# The real tools that converge.sh and the document's script run, each in a wrapper that
# records its command line in `argv`. With Host.run(strict=True) PATH holds only these and
# the recorders: a command converge runs that is in neither fails the run.
PASS_THROUGH = ("awk base64 bash cat chmod cmp cp cut dirname find flock gpg grep gzip head kill mkdir "
                "mktemp mv openssl paste ps readlink rm sed sh sha256sum sort stat tail tar timeout touch "
                "tr wc xargs").split()


def spare_ids(count: int, start: int = 61000) -> list[int]:
    """Numbers no user or group of the test machine has, for the host's own users."""
    taken = {entry.pw_uid for entry in pwd.getpwall()} | {entry.gr_gid for entry in grp.getgrall()}
    return [number for number in range(start, start + 1000) if number not in taken][:count]


HOST_USERS = dict(zip(("dd-agent", "flaskapp", "mysql", "tomcat"), spare_ids(4)), root=0)
# The data volume of a test host: its id (imds.data-volume-id), and its disk and udev link.
DATA_VOLUME_ID = "vol-0123456789abcdef0"
DATA_DISK = "/dev/nvme1n1"
DATA_VOLUME_LINK = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"
DATA_VOLUME_BYTES = 20 * 1024 ** 3  # dataVolumeGiB's default



def jmx_report(collected=JMX_COLLECTED) -> str:
    """`datadog-agent jmx list collected` as JMXFetch prints it, for these bean/attribute pairs."""
    return "\n".join(f"       Matching: {n}/350. Bean name: {bean},name=x - Attribute name: {attribute}  - "
                     "Attribute type: long" for n, (bean, attribute) in
                     enumerate((pair.rsplit("/", 1) for pair in collected), 1))


def _install_recorders(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True)
    scripts = {name: _RECORD + _OWNER_ID + _CONTAINS + body.lstrip("\n") for name, body in RECORDERS.items()}
    scripts.update({name: _OWN_TOOLS + _OWNER_ID + body.lstrip("\n") for name, body in WRAPPERS.items()})
    for name, body in scripts.items():
        _write_script(bin_dir / name, "#!/bin/sh\n" + body + "\n")


@functools.cache
def _pass_through_scripts() -> dict[str, str]:
    """name -> its wrapper (the real tools are looked up once a session, not per host)."""
    scripts = {}
    for name in PASS_THROUGH:
        real = shutil.which(name, path="/usr/bin:/bin")
        assert real, f"{name} is not on this machine"
        scripts[name] = f'#!/bin/sh\n{_ARGV}exec {real} "$@"\n'
    return scripts


def _install_pass_through(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True)
    for name, script in _pass_through_scripts().items():
        _write_script(bin_dir / name, script)


def _write_script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@functools.cache
def apt_signing_key() -> str:
    """An armored OpenPGP public key, made once per test session with the real gpg."""
    with tempfile.TemporaryDirectory() as home:
        gpg = ["gpg", "--batch", "--homedir", home]
        subprocess.run([*gpg, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
                        "observability-lab tests <tests@example.invalid>", "ed25519", "sign", "never"],
                       check=True, capture_output=True)
        key = subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True, text=True).stdout
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], capture_output=True)
    return key


def write_bundle(files: dict[str, str], bundles: Path) -> Path:
    """The bundle's files in bundles/<digest>/, as the SSM document unpacks them."""
    directory = bundles / Bundle(files).digest
    for path, content in files.items():
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).write_text(content)
    return directory


@dataclass
class ConvergeRun:
    returncode: int
    stdout: str
    stderr: str
    calls: list[str]

    def report(self, prefix: str) -> dict[str, str]:
        """`file /etc/x: updated` -> {"/etc/x": "updated"} for lines starting with prefix."""
        return dict(line[len(prefix) + 1:].rsplit(": ", 1) for line in self.stdout.splitlines()
                    if line.startswith(prefix + " "))

    def called(self, command: str) -> list[str]:
        return [call for call in self.calls if call.split(" ", 1)[0] == command]


def restarts(run: ConvergeRun) -> list[str]:
    """The units a converge run restarted, in order."""
    return [c.split()[-1] for c in run.called("systemctl") if c.split()[1] == "restart"]


class Host:
    """A scratch root that keeps its state across converge runs, like a host."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "root"
        self.fake = base / "fake"
        self.bundles = base / "bundles"
        self.bin = base / "bin"
        for directory in (self.root, self.fake, self.bundles):
            directory.mkdir(parents=True)
        _install_recorders(self.bin)
        _install_pass_through(self.base / "pass-through")
        (self.fake / "dpkg").write_text("")
        (self.fake / "passwd").write_text("".join(f"{name} {number}\n" for name, number in HOST_USERS.items()))
        (self.fake / "clock").write_text("1700000000\n")
        (self.fake / "jmx.report").write_text(jmx_report() + "\n")
        (self.fake / "imds.datadog-hostname").write_text(DEFAULT_DATADOG_HOSTNAME)
        (self.fake / "imds.data-volume-id").write_text(DATA_VOLUME_ID)
        self.attach_data_volume()
        (self.fake / "apt-key.asc").write_text(apt_signing_key())
        # The local Agent's DogStatsD, where converge sends its Datadog events.
        self.dogstatsd = Listener()
        # sysfs as the kernel shows a partition: /sys/dev/block/<major:minor> -> .../<disk>/<partition>.
        partition = self.root / "sys/devices/pci0000:00/nvme/nvme0n1/nvme0n1p1"
        partition.mkdir(parents=True)
        (partition / "partition").write_text("1\n")
        (self.root / "sys/dev/block").mkdir(parents=True)
        (self.root / "sys/dev/block/259:1").symlink_to("../../devices/pci0000:00/nvme/nvme0n1/nvme0n1p1")

    def attach_data_volume(self, link: str = DATA_VOLUME_LINK, size: int = DATA_VOLUME_BYTES) -> Path:
        """A blank volume of `size` bytes at DATA_DISK (2 MiB of zeros on disk), linked from `link` as udev does."""
        disk = self.path(DATA_DISK)
        disk.parent.mkdir(parents=True, exist_ok=True)
        disk.write_bytes(bytes(2 * 1024 * 1024))
        (self.fake / f"size.{disk.name}").write_text(f"{size}\n")
        self.path(link).parent.mkdir(parents=True, exist_ok=True)
        self.path(link).symlink_to(f"../../{DATA_DISK.rsplit('/', 1)[1]}")
        return disk

    def copy(self, base: Path) -> "Host":
        """Another host in the same state (paths reach the script through its environment)."""
        shutil.copytree(self.base, base, symlinks=True, dirs_exist_ok=True)
        for path in self.root.rglob("*"):  # owners too, as a host keeps them
            owner = path.lstat()
            os.lchown(base / path.relative_to(self.base), owner.st_uid, owner.st_gid)
        mounts = base / "fake" / "mounts"  # what is mounted, at the copy's own paths
        if mounts.exists():
            mounts.write_text(mounts.read_text().replace(str(self.base), str(base)))
        clone = object.__new__(Host)
        clone.__dict__.update(self.__dict__, base=base, root=base / "root", fake=base / "fake",
                              bundles=base / "bundles", bin=base / "bin", dogstatsd=Listener())
        return clone

    def env(self, strict: bool = False, **extra: str) -> dict[str, str]:
        path = f"{self.bin}:{self.base / 'pass-through'}" if strict else f"{self.bin}:/usr/bin:/bin"
        return {"PATH": path, "FAKE": str(self.fake), "HOME": str(self.base),
                "IMDS_TOKEN": IMDS_TOKEN,
                "CONVERGE_ROOT": str(self.root), "OBSERVABILITY_LAB_BUNDLES": str(self.bundles),
                "CONVERGE_DOGSTATSD": self.dogstatsd.address,
                "TMPDIR": str(self.base), **extra}

    def path(self, host_path: str) -> Path:
        return self.root / host_path.lstrip("/")

    def run(self, command: list[str], strict: bool = False, **extra_env: str) -> ConvergeRun:
        """strict: PATH has only the recorders and the real tools' wrappers (see PASS_THROUGH)."""
        calls = self.fake / "calls"
        calls.unlink(missing_ok=True)
        # A session of its own: what a recorder's kill_run kills.
        result = subprocess.run(command, env=self.env(strict, **extra_env), capture_output=True, text=True,
                                timeout=60, start_new_session=True)
        return ConvergeRun(result.returncode, result.stdout, result.stderr,
                           calls.read_text().splitlines() if calls.exists() else [])

    def converge(self, files: dict[str, str], strict: bool = False, **extra_env: str) -> ConvergeRun:
        directory = write_bundle(files, self.bundles)
        return self.run(["/bin/bash", str(directory / "converge.sh")], strict, **extra_env)

    def events(self) -> list[Event]:
        """The Datadog events received since the last call, each parsed strictly. Called once a
        run has ended: converge's bash wrote each datagram to loopback before it exited, so they
        are queued already; the short wait covers a kernel that delivers them a moment later."""
        return [parse_event(datagram) for datagram in self.dogstatsd.received(wait=0.05)]

    def set(self, name: str, content: str = "") -> None:
        """Create a recorder state file (e.g. `fail.agent-status`, `growpart.status`)."""
        (self.fake / name).write_text(content)

    def clear(self, name: str) -> None:
        (self.fake / name).unlink(missing_ok=True)

    def tag_instance(self, key: str, value: Optional[str]) -> None:
        """The instance tag `key` as instance metadata answers it; None: the instance has no such tag."""
        if value is None:
            self.clear(f"imds.{key}")
        else:
            self.set(f"imds.{key}", value)
