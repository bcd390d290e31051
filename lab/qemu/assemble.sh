# Sourced by build-image.sh under fakeroot: builds the trees, the initrd, the file systems and
# the disk from unpacked packages. Ownership set here (root, and 500:500 for core's home) is
# what fakeroot hands to cpio and mkfs.ext4 -d.
#   assemble WORK OUT KERNEL_PKG
# WORK holds pkgs/ (unpacked packages), kernel/ (the unpacked kernel package) and guest (the
# helper binary).

files="$here/files"

# Copies the shared libraries that ELF files under $1 need (recursively) from the unpacked
# packages into $1/usr/lib/x86_64-linux-gnu. Fails naming a library no package provides.
resolve_libs() {
  local tree=$1 libdir=$1/usr/lib/x86_64-linux-gnu
  mkdir -p "$libdir" "$tree/usr/lib64"
  local changed=1
  while [ $changed = 1 ]; do
    changed=0
    local needed
    needed=$(find "$tree/usr" -type f -perm -u+x -o -type f -name '*.so*' | while read -r f; do
      readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'
    done | sort -u)
    for so in $needed; do
      [ -e "$libdir/$so" ] && continue
      local src=""
      for d in "$pkgs/lib/x86_64-linux-gnu" "$pkgs/usr/lib/x86_64-linux-gnu"; do
        if [ -e "$d/$so" ]; then src="$d/$so"; break; fi
      done
      if [ -z "$src" ]; then
        echo "build-image: no package in the list provides $so (needed in $tree); add it to build-image.sh" >&2
        return 1
      fi
      cp -L "$src" "$libdir/$so"
      changed=1
    done
  done
  # The dynamic loader, where every binary's PT_INTERP points.
  cp -L "$pkgs/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$libdir/ld-linux-x86-64.so.2"
  ln -sf ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$tree/usr/lib64/ld-linux-x86-64.so.2"
}

