#!/bin/sh
# Build tandem as one static binary and install it with its systemd units.
#
#   scripts/install.sh [--enable | --enable-witness] [--dry-run]
#
# It builds with CGO_ENABLED=0 (no libc, no dynamic loader: the binary runs
# on any Linux of its architecture), checks that the result is static,
# installs it as /usr/local/bin/tandem (where the units expect it) and the
# units of contrib/systemd as /etc/systemd/system/tandem.service and
# tandem-witness.service, the documentation in /usr/share/doc/tandem, and
# creates /etc/tandem. It enables nothing
# unless asked: --enable enables tandem.service (a data node),
# --enable-witness tandem-witness.service (the witness); neither starts it.
#
# DESTDIR=DIR installs under DIR instead of / (for packaging; systemctl is
# then not run). GO names the go command (default: go).
set -eu

enable=""
dry=""
for arg in "$@"; do
	case "$arg" in
	--enable) enable=tandem.service ;;
	--enable-witness) enable=tandem-witness.service ;;
	--dry-run) dry=1 ;;
	-h | --help)
		sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "install.sh: unknown argument $arg (see --help)" >&2
		exit 2
		;;
	esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
destdir=${DESTDIR:-}
go=${GO:-go}
bindir=/usr/local/bin
unitdir=/etc/systemd/system

run() {
	echo "+ $*"
	[ -n "$dry" ] || "$@"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -z "$destdir" ] && [ "$(id -u)" != 0 ] && [ -z "$dry" ]; then
	echo "install.sh: installing to / needs root (or set DESTDIR)" >&2
	exit 1
fi

# -buildvcs=auto: `tandem version` names the commit in a git checkout even
# where GOFLAGS turns VCS stamping off, and a source tarball still builds.
echo "building $root/cmd/tandem (CGO_ENABLED=0)"
(cd "$root" && CGO_ENABLED=0 "$go" build -buildvcs=auto -o "$work/tandem" ./cmd/tandem)
"$work/tandem" version
if ! "$work/tandem" version | grep -q '^binary:  static'; then
	echo "install.sh: the binary is not static; not installing it" >&2
	exit 1
fi

run install -d -m 0755 "$destdir$bindir" "$destdir$unitdir"
run install -m 0755 "$work/tandem" "$destdir$bindir/tandem"
for unit in "$root"/contrib/systemd/*.service "$root"/contrib/systemd/*.timer; do
	run install -m 0644 "$unit" "$destdir$unitdir/$(basename "$unit")"
done
# The units' Documentation= points here.
run install -d -m 0755 "$destdir/usr/share/doc/tandem/docs"
run install -m 0644 "$root/README.md" "$destdir/usr/share/doc/tandem/README.md"
for doc in "$root"/docs/*.md; do
	run install -m 0644 "$doc" "$destdir/usr/share/doc/tandem/docs/$(basename "$doc")"
done
# Keys and the configuration live here, readable by root only.
run install -d -m 0700 "$destdir/etc/tandem"

if [ -z "$destdir" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	run systemctl daemon-reload
	if [ -n "$enable" ]; then
		run systemctl enable "$enable"
	fi
elif [ -n "$enable" ]; then
	echo "install.sh: not enabling $enable: systemd is not running here, or DESTDIR is set" >&2
fi

done="installed"
[ -z "$dry" ] || done="dry run: would have installed"
cat <<NEXT

$done $destdir$bindir/tandem and the units in $destdir$unitdir.
Next, on each member:
  tandem keygen                                   # once; copy /etc/tandem/cluster.key to every member
  tandem config example > /etc/tandem/tandem.yaml # then edit it: the same file on every member
  tandem config validate --local /etc/tandem/tandem.yaml
  systemctl enable --now tandem                   # a data node (tandem-witness on the witness)
NEXT
