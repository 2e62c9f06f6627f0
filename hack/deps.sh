#!/usr/bin/env bash
# make deps (and make test, test-host, realnode, demo, node-up before anything
# else): the Debian packages the tests and the real node need. Run as root on
# Debian, it installs what is missing (valkey-server and valkey-tools 8 from
# bookworm-backports, adding that suite to apt's sources if it is not there);
# otherwise it prints what to install and exits 1. With everything present it
# does nothing and prints nothing.
#
#   valkey-server 8, valkey-cli       the tests that run real Valkey nodes
#   make, git                         the build
#   containerd, runc, CNI plugins,    the real node (make node-up, test/realnode)
#   iptables, ipset, conntrack,
#   busybox-static (the images'
#   shell), openssl, iproute2
set -euo pipefail

need=()
for pkg in make:make git:git containerd:containerd runc:runc iptables:iptables ipset:ipset \
  conntrack:conntrack busybox:busybox-static openssl:openssl ip:iproute2 ss:iproute2; do
  command -v "${pkg%%:*}" > /dev/null || need+=("${pkg#*:}")
done
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
backports=()
if ! valkey-server --version 2> /dev/null | grep -q 'v=8\.' || ! command -v valkey-cli > /dev/null; then
  backports+=(valkey-server valkey-tools)
fi
[[ ${#need[@]} -gt 0 || ${#backports[@]} -gt 0 ]] || exit 0
if [[ ${#need[@]} -gt 0 ]]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
fi

if [[ $(id -u) -ne 0 || ! -f /etc/debian_version ]] || ! command -v apt-get > /dev/null; then
  echo "deps: missing: ${need[*]} ${backports[*]}" >&2
  echo "deps: on Debian bookworm, as root:" >&2
  [[ ${#need[@]} -eq 0 ]] || echo "  apt-get install --no-install-recommends ${need[*]}" >&2
  if [[ ${#backports[@]} -gt 0 ]]; then
    echo "  add bookworm-backports to apt's sources (Types: deb, URIs: http://deb.debian.org/debian, Suites: bookworm-backports, Components: main), then" >&2
    echo "  apt-get update && apt-get install --no-install-recommends -t bookworm-backports ${backports[*]}" >&2
  fi
  echo "deps: or run make as root on Debian, which installs them" >&2
  exit 1
fi

echo "deps: installing ${need[*]} ${backports[*]}" >&2
if [[ ${#backports[@]} -gt 0 ]] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat > /etc/apt/sources.list.d/bookworm-backports.sources << 'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
fi
apt-get update
if [[ ${#need[@]} -gt 0 ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
if [[ ${#backports[@]} -gt 0 ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -t bookworm-backports "${backports[@]}"
fi
