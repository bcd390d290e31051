//! The simulated hardware as programs inside the machine: `flatcar-install` (lays down a fresh
//! OS tree), `wipefs`, `blkid`, `lsblk`, `mount`/`umount` of partitions, `udevadm`,
//! `lvchange`, and the machine-local `systemctl` and `sudo`. Disks are directories under
//! `/run/sim/disk/<name>/`, one sub-directory per partition, named by its label; the file
//! `.size` holds the disk size in bytes. Reboots and unit changes are written as lines to
//! `/run/sim/events`, which the simulator reads when the command ends.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Flatcar's partition numbers by label.
pub const PARTITIONS: [(&str, u32); 4] = [("EFI-SYSTEM", 1), ("USR-A", 3), ("OEM", 6), ("ROOT", 9)];

const COMMON: &str = r#"D=/run/sim/disk
ev() { echo "$*" >> /run/sim/events; }
partnum() { case "$1" in EFI-SYSTEM) echo 1;; USR-A) echo 3;; OEM) echo 6;; ROOT) echo 9;; *) echo 0;; esac; }
partlabel() { case "$1" in 1) echo EFI-SYSTEM;; 3) echo USR-A;; 6) echo OEM;; 9) echo ROOT;; esac; }
# devdir /dev/sda6 -> $D/sda/OEM ; /dev/sda -> $D/sda ; LABEL=OEM and by-label paths too
devdir() {
  dev="$1"
  case "$dev" in
    LABEL=*|/dev/disk/by-label/*|/dev/disk/by-partlabel/*|PARTLABEL=*)
      l="${dev#LABEL=}"; l="${l#PARTLABEL=}"; l="${l#/dev/disk/by-label/}"; l="${l#/dev/disk/by-partlabel/}"
      for d in "$D"/*; do [ -d "$d/$l" ] && { echo "$d/$l"; return 0; }; done; return 1;;
  esac
  n="${dev#/dev/}"
  if [ -d "$D/$n" ]; then echo "$D/$n"; return 0; fi
  disk="$(echo "$n" | sed 's/p\?[0-9]*$//')"; num="${n#"$disk"}"; num="${num#p}"
  l="$(partlabel "$num")"
  [ -n "$l" ] && [ -d "$D/$disk/$l" ] && { echo "$D/$disk/$l"; return 0; }
  return 1
}
"#;

const FLATCAR_INSTALL: &str = r#"set -e
disk=""; smallest=""; channel=stable; version=current; base=""; ign=""; oem=""
while getopts "d:sC:V:B:b:o:i:f:e:c:t:u:nyvh" o; do
  case "$o" in
    d) disk="$OPTARG";; s) smallest=1;; C) channel="$OPTARG";; V) version="$OPTARG";;
    b) base="$OPTARG";; i) ign="$OPTARG";; o) oem="$OPTARG";; h) echo "usage: flatcar-install -d DEVICE|-s [-C CHANNEL] [-V VERSION] [-b BASEURL] [-i IGNITION]"; exit 0;;
    *) ;;
  esac
done
if [ -n "$smallest" ]; then
  disk=""; best=""
  for d in "$D"/*; do
    [ -d "$d" ] || continue
    s="$(cat "$d/.size" 2>/dev/null || echo 0)"
    if [ -z "$best" ] || [ "$s" -lt "$best" ]; then best="$s"; disk="/dev/$(basename "$d")"; fi
  done
  [ -n "$disk" ] || { echo "flatcar-install: no disk found" >&2; exit 1; }
fi
[ -n "$disk" ] || { echo "flatcar-install: no target device given (-d DEVICE or -s)" >&2; exit 1; }
dd="$D/${disk#/dev/}"
[ -d "$dd" ] || { echo "flatcar-install: Target block device ($disk) is not a block device" >&2; exit 1; }
if [ -f /run/sim/faults/installer_fails ]; then
  echo "flatcar-install: writing $disk failed (simulated I/O error)" >&2; exit 1
fi
echo "Downloading, writing and verifying flatcar_production_image.bin.bz2 (channel $channel, version $version${base:+, from $base})..."
if [ -n "$base" ]; then
  # With -b the image comes from the boot server: fetch it (bash's /dev/tcp, HTTP/1.0) so a
  # missing image fails the install as it would on a real machine. Other hosts are not
  # contacted from the lab.
  url="$base/$version/flatcar_production_image.bin.bz2"
  case "$url" in
    http://127.*|http://localhost[:/]*)
      hostport="${url#http://}"; hostport="${hostport%%/*}"; path="/${url#http://*/}"
      host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$hostport" ] && port=80
      status="$(bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 1
printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$3" "$1" >&3
IFS= read -r line <&3; echo "$line"; cat <&3 >/dev/null' sh "$host" "$port" "$path" 2>/dev/null)" || status=""
      code="$(echo "$status" | cut -d' ' -f2)"
      if [ "$code" != 200 ]; then
        echo "flatcar-install: downloading $url failed${code:+: HTTP $code}" >&2; exit 1
      fi;;
    *) echo "flatcar-install: $url is outside the lab network: not contacted (assumed downloaded)";;
  esac
