// Package integration holds flint's end-to-end tests. They build bin/flint,
// run it inside network namespaces the tests create (addresses from
// 198.18.0.0/15 only) and drive it with the real clients a machine room has:
// udhcpc, dhclient, atftp, curl, a dnsmasq next to it in proxy mode, and a
// PXE firmware stand-in (./pxeprobe).
//
// They need root (network namespaces) and a few Debian packages
// (scripts/install-deps.sh); run them with `sudo make test`. Without root they
// skip, unless CI=true, where a missing prerequisite is a failure.
package integration
