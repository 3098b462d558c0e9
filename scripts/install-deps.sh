#!/usr/bin/env bash
# Installs the Debian packages flint needs.
#   scripts/install-deps.sh            everything the tests use (make test)
#   scripts/install-deps.sh --runtime  only what `flint serve` needs (make run)
# Idempotent: asks apt only for packages dpkg does not have installed, so a
# re-run costs a few dpkg-query calls.
set -euo pipefail

RUNTIME=(
  ipxe            # /usr/lib/ipxe/{undionly.kpxe,ipxe.efi,snponly.efi}, served over TFTP
  ipmitool        # flint power / reprovision --reboot drive machines[].bmc of type ipmi through it (bmclib's ipmitool provider)
)
TEST=(
  iproute2        # ip netns / veth / bridge for the test networks
  udhcpc          # busybox DHCP client
  busybox-static  # the static busybox udhcpc comes from
  isc-dhcp-client # dhclient
  atftp           # TFTP client with blksize/tsize options
  curl            # HTTP and tftp:// client, /healthz polling
  dnsmasq-base    # the LAN's own DHCP server next to flint in proxy mode
  isc-dhcp-relay  # dhcrelay: a real DHCP relay (giaddr, option 82) between flint and remote segments
  etcd-server     # real etcd members: member replacement and cluster convergence tests, the etcd store backend (store, cmd/flint)
  etcd-client     # etcdctl, to check what the tests did to the cluster
  tcpdump         # captures a whole boot on the lab bridge: no secret crosses in clear
  nftables        # nft: a node of the two-flint cluster test drops one instance's DHCP answers, so its steps go to chosen instances
  # e2e suite (e2e/): real firmware in QEMU and the test OS it boots
  qemu-system-x86 # the VMs (always -accel tcg)
  ipxe-qemu       # QEMU's iPXE NIC ROMs (efi-virtio.rom, efi-e1000.rom)
  ovmf            # UEFI firmware with its own PXE and HTTP boot clients, and its Secure Boot build (.ms files)
  shim-signed     # Debian's Shim signed by Microsoft's UEFI CA: the first stage of a Secure Boot machine (e2e)
  grub-efi-amd64-signed # Debian's signed network GRUB (grubnetx64.efi.signed), loaded by Shim (e2e)
  grub-common     # grub-script-check: GRUB's own parser checks the configs flint writes
  cpio            # packs the test OS's initramfs
  libblkid-dev    # the real Ignition client links libblkid (cgo)
  pkg-config      # finds libblkid for the Ignition build
  gcc             # cgo for the Ignition build
  libc6-dev       # cgo for the Ignition build
  binutils        # strip: a smaller Ignition in the initramfs
  prometheus      # a real Prometheus scrapes /metrics; promtool checks the exposition
  systemd         # systemd-analyze verify/security checks deploy/systemd/flint.service
  chromium        # the web dashboard, driven headless by chromedp in the integration tests
  openipmi        # ipmi_sim: a real IPMI BMC (LAN, RMCP+) for flint power and reprovision --reboot
)

case "${1:-}" in
  --runtime) PACKAGES=("${RUNTIME[@]}") ;;
  "")        PACKAGES=("${RUNTIME[@]}" "${TEST[@]}") ;;
  *)         echo "usage: $0 [--runtime]" >&2; exit 2 ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != "installed" ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all present: ${PACKAGES[*]}"
  exit 0
fi

echo "install-deps: missing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: not root, cannot install: ${missing[*]}" >&2
  echo "install-deps: run 'sudo make deps' (or 'sudo make test'), or: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: apt-get update"
apt-get update -qq
echo "install-deps: apt-get install -y --no-install-recommends ${missing[*]}"
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: installed: ${missing[*]}"
