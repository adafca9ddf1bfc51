#!/bin/busybox sh
# shellcheck shell=dash
# /init of the rmapbench guest initramfs (busybox sh, PID 1).
#
# Mounts the host's / (read-only 9p, tag "hostroot") at /host, puts a scratch ext4 disk
# on /host/tmp, the run's control directory (rw 9p, tag "rmapctl") on
# /host/run/rmapbench and the results directory (rw 9p, tag "results") at the same
# absolute path as on the host, then chroots into /host and runs the job the host
# wrote to the control directory.  The exit status goes to the control directory and
# to the console as a marker line; then the guest powers off (QEMU runs -no-reboot).
#
# The kernel passes RMAPBENCH_NONCE from its command line; markers carry it so the host
# can tell them from anything the command prints.
set -eu
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox --install -s /bin

NONCE=${RMAPBENCH_NONCE:-none}
step="starting"

# PID 1 must never exit (that panics the kernel): report the failed step and power off.
finish() {
	rc=$?
	if [ "$step" != "done" ]; then
		echo "RMAPBENCH-INIT-FAILED-$NONCE $step (status $rc)"
	fi
	sync
	poweroff -f
}
trap finish EXIT

step="mounting /proc, /sys, /dev"
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# Modules were decompressed on the host and listed in dependency order.
step="loading modules"
while read -r mod; do
	insmod "/modules/$mod.ko"
done </modules/order

ninep="trans=virtio,version=9p2000.L,msize=512000"
step="mounting the host's / over 9p (does the kernel have 9p and virtio? try --modules)"
mount -t 9p -o "ro,$ninep,cache=loose" hostroot /host

step="mounting the control share"
mount -t tmpfs -o mode=0755 tmpfs /host/run
mkdir -p /host/run/rmapbench
mount -t 9p -o "$ninep" rmapctl /host/run/rmapbench
# Sets RB_SHARE (results dir on the host), RB_KEEP (host paths under /tmp to keep
# visible over the scratch disk) and RB_SCRATCH (1 if a scratch disk is attached).
# shellcheck source=/dev/null
. /host/run/rmapbench/params.sh

# The scratch disk hides the host's /tmp; keep the original reachable for RB_KEEP.
mkdir -p /hosttmp
mount --bind /host/tmp /hosttmp

# /tmp must be a real filesystem (the suite msyncs MAP_SHARED files there), not tmpfs.
step="mounting the scratch ext4 disk on /tmp (does the kernel have virtio_blk and ext4?)"
if [ "$RB_SCRATCH" = 1 ]; then
	mount -t ext4 /dev/vda /host/tmp
	chmod 1777 /host/tmp
fi

step="mounting kernel filesystems in /host"
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm
# The links udev or systemd-tmpfiles make on a real system; the kernel's
# kselftest runner.sh appends the programs' output to /dev/stdout.
ln -s /proc/self/fd /host/dev/fd
ln -s /proc/self/fd/0 /host/dev/stdin
ln -s /proc/self/fd/1 /host/dev/stdout
ln -s /proc/self/fd/2 /host/dev/stderr
mount -t tracefs tracefs /host/sys/kernel/tracing
mount -t debugfs debugfs /host/sys/kernel/debug
mount -t tmpfs -o mode=1777 tmpfs /host/var/tmp

for path in $RB_KEEP; do
	step="keeping host path $path visible over the scratch /tmp"
	mkdir -p "/host$path"
	mount --bind "/hosttmp/${path#/tmp/}" "/host$path"
done

# Same absolute path as on the host, so the command line can name it unchanged.  The
# directory exists in the read-only view (it exists on the host) unless it lives on a
# filesystem the guest replaced (/tmp, /run, /var/tmp), which are writable here.
step="mounting the results share at $RB_SHARE"
mkdir -p "/host$RB_SHARE"
mount -t 9p -o "$ninep" results "/host$RB_SHARE"

step="running the command"
echo "RMAPBENCH-BEGIN-$NONCE"
set +e
chroot /host /bin/sh /run/rmapbench/job.sh </dev/null
rc=$?
set -e
echo "$rc" >/host/run/rmapbench/status
echo "RMAPBENCH-EXIT-$NONCE $rc"
step="done"
