#!/bin/sh
# Build the ground-truth kernel: Debian's linux-source-6.12 with both forms of
# the proposed rmap tracepoints (rmap-tracepoints.patch beside this script)
# and everything the suite and its guest need built in, no modules.
#
#   scripts/ground-truth/build.sh OUTDIR
#
# Leaves OUTDIR/bzImage and OUTDIR/config-RELEASE (the guest runner reads the
# config beside the image), for
#   ./run_tests.sh --vm --kernel OUTDIR/bzImage -- ...
# Safe to run again: the source is extracted and patched once, the .config is
# replaced only when it would change, and make rebuilds only what changed.
#
# Environment: LINUX_SOURCE (default /usr/src/linux-source-6.12.tar.xz, from
# `apt-get install linux-source-6.12`), JOBS (default: the CPU count), NICE
# (default 19: the build shares the machine).
set -eu

usage() {
	echo "usage: $0 OUTDIR" >&2
	exit 2
}
die() {
	echo "ground-truth: $*" >&2
	exit 1
}

[ $# -eq 1 ] || usage
here=$(cd "$(dirname "$0")" && pwd)
patchfile=$here/rmap-tracepoints.patch
tarball=${LINUX_SOURCE:-/usr/src/linux-source-6.12.tar.xz}
jobs=${JOBS:-$(nproc)}
nice=${NICE:-19}

[ -f "$tarball" ] || die "$tarball missing (apt-get install linux-source-6.12)"
for tool in make gcc flex bison bc perl xz patch pahole; do
	command -v "$tool" >/dev/null 2>&1 ||
		die "$tool missing (apt-get install build-essential flex bison bc libelf-dev libssl-dev pahole)"
done

mkdir -p "$1"
out=$(cd "$1" && pwd)
src=$out/linux-source-6.12

# 1. The source, extracted once (the marker says the extraction finished).
if [ ! -f "$src/.rmap-extracted" ]; then
	rm -rf "$src"
	echo "ground-truth: extracting $tarball"
	nice -n "$nice" tar -xJf "$tarball" -C "$out"
	[ -f "$src/Makefile" ] || die "$tarball did not unpack to $src"
	touch "$src/.rmap-extracted"
fi

# 2. The patch, applied once: already applied when it reverses cleanly.
if patch -d "$src" -p1 -R --dry-run -s -f <"$patchfile" >/dev/null 2>&1; then
	echo "ground-truth: rmap tracepoints already applied"
else
	patch -d "$src" -p1 -s -f --dry-run <"$patchfile" >/dev/null ||
		die "rmap-tracepoints.patch does not apply to $src"
	patch -d "$src" -p1 -s -f <"$patchfile"
	echo "ground-truth: applied rmap-tracepoints.patch"
fi

# 3. The config: x86_64 defconfig, the suite's kselftest config fragment
#    (tools/testing/rmap/config: what the cases, triggers and backends use on
#    any kernel) and what this project's QEMU guest needs (virtio, 9p, ext4,
#    an initramfs, NUMA from ACPI), with no modules. Built into a scratch file
#    and moved over .config only when different, so a second run rebuilds
#    nothing. BTF (pahole turns the DWARF into it at the link) lets the bpf
#    backend attach fentry/fexit programs to the walk functions and fprobe
#    fetch arguments by name, as on Debian's kernels.
fragment=$here/../../tools/testing/rmap/config
[ -f "$fragment" ] || die "$fragment missing"
cfg=$src/.config.ground-truth
rm -f "$cfg"
(cd "$src" && KCONFIG_CONFIG=.config.ground-truth make -s ARCH=x86_64 defconfig >/dev/null)
suite=$(sed -n 's/^CONFIG_\([A-Z0-9_]*\)=y$/\1/p' "$fragment")
[ -n "$suite" ] || die "$fragment lists no CONFIG_...=y"
enable="
	$suite
	MODULES=n
	LOCALVERSION_AUTO=n
	PVH
	CMDLINE_BOOL
	X86_64_ACPI_NUMA NUMA_EMU
	COMPACTION
	KALLSYMS_ALL DEBUG_FS
	VIRTIO_MENU VIRTIO VIRTIO_PCI VIRTIO_BLK VIRTIO_CONSOLE
	NET_9P NET_9P_VIRTIO 9P_FS 9P_FS_POSIX_ACL
	EXT4_FS DEVTMPFS TMPFS BLK_DEV_INITRD
"
# What defconfig builds for real hardware that a QEMU guest with only virtio
# devices and no network never uses: a third of the build on two cores.
disable="
	DRM AGP SOUND USB_SUPPORT WLAN WIRELESS CFG80211 MAC80211 RFKILL
	NETFILTER NET_SCHED IPV6 ETHERNET NFS_FS
	ATA SCSI MD PCCARD INPUT_JOYSTICK INPUT_TABLET INPUT_TOUCHSCREEN
	SECURITY_SELINUX AUDIT HIBERNATION
	DEBUG_INFO_NONE DEBUG_INFO_REDUCED DEBUG_INFO_SPLIT
"
for opt in $disable; do
	enable="$enable $opt=n"
done
for opt in $enable; do
	case $opt in
	*=n) set -- --disable "${opt%=n}" ;;
	*) set -- --enable "$opt" ;;
	esac
	"$src/scripts/config" --file "$cfg" "$@"
done
"$src/scripts/config" --file "$cfg" --set-str LOCALVERSION "-rmap-truth"
# Under TCG with one socket per node the TSC fails the boot-time sync check
# and the kernel falls back to the HPET, on which this build's clock stalls
# (trace timestamps and ktime_get_ns() repeat for up to a tick, so walks
# and probe calibrations read 0 ns). The TSC of a TCG guest is the host's.
"$src/scripts/config" --file "$cfg" --set-str CMDLINE "tsc=reliable"
(cd "$src" && KCONFIG_CONFIG=.config.ground-truth make -s ARCH=x86_64 olddefconfig >/dev/null)

# Every option asked for must have survived olddefconfig (a missing
# dependency silently drops one).
for opt in $enable; do
	case $opt in
	*=n) grep -q "^CONFIG_${opt%=n}=" "$cfg" && die "CONFIG_${opt%=n} is still set" ;;
	*) grep -q "^CONFIG_$opt=y" "$cfg" || die "CONFIG_$opt did not stay =y" ;;
	esac
done
if cmp -s "$cfg" "$src/.config"; then
	rm -f "$cfg"
else
	mv "$cfg" "$src/.config"
	echo "ground-truth: wrote $src/.config"
fi

# 4. The image.
echo "ground-truth: building bzImage (make -j$jobs, nice $nice)"
(cd "$src" && nice -n "$nice" make -s ARCH=x86_64 -j"$jobs" bzImage)
release=$(cd "$src" && make -s ARCH=x86_64 kernelrelease)
cp "$src/arch/x86/boot/bzImage" "$out/bzImage.tmp"
mv "$out/bzImage.tmp" "$out/bzImage"
cp "$src/.config" "$out/config-$release"
echo "ground-truth: $out/bzImage ($release)"
