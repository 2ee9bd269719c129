#!/usr/bin/env bash
# Builds SecuMon's two Debian packages with dpkg-deb, from the release binaries:
#   secumon        server, CLI, console and probe (`secumon`), secumon-server.service and
#                  secumon-probe.service, /etc/secumon/{rules,probe}.yaml, /etc/default/secumon-server
#   secumon-agent  the agent (the small `agent` profile), secumon-agent.service, /etc/secumon/agent.yaml
# Both create the `secumon` system user and /var/lib/secumon, and start nothing.
# Usage: scripts/package.sh [OUT_DIR]   (default target/debian; prints the .deb paths)
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-target/debian}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
arch="$(dpkg --print-architecture)"
maintainer="SecuMon developers <packages@secumon.org>"

cargo build --locked --release --bin secumon >&2
cargo build --locked --profile agent --bin secumon-agent >&2

# The shared libraries a binary needs, as Debian dependencies (dpkg-shlibdeps wants a source
# tree around it, so it gets a minimal one).
shlib_depends() {
    local work
    work="$(mktemp -d)"
    mkdir -p "$work/debian"
    printf 'Source: secumon\n\nPackage: secumon\nArchitecture: any\n' >"$work/debian/control"
    cp "$1" "$work/bin"
    (cd "$work" && dpkg-shlibdeps -O -e bin 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
    rm -rf "$work"
}

# stage PACKAGE BINARY UNITS STATE_DIRS SECTION SUMMARY DESCRIPTION: fills $root/DEBIAN.
stage() {
    local package="$1" binary="$2" units="$3" state_dirs="$4" section="$5" summary="$6" description="$7"
    local root="$out/stage/$package"
    local doc="$root/usr/share/doc/$package"
    install -d "$root/DEBIAN" "$doc" "$root/lib/systemd/system" "$root/usr/bin"
    install -m 0755 "$binary" "$root/usr/bin/"
    for unit in $units; do
        install -m 0644 "packaging/systemd/$unit" "$root/lib/systemd/system/"
    done
    install -m 0644 packaging/debian/copyright "$doc/copyright"
    # Rust links its crates statically; lintian takes unsafe-libyaml (serde_yaml's pure-Rust
    # translation of libyaml) for a copy of the C library.
    install -d "$root/usr/share/lintian/overrides"
    printf '%s: embedded-library libyaml [usr/bin/%s]\n' "$package" "$(basename "$binary")" \
        >"$root/usr/share/lintian/overrides/$package"
    chmod 0644 "$root/usr/share/lintian/overrides/$package"
    gzip -9nc packaging/debian/changelog >"$doc/changelog.gz"
    chmod 0644 "$doc/changelog.gz"
    # The manual page, made by Debian's help2man from the program's own --help and --version
    # (clap's help is the one reference, so the page cannot drift from it).
    local man="$root/usr/share/man/man1"
    install -d "$man"
    help2man --no-info --no-discard-stderr --section 1 --name "$summary" --version-string "$version" \
        "$binary" | gzip -9n >"$man/$(basename "$binary").1.gz"
    chmod 0644 "$man/$(basename "$binary").1.gz"
    for script in postinst prerm postrm; do
        sed -e "s|@UNITS@|$units|" -e "s|@STATE_DIRS@|$state_dirs|" "packaging/debian/$script" >"$root/DEBIAN/$script"
        chmod 0755 "$root/DEBIAN/$script"
    done
    # Every file under /etc is the operator's once installed (dpkg asks before replacing an edited one).
    (cd "$root" && find etc -type f 2>/dev/null | sort | sed 's|^|/|') >"$root/DEBIAN/conffiles"
    [ -s "$root/DEBIAN/conffiles" ] || rm "$root/DEBIAN/conffiles"
    local size depends
    size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
    depends="adduser, $(shlib_depends "$binary")"
    cat >"$root/DEBIAN/control" <<EOF
Package: $package
Source: secumon
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: $depends
Section: $section
Priority: optional
Homepage: https://secumon.org
Description: $summary
$(printf '%s\n' "$description" | fold -s -w 78 | sed -e 's/ *$//' -e 's/^/ /')
EOF
    (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
        >"$root/DEBIAN/md5sums"
    chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums" "$root/DEBIAN/conffiles" 2>/dev/null || true
    local deb="$out/${package}_${version}_${arch}.deb"
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
    echo "$deb"
}

rm -rf "$out/stage"

# secumon: the server, CLI, console and probe.
root="$out/stage/secumon"
install -d "$root/etc/secumon" "$root/etc/default" "$root/usr/share/doc/secumon/examples"
install -m 0644 packaging/etc/rules.yaml packaging/etc/probe.yaml "$root/etc/secumon/"
install -m 0644 packaging/etc/secumon-server.default "$root/etc/default/secumon-server"
install -m 0644 README.md "$root/usr/share/doc/secumon/"
install -m 0644 examples/alerting.yaml examples/probe.yaml examples/agent.yaml "$root/usr/share/doc/secumon/examples/"
stage secumon target/release/secumon "secumon-server.service secumon-probe.service" "server probe" net \
    "security and infrastructure monitoring server, CLI and probe" \
    "SecuMon monitors the servers and networks of a managed service provider's clients. This package holds the \`secumon\` program: the server (gRPC ingestion with mutual TLS, embedded SQLite or PostgreSQL store, alerting with four notification channels, REST API and WebSocket), the command line client, the terminal console, and the network probe (ping, traceroute, port scans, TLS analysis, HTTP, DNS and SNMP checks). Services are installed but not enabled."

# secumon-agent: the agent alone, for every monitored host.
root="$out/stage/secumon-agent"
install -d "$root/etc/secumon"
install -m 0644 packaging/etc/agent.yaml "$root/etc/secumon/"
stage secumon-agent target/agent/secumon-agent "secumon-agent.service" "agent" admin \
    "SecuMon monitoring agent" \
    "The SecuMon agent collects a host's CPU, memory, disk, network, process, systemd unit, container and log data and pushes it to a SecuMon server over gRPC with mutual TLS, keeping it on disk while the server is unreachable. Enroll it with \`secumon-agent setup\`, then enable secumon-agent.service."
