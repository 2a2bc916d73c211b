#!/usr/bin/env bash
# Boots a real systemd as PID 1 of fresh pid, mount, net, cgroup, uts and ipc namespaces, its
# root an overlay of this machine's / whose writable layer is a tmpfs, so that nothing done
# inside (install.sh, users, units, files) reaches the machine. Root only. A reboot inside
# (`systemctl reboot`) boots again on the same writable layer, like a box that restarts; a
# poweroff ends the script. Killing the script's process group throws everything away.
#
# Usage: boot.sh DIR   (DIR: an empty directory; DIR/share, if present, is /mnt/share inside)
# DIR/init.pid holds the host PID of the running unshare whose only child is systemd;
# DIR/boots.log says how each boot ended. `nsenter -t SYSTEMD_PID -a CMD` runs CMD inside.
set -euo pipefail

dir=${1:?usage: boot.sh DIR}
stage=${ORA_BOOT_STAGE:-host}
layer=$dir/layer
root=$dir/root

case $stage in
host)
  [ "$(id -u)" = 0 ] || { echo "boot.sh: needs root" >&2; exit 2; }
  [ -x /lib/systemd/systemd ] || { echo "boot.sh: /lib/systemd/systemd is missing" >&2; exit 2; }
  # The machine's mount table is never changed: everything below lives in a new mount
  # namespace that ends with this script.
  ORA_BOOT_STAGE=box exec unshare --mount --propagation private --kill-child "$0" "$dir"
  ;;
box)
  mkdir -p "$layer" "$root"
  mount -t tmpfs -o mode=0755,size=2g tmpfs "$layer"
  mkdir -p "$layer/upper" "$layer/work"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$layer/upper,workdir=$layer/work" "$root"
  # Nothing this machine has enabled starts inside: mask every enabled unit, and the ones a
  # container has no use for.
  for link in /etc/systemd/system/*.wants/* /etc/systemd/system/dbus-org.*; do
    [ -e "$link" ] || [ -L "$link" ] || continue
    ln -sf /dev/null "$root/etc/systemd/system/$(basename "$link")"
  done
  for unit in getty@tty1.service console-getty.service systemd-networkd.service \
    systemd-resolved.service systemd-timesyncd.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  # Nor any SysV init script the machine's packages brought (openipmi, with ipmitool: it
  # fails in a box without the hardware, and the box comes up "degraded").
  for script in /etc/init.d/*; do
    [ -x "$script" ] || continue
    ln -sf /dev/null "$root/etc/systemd/system/$(basename "$script").service"
  done
  if [ -d "$dir/share" ]; then
    mkdir -p "$root/mnt/share"
    mount --bind "$dir/share" "$root/mnt/share"
  fi
  : >"$root/etc/machine-id"
  echo ora-systemd-test >"$root/etc/hostname"
  while :; do
    ORA_BOOT_STAGE=init unshare --pid --fork --mount --cgroup --net --uts --ipc \
      --propagation private --kill-child "$0" "$dir" &
    echo $! >"$dir/init.pid.tmp"
    mv "$dir/init.pid.tmp" "$dir/init.pid"
    status=0
    wait $! || status=$?
    echo "boot ended with status $status" >>"$dir/boots.log"
    # systemd's reboot ends the namespace's init with SIGHUP (exit 129); anything else stops.
    [ "$status" = 129 ] || exit 0
  done
  ;;
init)
  # PID 1 of the new pid namespace, in a mount namespace copied from the box's.
  mount -t proc proc "$root/proc"
  mount --bind "$root/proc/sys" "$root/proc/sys"
  mount -o remount,bind,ro "$root/proc/sys"
  if [ -e "$root/proc/sysrq-trigger" ]; then
    mount --bind "$root/proc/sysrq-trigger" "$root/proc/sysrq-trigger"
    mount -o remount,bind,ro "$root/proc/sysrq-trigger"
  fi
  mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
  mount -t tmpfs -o mode=0755,nosuid tmpfs "$root/dev"
  for d in null zero full random urandom tty; do
    touch "$root/dev/$d"
    mount --bind "/dev/$d" "$root/dev/$d"
  done
  mkdir -p "$root/dev/pts" "$root/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
  ln -s pts/ptmx "$root/dev/ptmx"
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
  ln -s /proc/self/fd "$root/dev/fd"
  ln -s /proc/self/fd/0 "$root/dev/stdin"
  ln -s /proc/self/fd/1 "$root/dev/stdout"
  ln -s /proc/self/fd/2 "$root/dev/stderr"
  mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
  cd "$root"
  mkdir -p oldroot
  pivot_root . oldroot
  cd /
  umount -l /oldroot
  rmdir /oldroot
  exec env -i container=ora-test PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system
  ;;
esac
