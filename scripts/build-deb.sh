#!/usr/bin/env bash
# Builds ora's Debian package: target/debian/ora_VERSION_ARCH.deb (prints its path).
# What goes where comes from scripts/install.sh, staged with DESTDIR (prefix /usr, units in
# /lib/systemd/system); this adds the package's metadata and maintainer scripts from
# packaging/debian/ and strips the binary. Needs dpkg-deb (Debian's dpkg).
#
# Usage: scripts/build-deb.sh [--binary PATH] [--version V] [--out DIR]
#   --binary PATH  package this binary (default: cargo build --release, target/release/ora)
#   --version V    the package's version (default: the version in Cargo.toml)
#   --out DIR      where the .deb goes (default: target/debian)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
binary=""
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/Cargo.toml" | head -n1)
out=$here/target/debian
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --version) version=${2:?--version needs a version}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "build-deb.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $version in
  ''|*[!0-9A-Za-z.+~-]*) echo "build-deb.sh: $version is not a Debian version" >&2; exit 2 ;;
esac
if [ -z "$binary" ]; then
  (cd "$here" && cargo build --release --locked)
  binary=$here/target/release/ora
fi
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
DESTDIR=$stage "$here/scripts/install.sh" --binary "$binary" --prefix /usr \
  --unit-dir /lib/systemd/system --no-start >/dev/null
# The database and backup directories belong to the data, not to the package: the postinst
# makes them, and nothing removes them.
rmdir "$stage/var/lib/ora" "$stage/var/backups/ora"
rmdir "$stage/var/lib" "$stage/var/backups" "$stage/var"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/ora"

doc=$stage/usr/share/doc/ora
install -m 0644 "$here/packaging/debian/copyright" "$doc/copyright"
{
  echo "ora ($version) unstable; urgency=medium"
  echo
  echo "  * Package built from the ora source tree (git log has the changes)."
  echo
  echo " -- ora maintainers <packaging@ora-ledger.org>  $(LC_ALL=C date -u -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

install -d -m 0755 "$stage/DEBIAN"
for f in postinst prerm postrm; do
  install -m 0755 "$here/packaging/debian/$f" "$stage/DEBIAN/$f"
done
install -m 0644 "$here/packaging/debian/conffiles" "$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
  "$here/packaging/debian/control.in" >"$stage/DEBIAN/control"
(cd "$stage" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) \
  >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/control"

mkdir -p "$out"
deb=$out/ora_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
