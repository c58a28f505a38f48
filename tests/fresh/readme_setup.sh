#!/usr/bin/env bash
# Follows the README's set-up literally on a stock Debian 12 made from Debian's own packages (debootstrap),
# the way a new user would: a copy of the repository, then the README's two commands, nothing added by hand.
# Given a ROOTFS made beforehand (e.g. Ubuntu 24.04: debootstrap --variant=minbase --components=main,universe
# noble DIR http://archive.ubuntu.com/ubuntu /usr/share/debootstrap/scripts/gutsy), it runs there instead.
# Needs root, debootstrap and network access to deb.debian.org and PyPI; takes 10 to 20 minutes.
# Not part of the pytest suite (it builds a whole system); run it before changing the README's set-up:
#   bash tests/fresh/readme_setup.sh [ROOTFS]     (default /var/tmp/edgeq-fresh-bookworm, reused when present)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
rootfs=${1:-/var/tmp/edgeq-fresh-bookworm}

if [ ! -x "$rootfs/usr/bin/apt-get" ]; then
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian
fi
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
rm -rf "$rootfs/root/edgeq"
git -C "$repo" archive --format=tar --prefix=edgeq/ HEAD | tar -x -C "$rootfs/root"

# The README's commands: the first line of each ```sh block in its "Set-up" section.
mapfile -t commands < <(awk '/^## Set-up/{s=1; next} /^## /{s=0} s && /^```sh/{getline; print}' "$repo/README.md")
if [ "${#commands[@]}" -ne 2 ]; then
    echo "readme_setup.sh: expected two set-up commands in README.md, found ${#commands[@]}" >&2
    exit 1
fi

# Where this host reaches PyPI through a proxy with its own certificate authority (PIP_CERT), the fresh system
# gets the same trust: part of the network, not of the set-up under test.
network_env=()
if [ -n "${PIP_CERT:-}" ]; then
    cp "$PIP_CERT" "$rootfs/etc/edgeq-network-ca.crt"
    network_env=(PIP_CERT=/etc/edgeq-network-ca.crt)
fi

system=$(. "$rootfs/etc/os-release" && echo "$PRETTY_NAME")
mount --bind /proc "$rootfs/proc"
trap 'umount "$rootfs/proc"' EXIT
for command in "${commands[@]}"; do
    echo "readme_setup.sh: running in a fresh $system: $command"
    chroot "$rootfs" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        TERM=dumb "${network_env[@]}" bash -c "cd /root/edgeq && $command"
done
echo "readme_setup.sh: both README commands succeeded on a fresh $system"
