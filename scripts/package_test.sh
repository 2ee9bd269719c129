#!/usr/bin/env bash
# Proves the Debian packages (run by scripts/test, as root):
#   1. scripts/package.sh builds secumon and secumon-agent;
#   2. lintian finds no error in either, and each has a manual page made from its --help;
#   3. systemd-analyze verifies the three units and scores their exposure
#      (`security --offline=true`), each lower (safer) than Debian's unit for
#      prometheus-node-exporter scored in the same run;
#   4. both install into a throw-away Debian root (debootstrap, cached in target/), with their
#      maintainer scripts run by dpkg there: the secumon user, /var/lib/secumon, conffiles,
#      the installed binaries (--version, secumon-agent --check and secumon config/rules check
#      on the shipped files), an edited conffile kept on reinstall, and purge.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "package_test: FAIL: $*" >&2; exit 1; }

missing=()
command -v lintian >/dev/null || missing+=(lintian)
command -v help2man >/dev/null || missing+=(help2man)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v systemd-analyze >/dev/null || missing+=(systemd)
[ -f /lib/systemd/system/prometheus-node-exporter.service ] || missing+=(prometheus-node-exporter)
if [ ${#missing[@]} -gt 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null
fi

out=target/debian
mapfile -t debs < <(scripts/package.sh "$out")
[ ${#debs[@]} -eq 2 ] || fail "expected two packages, got: ${debs[*]}"
echo "package_test: built ${debs[*]}"

# 2. lintian: errors fail; warnings are printed.
lintian --fail-on error --tag-display-limit 0 "${debs[@]}" || fail "lintian found errors"

# 3. The units, from the packages' own files.
files="$(mktemp -d)"
trap 'rm -rf "$files"' EXIT
for deb in "${debs[@]}"; do dpkg-deb -x "$deb" "$files"; done
# The manual pages: the programs' own help, subcommands and options included.
zgrep -qx 'agents' "$files/usr/share/man/man1/secumon.1.gz" || fail "secumon.1 does not list its commands"
zgrep -q 'monitor\\-service' "$files/usr/share/man/man1/secumon-agent.1.gz" || fail "secumon-agent.1 lacks its options"
# systemd's own units beside ours, for the targets ours name (sysinit.target...).
cp -an /lib/systemd/system/. "$files/lib/systemd/system/"
units=(secumon-server.service secumon-agent.service secumon-probe.service)
for unit in "${units[@]}"; do
    [ -f "$files/lib/systemd/system/$unit" ] || fail "$unit is not in the packages"
    # verify resolves ExecStart= against the root the packages were unpacked into.
    if ! verify_output="$(systemd-analyze verify --root="$files" "$files/lib/systemd/system/$unit" 2>&1)" \
        || [ -n "$verify_output" ]; then
        fail "systemd-analyze verify $unit: $verify_output"
    fi
done
exposure() { systemd-analyze security --offline=true "$1" 2>&1 | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p'; }
node_exporter="$(exposure /lib/systemd/system/prometheus-node-exporter.service)"
[ -n "$node_exporter" ] || fail "no exposure score for prometheus-node-exporter.service"
echo "package_test: exposure prometheus-node-exporter.service (Debian) $node_exporter"
for unit in "${units[@]}"; do
    score="$(exposure "$files/lib/systemd/system/$unit")"
    echo "package_test: exposure $unit $score"
    awk -v ours="$score" -v theirs="$node_exporter" 'BEGIN { exit !(ours != "" && ours < theirs) }' \
        || fail "$unit scores $score, not below node_exporter's $node_exporter"
done

# 4. A throw-away Debian root with dpkg, adduser and nothing of ours.
base=target/package-root-base
if [ ! -x "$base/usr/sbin/adduser" ]; then
    rm -rf "$base"
    debootstrap --variant=minbase --include=adduser "$(. /etc/os-release && echo "$VERSION_CODENAME")" \
        "$base" http://deb.debian.org/debian >/dev/null
fi
root="$(mktemp -d /var/tmp/secumon-package-root.XXXXXX)"
trap 'rm -rf "$files" "$root"' EXIT
cp -a "$base/." "$root/"
cp "${debs[@]}" "$root/tmp/"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

in_root sh -c 'dpkg -i /tmp/*.deb' >/dev/null || fail "dpkg -i in the throw-away root"
in_root getent passwd secumon | grep -q ':/var/lib/secumon:/usr/sbin/nologin$' \
    || fail "no secumon system user: $(in_root getent passwd secumon)"
[ "$(in_root stat -c '%U:%G %a' /var/lib/secumon)" = "secumon:secumon 750" ] \
    || fail "/var/lib/secumon is $(in_root stat -c '%U:%G %a' /var/lib/secumon)"
for conffile in /etc/secumon/agent.yaml /etc/secumon/probe.yaml /etc/secumon/rules.yaml /etc/default/secumon-server; do
    in_root dpkg-query --showformat='${Conffiles}\n' --show secumon secumon-agent | grep -q " $conffile " \
        || fail "$conffile is not a conffile"
done
[ -z "$(in_root sh -c 'ls /etc/systemd/system/multi-user.target.wants 2>/dev/null | grep secumon')" ] \
    || fail "a unit was enabled without being asked"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
in_root secumon --version | grep -qx "secumon $version" || fail "secumon --version: $(in_root secumon --version)"
in_root secumon-agent --version | grep -qx "secumon-agent $version" || fail "secumon-agent --version"
in_root secumon-agent --check --config /etc/secumon/agent.yaml || fail "the shipped agent.yaml"
in_root secumon config check /etc/secumon/probe.yaml || fail "the shipped probe.yaml"
in_root secumon rules check /etc/secumon/rules.yaml || fail "the shipped rules.yaml"

# An operator's edit survives a reinstall; purge removes the state but keeps the user.
echo "# edited by the operator" >>"$root/etc/secumon/agent.yaml"
in_root sh -c 'dpkg -i --force-confold /tmp/secumon-agent_*.deb' >/dev/null || fail "reinstalling secumon-agent"
grep -q "edited by the operator" "$root/etc/secumon/agent.yaml" || fail "the edited conffile was replaced"
in_root install -d -o secumon -g secumon /var/lib/secumon/agent /var/lib/secumon/server
in_root dpkg --purge secumon-agent >/dev/null || fail "purging secumon-agent"
[ ! -e "$root/var/lib/secumon/agent" ] || fail "purge left /var/lib/secumon/agent"
[ -d "$root/var/lib/secumon/server" ] || fail "purging the agent removed the server's state"
[ ! -e "$root/etc/secumon/agent.yaml" ] || fail "purge left /etc/secumon/agent.yaml"
in_root dpkg --purge secumon >/dev/null || fail "purging secumon"
[ ! -e "$root/var/lib/secumon" ] || fail "purge left /var/lib/secumon"
in_root getent passwd secumon >/dev/null || fail "purge removed the secumon user"

echo "package_test: ok"