# /usr of the image: busybox with its applets, dropbear, e2fsprogs' mkfs, util-linux's
# blkid/wipefs, shadow's user tools, the guest helper, the shims.
build_usr() {
  local usr=$1
  mkdir -p "$usr/bin" "$usr/lib/lab" "$usr/share/oem" "$usr/lib/modules"
  # One directory for programs: Ignition and scripts use both /usr/bin and /usr/sbin paths.
  ln -s bin "$usr/sbin"
  cp "$pkgs/bin/busybox" "$usr/bin/busybox"
  for applet in $("$usr/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$usr/bin/$applet"
  done
  local real=(
    "usr/sbin/dropbear" "sbin/mke2fs" "sbin/blkid" "sbin/wipefs"
    "usr/sbin/useradd" "usr/sbin/usermod" "usr/sbin/groupadd" "usr/sbin/groupmod"
  )
  for f in "${real[@]}"; do
    rm -f "$usr/bin/${f##*/}"
    cp "$pkgs/$f" "$usr/bin/"
  done
  for l in mkfs.ext4 mkfs.ext3 mkfs.ext2; do ln -sf mke2fs "$usr/bin/$l"; done
  cp "$pkgs/usr/lib/dropbear/dropbearconvert" "$usr/lib/lab/"
  for s in systemctl udevadm setfiles flatcar-install bash install; do
    rm -f "$usr/bin/$s"
    install -m 0755 "$files/$s" "$usr/bin/$s"
  done
  for s in boot-os pxe-services ssh-keys sshd disk-links udhcpc.script; do
    install -m 0755 "$files/$s" "$usr/lib/lab/$s"
  done
  install -m 0644 "$files/inittab-pxe" "$usr/lib/lab/inittab-pxe"
  install -m 0755 "$work/guest" "$usr/lib/lab/roundhouse-lab-guest"
  # sudo: a setuid-root copy of the helper (argv[0] `sudo` selects that mode).
  install -m 4755 "$work/guest" "$usr/bin/sudo"
  # The base layout a wiped ROOT is filled from.
  cp -a "$work/skel" "$usr/lib/lab/skel"
}

build_skel() {
  local s=$1
  mkdir -p "$s"/{etc/ssh,etc/dropbear,etc/selinux,home/core,root,boot,dev,proc,sys,run,tmp,var/log,mnt,usr}
  for l in bin sbin lib lib64; do ln -s "usr/$l" "$s/$l"; done
  chmod 1777 "$s/tmp"
  chmod 0700 "$s/root"
  cat > "$s/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
core:x:500:500:Flatcar-like lab user:/home/core:/bin/sh
EOF
  cat > "$s/etc/group" <<'EOF'
root:x:0:
wheel:x:10:core
sudo:x:27:core
core:x:500:
EOF
  printf 'root:*:19000:0:99999:7:::\ncore:*:19000:0:99999:7:::\n' > "$s/etc/shadow"
  printf 'root:*::\nwheel:*::core\nsudo:*::core\ncore:!::\n' > "$s/etc/gshadow"
  chmod 0640 "$s/etc/shadow" "$s/etc/gshadow"
  printf '/bin/sh\n/usr/bin/sh\n/bin/ash\n/bin/bash\n' > "$s/etc/shells"
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' > "$s/etc/nsswitch.conf"
  printf '127.0.0.1 localhost\n' > "$s/etc/hosts"
  printf 'localhost\n' > "$s/etc/hostname"
  printf 'SELINUX=disabled\nSELINUXTYPE=none\n' > "$s/etc/selinux/config"
  printf 'NAME="Flatcar-like (roundhouse QEMU lab)"\nID=flatcar-lab\n' > "$s/etc/os-release"
  printf 'export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n' > "$s/etc/profile"
  install -m 0644 "$files/inittab" "$s/etc/inittab"
}

assemble() {
  work=$1; out=$2; kernel_pkg=$3
  pkgs=$work/pkgs
  local kver=${kernel_pkg#linux-image-}

  build_skel "$work/skel"
  chown -R 0:0 "$work/skel"
  chown 500:500 "$work/skel/home/core"
  build_usr "$work/usr"
  resolve_libs "$work" || return 1
  chown -R 0:0 "$work/usr"
  chown -R 500:500 "$work/usr/lib/lab/skel/home/core"

  # ---- initrd: base layout + /usr + Ignition + modules + /init ----
  local ird=$work/initrd
  mkdir -p "$ird"
  cp -a "$work/skel/." "$ird/"
  cp -a "$work/usr/." "$ird/usr/"
  install -m 0755 "$pkgs/usr/lib/dracut/modules.d/30ignition/ignition" "$ird/usr/lib/lab/ignition"
  resolve_libs "$ird" || return 1
  depmod -b "$work/kernel" "$kver"
  local mods="virtio_pci virtio_blk virtio_net virtio_rng ext4 crc32c_generic vfat nls_cp437 nls_ascii nls_iso8859-1 nls_utf8"
  mkdir -p "$ird/usr/lib/modules"
  : > "$ird/usr/lib/modules/load-order"
  local m
  for m in $mods; do
    modprobe -d "$work/kernel" -S "$kver" --show-depends "$m"
  done | awk '$1 == "insmod" {print $2}' |
    while read -r ko; do
      local name=${ko##*/}
      grep -qx "$name" "$ird/usr/lib/modules/load-order" && continue
      cp "$ko" "$ird/usr/lib/modules/$name"
      echo "$name" >> "$ird/usr/lib/modules/load-order"
    done
  install -m 0755 "$files/init" "$ird/init"
  chown -R 0:0 "$ird"
  chown 500:500 "$ird/home/core"
  chown -R 500:500 "$ird/usr/lib/lab/skel/home/core"
  (cd "$ird" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | zstd -3 -q -T0) > "$out/.initrd"
  cp "$work/kernel/boot/vmlinuz-$kver" "$out/.vmlinuz"

  # ---- EFI-SYSTEM: GRUB, grub.cfg, kernel, initrd, first_boot ----
  grub-mkstandalone -O x86_64-efi -o "$work/BOOTX64.EFI" \
    --install-modules="linux normal configfile search search_label search_fs_uuid part_gpt fat ext2 test echo all_video efi_gop gzio serial terminal sleep boot cat ls" \
    --modules="part_gpt fat ext2 serial terminal" \
    --locales= --themes= --fonts= \
    "boot/grub/grub.cfg=$files/embed.cfg"
  local esp=$work/esp.img
  mkfs.vfat -F 32 -n EFI-SYSTEM -C "$esp" 65536 >/dev/null
  mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/flatcar ::/flatcar/grub
  mcopy -i "$esp" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
  mcopy -i "$esp" "$files/grub.cfg" ::/flatcar/grub/grub.cfg
  mcopy -i "$esp" "$out/.vmlinuz" ::/flatcar/vmlinuz-a
  mcopy -i "$esp" "$out/.initrd" ::/flatcar/initrd-a
  : > "$work/first_boot"
  mcopy -i "$esp" "$work/first_boot" ::/flatcar/first_boot

  # ---- USR-A (no journal: mounted read-only), OEM, ROOT (empty) ----
  mkfs.ext4 -q -F -O ^has_journal -L USR-A -d "$work/usr" "$work/usr.img" 48M >/dev/null
  mkdir -p "$work/oem"
  printf '# OEM grub.cfg of the roundhouse QEMU lab image (installers append to it)\n' > "$work/oem/grub.cfg"
  chown -R 0:0 "$work/oem"
  mkfs.ext4 -q -F -L OEM -d "$work/oem" "$work/oem.img" 16M >/dev/null
  mkfs.ext4 -q -F -L ROOT "$work/root.img" 96M >/dev/null

  # ---- the disk, with Flatcar's partition numbers ----
  local disk=$work/disk.img
  truncate -s 227M "$disk"
  sgdisk -o \
    -n 1:1M:+64M -t 1:EF00 -c 1:EFI-SYSTEM \
    -n 3:0:+48M -t 3:5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6 -c 3:USR-A \
    -n 6:0:+16M -t 6:8300 -c 6:OEM \
    -n 9:0:+96M -t 9:8300 -c 9:ROOT \
    "$disk" >/dev/null
  local n img start
  for n in 1:esp 3:usr 6:oem 9:root; do
    img=$work/${n#*:}.img
    start=$(sgdisk -i "${n%%:*}" "$disk" | awk '/^First sector:/ {print $3}')
    dd if="$img" of="$disk" bs=512 seek="$start" conv=notrunc status=none
  done
  mv "$disk" "$out/disk.img"
  mv "$out/.vmlinuz" "$out/flatcar_production_pxe.vmlinuz"
  mv "$out/.initrd" "$out/flatcar_production_pxe_image.cpio.gz"
}
