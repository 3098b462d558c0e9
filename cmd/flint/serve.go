package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/flint-boot/flint/atomicfile"
	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/dhcp"
	"github.com/flint-boot/flint/events"
	"github.com/flint-boot/flint/httpd"
	"github.com/flint-boot/flint/ignition"
	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/pki"
	"github.com/flint-boot/flint/store"
	"github.com/flint-boot/flint/tftp"
)

// runtimeFile in the data directory tells other flint commands how to reach the
// running server (they cannot open the database while serve holds it).
const runtimeFile = "serve.json"

type runtimeInfo struct {
	PID     int    `json:"pid"`
	HTTPURL string `json:"http_url"` // a URL reachable from this host
	Config  string `json:"config"`
	Started string `json:"started"`
}

func newServeCmd(g *globalFlags) *cobra.Command {
	var path, data string
	cmd := &cobra.Command{
		Use:   "serve [--config FILE] [--data DIR]",
		Short: "Run the DHCP, TFTP and HTTP servers",
		Long: `serve answers DHCP, TFTP and HTTP for the machines in the config until it
gets SIGINT or SIGTERM. Without --config it runs the embedded example cluster
in proxy mode: it hands out no addresses and answers only the PXE requests of
the listed MACs, so starting it on an unknown network is safe.

Leases and machine records are kept in DIR/flint.db; boot files are served
from DIR/assets unless boot.assets_dir says otherwise. Binding ports 67, 69 and
4011 needs root (or CAP_NET_BIND_SERVICE and CAP_NET_RAW).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			cfg, err := loadConfig(path)
			if err != nil {
				return fmt.Errorf("%w\nfix the config (flint validate --config FILE shows every problem)", err)
			}
			return serve(cmd.Context(), cmd.OutOrStdout(), cfg, data, log)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file (default: the embedded example cluster, proxy mode)")
	cmd.Flags().StringVarP(&data, "data", "d", "./flint-data", "data directory for leases, machine records and assets")
	return cmd
}

func serve(parent context.Context, out io.Writer, cfg *config.Config, dataDir string, log *slog.Logger) error {
	if parent == nil {
		parent = context.Background()
	}
	for _, w := range cfg.Warnings {
		log.Warn("config", "problem", w.Located(cfg.Source))
	}
	if err := cfg.ResolveAddress(); err != nil {
		return err
	}
	st, err := store.OpenBolt(dataDir, false, store.WithLimits(store.Limits{Discovered: cfg.Limits.DiscoveredMachines, Events: cfg.Limits.TimelineEvents}))
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("%w: another flint serve uses --data %s; stop it or pick another data directory", err, dataDir)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.SyncConfig(knownMachines(cfg)); err != nil {
		return fmt.Errorf("record the config's machines: %w", err)
	}

	assetsDir := assetsDirOf(cfg, dataDir)
	if err := os.MkdirAll(assetsDir, 0o755); err != nil {
		return fmt.Errorf("create assets directory: %w", err)
	}

	ctx, stop := signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	secrets, err := pki.Open(filepath.Join(dataDir, "pki"), time.Now, log.With("service", "pki"))
	if err != nil {
		return fmt.Errorf("open the PKI: %w", err)
	}
	renderer, err := ignition.NewRenderer(cfg, secrets, assetsDir, log.With("service", "ignition"))
	if err != nil {
		return err
	}
	// Refuse a config whose profiles don't render: nodes would get nothing
	// usable. Missing assets only warn: the operator may place them while
	// flint runs (nodes asking meanwhile get 503 and retry).
	if err := checkRenders(renderer, log); err != nil {
		return err
	}
	lc := lifecycle.New(cfg, st, etcdConnector(secrets, log.With("service", "etcd")), log.With("service", "lifecycle"))
	renderer.ClusterState = lc.ClusterState

	// The recorder learns which MAC is at which address from DHCP and script
	// requests, so TFTP and asset downloads land on the right timeline.
	rec := events.New(st, log.With("service", "events"))
	dhcpSrv, err := dhcp.New(cfg, rec, log.With("service", "dhcp"))
	if err != nil {
		return err
	}
	tftpSrv := tftp.New(cfg.IPXE.Directory, log.With("service", "tftp"))
	tftpSrv.OnTransfer = func(client netip.Addr, file string, n int64, d time.Duration, err error) {
		detail := fmt.Sprintf("%d bytes in %s", n, d.Round(time.Millisecond))
		if err != nil {
			detail = "failed: " + err.Error()
		}
		rec.RecordFromIP(client, "tftp "+file, detail)
	}
	httpSrv := httpd.New(cfg, rec, assetsDir, log.With("service", "http"))
	httpSrv.Timeline = rec.RecordFromIP
	httpSrv.Ignition = renderer
	httpSrv.Lifecycle = lc

	listen := cfg.Server.Listen
	tftpAddr := net.JoinHostPort(listen, strconv.Itoa(cfg.Server.TFTPPort))
	httpAddr := net.JoinHostPort(listen, strconv.Itoa(cfg.Server.HTTPPort))

	// Every service runs until ctx ends; the first one to fail stops the others.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan error, 3)
	run := func(name string, f func(context.Context) error) {
		go func() {
			err := f(ctx)
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
				cancel(err)
			}
			done <- err
		}()
	}
	run("dhcp", dhcpSrv.Serve)
	run("tftp", func(ctx context.Context) error { return tftpSrv.Serve(ctx, tftpAddr) })
	run("http", func(ctx context.Context) error { return httpSrv.Serve(ctx, httpAddr) })

	if err := waitHealthy(ctx, localURL(listen, cfg.Server.HTTPPort)); err != nil {
		cancel(err)
	} else {
		printBanner(out, cfg, dataDir, assetsDir, dhcpSrv.Listening(), tftpAddr, httpAddr)
		if err := writeRuntime(dataDir, runtimeInfo{PID: os.Getpid(), HTTPURL: localURL(listen, cfg.Server.HTTPPort), Config: cfg.Source, Started: time.Now().UTC().Format(time.RFC3339)}); err != nil {
			log.Warn("could not write runtime file; flint machines will not reach this server", "err", err)
		}
		defer os.Remove(filepath.Join(dataDir, runtimeFile))
		log.Info("flint ready", "config", cfg.Source, "address", cfg.Server.AddressIP, "machines", len(cfg.Machines))
	}

	var first error
	for range 3 {
		if err := <-done; err != nil && first == nil {
			first = err
		}
	}
	if cause := context.Cause(ctx); first == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		first = cause
	}
	if first == nil {
		log.Info("flint stopped")
	}
	return first
}

// checkRenders renders every machine once; profile and machine problems stop
// serve, missing assets are warnings.
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
		return fmt.Errorf("%d machine config(s) do not render:\n  %s\nfix the profiles (flint validate --config FILE shows the same list)", len(fatal), strings.Join(fatal, "\n  "))
	}
	return nil
}

func knownMachines(cfg *config.Config) []store.KnownMachine {
	out := make([]store.KnownMachine, 0, len(cfg.Machines))
	for _, m := range cfg.Machines {
		out = append(out, store.KnownMachine{MAC: m.MAC, Hostname: m.Hostname, Role: m.Role, ReservedIP: m.IPAddr})
	}
	return out
}

// localURL is how a process on this host reaches flint's HTTP server.
func localURL(listen string, port int) string {
	host := listen
	if host == "" || host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// waitHealthy returns once /healthz answers, so the banner only claims what works.
func waitHealthy(ctx context.Context, base string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		conn, err := net.DialTimeout("tcp", base[len("http://"):], 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("http server did not come up on %s: %w", base, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func printBanner(out io.Writer, cfg *config.Config, dataDir, assetsDir string, dhcpListening []string, tftpAddr, httpAddr string) {
	fmt.Fprintf(out, "flint %s serving %s\n", version, cfg.Source)
	fmt.Fprintf(out, "  address   %s (machines reach flint here)\n", cfg.Server.AddressIP)
	for _, l := range dhcpListening {
		fmt.Fprintf(out, "  %s\n", l)
	}
	fmt.Fprintf(out, "  tftp      udp %s, iPXE binaries from %s\n", tftpAddr, cfg.IPXE.Directory)
	fmt.Fprintf(out, "  http      tcp %s, %s/boot.ipxe, assets from %s\n", httpAddr, cfg.HTTPBaseURL(), assetsDir)
	fmt.Fprintf(out, "  data      %s\n", dataDir)
	fmt.Fprintf(out, "machines (%d):\n", len(cfg.Machines))
	for _, m := range cfg.Machines {
		fmt.Fprintf(out, "  %-8s %-17s %-15s %s\n", m.Hostname, m.MAC, m.IP, m.Role)
	}
	if cfg.DHCP.DiscoverUnknown {
		fmt.Fprintln(out, "unknown machines are booted too (dhcp.discover_unknown)")
	}
}

// readRuntime finds the running flint serve of dataDir; lockErr is why the
// database could not be opened directly, kept in the message.
func readRuntime(dataDir string, lockErr error) (runtimeInfo, error) {
	var info runtimeInfo
	b, err := os.ReadFile(filepath.Join(dataDir, runtimeFile))
	if err != nil {
		return info, fmt.Errorf("%w, and %s is missing, so the server can't be asked: %v", lockErr, runtimeFile, err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("%s is corrupt: %w", runtimeFile, err)
	}
	return info, nil
}

// writeRuntime replaces DIR/serve.json atomically.
func writeRuntime(dir string, info runtimeInfo) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, runtimeFile), b, 0o644)
}
