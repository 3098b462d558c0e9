package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/httpd"
	"github.com/flint-boot/flint/ignition"
	"github.com/flint-boot/flint/ipxe"
	"github.com/flint-boot/flint/pki"
	"github.com/flint-boot/flint/store"
)

// What serve checks and prints while it starts: ports it can bind, the
// serving certificate, profiles that render, readiness, the banner.

// checkPortFree binds the TCP address and lets it go again, so that a port
// another program holds stops flint before it creates its PKI. serve binds
// for real moments later; what fails then is still reported.
func checkPortFree(addr, field, source string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return bindError(addr, field, source, err)
	}
	return ln.Close()
}

// bindError says what to do about a port flint cannot bind.
func bindError(addr, field, source string, err error) error {
	if errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("listen on %s: %w: ports below 1024 need CAP_NET_BIND_SERVICE: run flint as root, from the systemd unit (AmbientCapabilities) or the container image (its binary carries the capability), or change %s in %s to a port above 1023", addr, err, field, source)
	}
	return fmt.Errorf("listen on %s: %w: is another server using the port? stop it, or change %s in %s", addr, err, field, source)
}

// servingTLS is the HTTPS listener's TLS: a certificate from flint's CA for
// the address machines use, and for this host.
func servingTLS(cfg *config.Config, secrets *pki.PKI) (*tls.Config, error) {
	ips := []netip.Addr{cfg.Server.AddressIP, netip.MustParseAddr("127.0.0.1")}
	if l, err := netip.ParseAddr(cfg.Server.Listen); err == nil && !l.IsUnspecified() {
		ips = append(ips, l)
	}
	kp, err := secrets.Serving([]string{"localhost"}, ips)
	if err != nil {
		return nil, fmt.Errorf("flint's HTTPS certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("flint's HTTPS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// checkRenders renders one machine of each kind (ignition.ValidateAll);
// profile and machine problems stop serve, missing assets are warnings.
func checkRenders(r *ignition.Renderer, log *slog.Logger) error {
	var fatal []string
	for _, p := range r.Problems() {
		if p.Kind == ignition.KindAsset {
			log.Warn("asset missing: nodes will wait for it", "problem", p.String())
			continue
		}
		fatal = append(fatal, p.String())
	}
	if len(fatal) > 0 {
		verb := " do not render"
		if len(fatal) == 1 {
			verb = " does not render"
		}
		return fmt.Errorf("%s%s:\n  %s\nfix the profiles (flint validate --config FILE shows the same list)", plural(len(fatal), "machine config", "machine configs"), verb, strings.Join(fatal, "\n  "))
	}
	return nil
}

// readiness is what /readyz checks (httpd.Readiness): flint can serve
// configs when the store answers a read (one machine record looked up by
// key: a read transaction, no scan) and the profiles load (no render).
type readiness struct {
	store interface {
		Machine(mac string) (store.Machine, bool, error)
	}
	renderer interface{ CheckProfiles() error }
	probe    string
}

func (r readiness) Ready() error {
	if _, _, err := r.store.Machine(r.probe); err != nil {
		return &httpd.NotReady{Check: "store", Err: err}
	}
	if err := r.renderer.CheckProfiles(); err != nil {
		return &httpd.NotReady{Check: "profiles", Err: err}
	}
	return nil
}

// readinessProbeKey is the record /readyz reads: the config's first machine
// (a missing record is still an answer).
func readinessProbeKey(cfg *config.Config) string {
	if len(cfg.Machines) > 0 {
		return cfg.Machines[0].MAC
	}
	return "00:00:00:00:00:00"
}

func knownMACs(cfg *config.Config) []string {
	out := make([]string, 0, len(cfg.Machines))
	for _, m := range cfg.Machines {
		out = append(out, m.MAC)
	}
	return out
}

func knownMachines(cfg *config.Config) []store.KnownMachine {
	out := make([]store.KnownMachine, 0, len(cfg.Machines))
	for _, m := range cfg.Machines {
		out = append(out, store.KnownMachine{MAC: m.MAC, Hostname: m.Hostname, Role: m.Role, ReservedIP: m.IPAddr})
	}
	return out
}

// localAddr is how a process on this host reaches flint's HTTP port.
func localAddr(listen string, port int) string {
	host := listen
	if host == "" || host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// waitHealthy returns once the HTTP port accepts, so the banner only claims what works.
func waitHealthy(ctx context.Context, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("http server did not come up on %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func printBanner(out io.Writer, cfg *config.Config, dataDir, assetsDir string, dhcpListening []string, tftpAddr, httpAddr, httpsAddr, adminToken string) {
	fmt.Fprintf(out, "flint %s serving %s\n", version, cfg.Source)
	fmt.Fprintf(out, "  address   %s (machines reach flint here)\n", cfg.Server.AddressIP)
	for _, l := range dhcpListening {
		fmt.Fprintf(out, "  %s\n", l)
	}
	fmt.Fprintf(out, "  tftp      udp %s, iPXE binaries from %s\n", tftpAddr, cfg.IPXE.Directory)
	if cfg.UsesSecureBoot() {
		fmt.Fprintf(out, "            Secure Boot: %s (%s), %s (%s), %s, /%sMAC/grub.cfg, /%s\n", tftpShim, cfg.Boot.Shim, tftpGrub, cfg.Boot.Grub, tftpGrubCfg, ipxe.GrubMachinePrefix, tftpAssets)
	}
	fmt.Fprintf(out, "  http      tcp %s, %s/boot.ipxe, assets from %s\n", httpAddr, cfg.HTTPBaseURL(), assetsDir)
	fmt.Fprintf(out, "  https     tcp %s, configs, node reports, admin API (token in %s)\n", httpsAddr, adminToken)
	fmt.Fprintf(out, "  admin     %s (flint machines, flint reprovision)\n", socketPath(dataDir))
	fmt.Fprintf(out, "  data      %s\n", dataDir)
	if cfg.Store.Backend == config.StoreEtcd {
		fmt.Fprintf(out, "  state     etcd %s, keys under %s (shared with other flint instances)\n", strings.Join(cfg.Store.Endpoints, ","), cfg.Store.Prefix)
	} else {
		fmt.Fprintf(out, "  state     %s\n", filepath.Join(dataDir, store.FileName))
	}
	fmt.Fprintf(out, "machines (%d):\n", len(cfg.Machines))
	for _, m := range cfg.Machines {
		fmt.Fprintf(out, "  %-8s %-17s %-15s %s\n", m.Hostname, m.MAC, m.IP, m.Role)
	}
	if cfg.DHCP.DiscoverUnknown {
		fmt.Fprintln(out, "unknown machines are booted too (dhcp.discover_unknown)")
	}
}
