#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Everything the suite and its tests need on a Debian/Ubuntu machine:
# QEMU and the guest's initramfs tools from apt, the Python packages in a
# virtual environment (.venv). Safe to run again; quick when done already.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$here/.venv}
python=${PYTHON:-python3}
packages="qemu-system-x86 busybox-static e2fsprogs zstd shellcheck python3-venv xz-utils cpio"

missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
# The guest kernel is fetched with apt-get download: it needs current lists.
if [ -n "$missing" ] || ! apt-cache search --names-only '^linux-image-6\.12' | grep -q unsigned; then
	echo "setup: apt-get update" >&2
	$sudo apt-get update -qq
fi
if [ -n "$missing" ]; then
	echo "setup: apt-get install$missing" >&2
	# shellcheck disable=SC2086 # word splitting of the package list is wanted
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >&2
fi

if [ ! -x "$venv/bin/python" ]; then
	echo "setup: $python -m venv $venv" >&2
	"$python" -m venv "$venv"
fi
stamp="$venv/.rmapbench-installed"
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
	echo "setup: pip install -e '.[dev]'" >&2
	"$venv/bin/python" -m pip install -q --upgrade pip >&2
	"$venv/bin/python" -m pip install -q -e "${here}[dev]" >&2
	touch "$stamp"
fi