fi
ev "flatcar-install disk=$disk channel=$channel version=$version base=$base"
for p in "$dd"/* "$dd"/.image; do [ -e "$p" ] && rm -rf "$p"; done
mkdir -p "$dd/EFI-SYSTEM/flatcar/grub" "$dd/OEM" "$dd/ROOT"
for s in bin sbin lib lib64 libexec share/flatcar share/oem share/baselayout lib/systemd/system; do mkdir -p "$dd/USR-A/$s"; done
: > "$dd/EFI-SYSTEM/flatcar/first_boot"
printf 'FLATCAR_RELEASE_VERSION=%s\nFLATCAR_RELEASE_BOARD=amd64-usr\nFLATCAR_RELEASE_APPID={e96281a6-d1af-4bde-9a0a-97b76e56dc57}\n' "$version" > "$dd/USR-A/share/flatcar/release"
printf 'GROUP=%s\n' "$channel" > "$dd/USR-A/share/flatcar/update.conf"
: > "$dd/OEM/grub.cfg"
if [ -n "$ign" ]; then cp "$ign" "$dd/OEM/config.ign"; fi
printf 'channel=%s\nversion=%s\nbase=%s\n' "$channel" "$version" "$base" > "$dd/.image"
echo "Success! Flatcar Container Linux $version is installed on $disk"
"#;

const WIPEFS: &str = r#"all=""; devs=""
for a in "$@"; do case "$a" in -a|--all) all=1;; -f|--force|-q|--quiet) ;; -*) ;; *) devs="$devs $a";; esac; done
rc=0
for dev in $devs; do
  d="$(devdir "$dev")" || { echo "wipefs: error: $dev: probing initialization failed: No such file or directory" >&2; rc=1; continue; }
  if [ -n "$all" ]; then
    for p in "$d"/* "$d"/.image; do [ -e "$p" ] && rm -rf "$p"; done
    ev "wipefs $dev"
  fi
done
exit $rc
"#;

const BLKID: &str = r#"token=""; out=full; label=""; devs=""
while [ $# -gt 0 ]; do
  case "$1" in
    -t) token="$2"; shift;; -o) out="$2"; shift;; -L) label="$2"; out=device;; -s) shift;; -c) shift;; -*) ;; *) devs="$devs $1";;
  esac; shift
done
[ -n "$label" ] && token="LABEL=$label"
want=""; case "$token" in LABEL=*|PARTLABEL=*) want="${token#*=}";; esac
found=1
for d in "$D"/*; do
  [ -d "$d" ] || continue
  name="$(basename "$d")"
  for p in "$d"/*; do
    [ -d "$p" ] || continue
    l="$(basename "$p")"; n="$(partnum "$l")"
    [ -n "$want" ] && [ "$l" != "$want" ] && continue
    if [ -n "$devs" ]; then case " $devs " in *" /dev/$name$n "*) ;; *) continue;; esac; fi
    found=0
    case "$out" in
      device) echo "/dev/$name$n";;
      value) echo "$l";;
      *) echo "/dev/$name$n: LABEL=\"$l\" PARTLABEL=\"$l\"";;
    esac
  done
done
exit $found
"#;

const LSBLK: &str = r#"cols=NAME; nodeps=""; paths=""; sortcol=""; devs=""; noheading=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o|--output) cols="$2"; shift;; -x|--sort) sortcol="$2"; shift;;
    -*) f="${1#-}"; case "$f" in *d*) nodeps=1;; esac; case "$f" in *p*) paths=1;; esac; case "$f" in *n*) noheading=1;; esac;;
    *) devs="$devs $1";;
  esac; shift
done
row() { # name size mountpoint label type
  line=""
  for c in $(echo "$cols" | tr ',' ' '); do
    case "$c" in
      NAME) v="$1"; [ -n "$paths" ] && v="/dev/$1";; SIZE) v="$2";; MOUNTPOINT|MOUNTPOINTS) v="$3";;
      LABEL|PARTLABEL) v="$4";; TYPE) v="$5";; *) v="";;
    esac
    line="${line:+$line }$v"
  done
  echo "$line"
}
mp() { grep "^$1 " /run/sim/mounts 2>/dev/null | head -n1 | cut -d' ' -f2; }
list() {
  for d in "$D"/*; do
    [ -d "$d" ] || continue
    name="$(basename "$d")"
    if [ -n "$devs" ]; then case " $devs " in *" /dev/$name "*|*" $name "*) ;; *) continue;; esac; fi
    size="$(cat "$d/.size" 2>/dev/null || echo 0)"
    echo "$size	$(row "$name" "$size" "$(mp "/dev/$name")" "" disk)"
    [ -n "$nodeps" ] && continue
    for p in "$d"/*; do
      [ -d "$p" ] || continue
      l="$(basename "$p")"; n="$(partnum "$l")"
      echo "0	$(row "$name$n" 0 "$(mp "/dev/$name$n")" "$l" part)"
    done
  done
}
if [ -n "$sortcol" ]; then list | sort -n | cut -f2-; else list | cut -f2-; fi
"#;

const MOUNT: &str = r#"# Partitions of the simulated disks are bind-mounted; anything else goes to the real mount.
src=""; dst=""; n=0
for a in "$@"; do case "$a" in -*) ;; *) n=$((n+1)); [ $n -eq 1 ] && src="$a"; [ $n -eq 2 ] && dst="$a";; esac; done
case "$src" in
  /dev/sd*|/dev/vd*|/dev/nvme*|LABEL=*|/dev/disk/by-label/*|/dev/disk/by-partlabel/*)
    [ -n "$dst" ] || { echo "mount: $src: mount point missing" >&2; exit 1; }
    d="$(devdir "$src")" || { echo "mount: $dst: special device $src does not exist." >&2; exit 32; }
    /usr/bin/mount --bind "$d" "$dst" || exit 32
    echo "$src $dst" >> /run/sim/mounts
    exit 0;;
esac
exec /usr/bin/mount "$@"
"#;

const UMOUNT: &str = r#"/usr/bin/umount "$@"; rc=$?
if [ $rc -eq 0 ] && [ -f /run/sim/mounts ]; then
  for a in "$@"; do case "$a" in -*) ;; *) grep -v " $a\$" /run/sim/mounts | grep -v "^$a " > /run/sim/mounts.new; mv /run/sim/mounts.new /run/sim/mounts;; esac; done
fi
exit $rc
"#;

const UDEVADM: &str = "exit 0\n";

const LVCHANGE: &str = r#"for a in "$@"; do case "$a" in -*) ;; *) echo "  Volume group \"$(basename "$(dirname "$a")")\" not found" >&2;; esac; done
exit 5
"#;

const SYSTEMCTL: &str = r#"verb=""; units=""
for a in "$@"; do case "$a" in -*) ;; *) if [ -z "$verb" ]; then verb="$a"; else units="$units $a"; fi;; esac; done
U=/run/sim/units
mkdir -p "$U"
norm() { case "$1" in *.*) echo "$1";; *) echo "$1.service";; esac; }
case "$verb" in
  reboot|poweroff|halt|kexec) ev "$verb"; echo "Rebooting." >&2; exit 0;;
  start|restart|reload|try-restart|reload-or-restart)
    for u in $units; do u="$(norm "$u")"; echo active > "$U/$u"; ev "systemctl $verb $u"; done; exit 0;;
  stop|kill)
    for u in $units; do u="$(norm "$u")"; rm -f "$U/$u"; ev "systemctl $verb $u"; done; exit 0;;
  is-active)
    rc=0; for u in $units; do u="$(norm "$u")"; if [ -f "$U/$u" ]; then echo active; else echo inactive; rc=3; fi; done; exit $rc;;
  is-failed)
    rc=1; for u in $units; do u="$(norm "$u")"; if [ "$(cat "$U/$u" 2>/dev/null)" = failed ]; then echo failed; rc=0; else echo active; fi; done; exit $rc;;
  status)
    rc=0; for u in $units; do u="$(norm "$u")"; s="$(cat "$U/$u" 2>/dev/null || echo inactive)"; echo "* $u"; echo "   Active: $s"; [ "$s" = active ] || rc=3; done; exit $rc;;
  ""|list-units) for f in "$U"/*; do [ -f "$f" ] && echo "$(basename "$f") loaded $(cat "$f")"; done; exit 0;;
  *) ev "systemctl $*"; exit 0;;
esac
"#;

const SUDO: &str = r#"# Commands already run as root in the simulated machine; sudo drops its own options.
while [ $# -gt 0 ]; do
  case "$1" in
    -u|-g|-C|-D|-h|-p|-r|-t|-U) shift 2;;
    --) shift; break;;
    -*) shift;;
    *) break;;
  esac
done
[ $# -gt 0 ] || { echo "usage: sudo command" >&2; exit 1; }
exec "$@"
"#;

/// Writes the shim programs into `dir`.
pub fn install(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let progs: [(&str, &str); 11] = [
        ("flatcar-install", FLATCAR_INSTALL),
        ("wipefs", WIPEFS),
        ("blkid", BLKID),
        ("lsblk", LSBLK),
        ("mount", MOUNT),
        ("umount", UMOUNT),
        ("udevadm", UDEVADM),
        ("lvchange", LVCHANGE),
        ("systemctl", SYSTEMCTL),
        ("sudo", SUDO),
        ("reboot", "ev reboot\nexit 0\n"),
    ];
    for (name, body) in progs {
        let p = dir.join(name);
        fs::write(&p, format!("#!/bin/sh\n# simulated {name}\n{COMMON}{body}"))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}
