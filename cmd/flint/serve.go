package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/dhcp"
	"github.com/flint-boot/flint/events"
	"github.com/flint-boot/flint/httpd"
	"github.com/flint-boot/flint/ignition"
	"github.com/flint-boot/flint/ipxe"
	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/metrics"
	"github.com/flint-boot/flint/pki"
	"github.com/flint-boot/flint/store"
	"github.com/flint-boot/flint/tftp"
)

func newServeCmd(g *globalFlags) *cobra.Command {
	var path, data string
	cmd := &cobra.Command{
		Use:   "serve [--config FILE] [--data DIR]",
		Short: "Run the DHCP, TFTP and HTTP servers",
		Long: `serve answers DHCP, TFTP and HTTP for the machines in the config until it
gets SIGINT or SIGTERM. Without --config it runs the embedded example cluster
in proxy mode: it hands out no addresses and answers only the PXE requests of
the listed MACs, so starting it on an unknown network is safe.

Leases and machine records are kept in DIR/flint.db, or in the etcd cluster
the config's store section names (store.backend: etcd); boot files are served
from DIR/assets unless boot.assets_dir says otherwise. Binding ports 67, 69 and
4011 needs root (or CAP_NET_BIND_SERVICE and CAP_NET_RAW).`,
		Args: noArgs("pass the config with --config FILE and the data directory with --data DIR"),
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
	assetsDir := assetsDirOf(cfg, dataDir)
	if err := cfg.CheckDataDir(dataDir); err != nil {
		return fmt.Errorf("%w\nfix the config (flint validate --config FILE --data DIR shows every problem)", err)
	}
	if cfg.Store.Backend == config.StoreEtcd {
		// bbolt locks DATA/flint.db; with etcd the data directory (admin
		// socket, assets, the PKI copy) is still one serve's.
		unlock, err := lockDataDir(dataDir)
		if err != nil {
			return err
		}
		defer unlock()
	}
	st, err := openStore(cfg, dataDir, storeServe)
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
	if err := os.MkdirAll(assetsDir, 0o755); err != nil {
		return fmt.Errorf("create assets directory: %w", err)
	}

	listen := cfg.Server.Listen
	tftpAddr := net.JoinHostPort(listen, strconv.Itoa(cfg.Server.TFTPPort))
	httpAddr := net.JoinHostPort(listen, strconv.Itoa(cfg.Server.HTTPPort))
	httpsAddr := net.JoinHostPort(listen, strconv.Itoa(cfg.Server.HTTPSPort))
	// A busy port is the usual failed start: find it before the PKI exists.
	if err := checkPortFree(httpAddr, "server.http_port", cfg.Source); err != nil {
		return err
	}
	if err := checkPortFree(httpsAddr, "server.https_port", cfg.Source); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// A PKI this start creates in DATA/pki is removed again if flint stops
	// before it serves: no CA or token that no machine ever got stays
	// behind. This defer runs last, after the background render stopped
	// writing to it. A PKI in an etcd store stays: another instance may
	// have read it (and handed certificates out) the moment it was written.
	pkiDir := filepath.Join(dataDir, "pki")
	pkiStore, err := pkiStorage(cfg, dataDir, st)
	if err != nil {
		return err
	}
	ready := false
	if _, err := os.Lstat(pkiDir); errors.Is(err, fs.ErrNotExist) && cfg.Store.Backend != config.StoreEtcd {
		defer func() {
			if ready {
				return
			}
			if err := os.RemoveAll(pkiDir); err != nil {
				log.Warn("could not remove the PKI this failed start created", "dir", pkiDir, "err", err.Error())
			}
		}()
	}
	if cfg.Store.Backend == config.StoreEtcd {
		if err := carryPKIIntoEtcd(pkiDir, pkiStore, log); err != nil {
			return err
		}
	}
	secrets, err := pki.OpenStorage(pkiStore, time.Now, log.With("service", "pki"))
	if err != nil {
		return fmt.Errorf("open the PKI: %w", err)
	}
	if cfg.Store.Backend == config.StoreEtcd {
		warnStalePKIDir(pkiDir, secrets, log)
	}
	tlsCfg, err := servingTLS(cfg, secrets)
	if err != nil {
		return err
	}
	renderer, err := ignition.NewRenderer(cfg, secrets, assetsDir, ignition.RenderOptions{Log: log.With("service", "ignition"), MaxCached: cfg.Limits.RenderedConfigs, MaxCachedBytes: cfg.Limits.RenderedConfigMiB << 20})
	if err != nil {
		return err
	}
	// Refuse a config whose profiles don't render: nodes would get nothing
	// usable. Missing assets only warn: the operator may place them while
	// flint runs (nodes asking meanwhile get 503 and retry).
	if err := checkRenders(renderer, log); err != nil {
		return err
	}
	warnMissingBootFiles(cfg, assetsDir, log)

	// The recorder learns which MAC is at which address from DHCP and script
	// requests, so TFTP and asset downloads land on the right timeline.
	rec := events.New(st, events.Options{
		UnknownPerMinute: cfg.Limits.UnknownEventsPerMinute,
		MaxAddresses:     len(cfg.Machines) + cfg.Limits.DiscoveredMachines,
		Pending:          cfg.Limits.PendingEvents,
		Known:            knownMACs(cfg),
		Instance:         instanceID(cfg),
	}, log.With("service", "events"))
	defer rec.Stop() // writes what is queued, before the store closes
	met := metrics.New(version)
	// Instances sharing an etcd store serve secrets only while they agree
	// on the site (nothing to agree on with bolt).
	agreed, withdraw, err := startAgreement(ctx, cfg, st, met, log.With("service", "store"))
	if err != nil {
		return err
	}
	defer withdraw() // before the store closes
	var agreedFn func() (bool, string)
	var lock func(context.Context, string) (func(), error)
	if agreed != nil {
		agreedFn = agreed.Agreed
	}
	if es, ok := st.(*store.Etcd); ok {
		lock = es.Lock // etcd membership changes one at a time across instances
	}
	lc, err := lifecycle.New(cfg, rec, lifecycle.Options{
		Connect:   etcdConnector(secrets, log.With("service", "etcd")),
		ReportKey: secrets.ReportKey(),
		Log:       log.With("service", "lifecycle"),
		Metrics:   met,
		Agreed:    agreedFn,
		Lock:      lock,
	})
	if err != nil {
		return err
	}
	defer lc.Close() // before the store closes: a running rejoin still writes
	dhcpSrv, err := dhcp.New(cfg, rec, log.With("service", "dhcp"), met)
	if err != nil {
		return err
	}
	secureBoot, err := secureBootFiles(cfg)
	if err != nil {
		return err
	}
	var tftpDirs map[string]string
	var grubConfig func(netip.Addr, string) ([]byte, error)
	if secureBoot != nil {
		tftpDirs = map[string]string{tftpAssets: assetsDir}
		grubConfig = grubConfigs(cfg, lc, log.With("service", "tftp"))
	}
	tftpSrv := tftp.New(cfg.IPXE.Directory, tftp.Options{
		Named:          secureBoot,
		Dirs:           tftpDirs,
		GeneratePrefix: ipxe.GrubMachinePrefix,
		Generate:       grubConfig,
		MaxTransfers:   cfg.Limits.TFTPTransfers,
		MaxPerClient:   cfg.Limits.TFTPTransfersPerClient,
		Interface:      cfg.Server.Interface, // used only while server.listen is empty
		OnTransfer: func(client netip.Addr, file string, n int64, d time.Duration, err error) {
			detail := fmt.Sprintf("%d bytes in %s", n, d.Round(time.Millisecond))
			if err != nil {
				detail = "failed: " + err.Error()
			}
			rec.RecordFromIP(client, "tftp "+file, detail)
			met.TFTPTransfer(file, n, err == nil)
		},
	}, log.With("service", "tftp"))
	registerCounts(met, cfg, rec, dhcpSrv, tftpSrv, assetsDir)
	httpSrv, err := httpd.New(httpd.Options{
		Config:     cfg,
		State:      rec,
		Timeline:   rec,
		Lifecycle:  lc,
		Renderer:   renderer,
		Readiness:  readiness{store: st, renderer: renderer, probe: readinessProbeKey(cfg)},
		AssetsDir:  assetsDir,
		CACert:     secrets.CACertPEM(),
		AdminToken: secrets.AdminToken(),
		Metrics:    met,
		Log:        log.With("service", "http"),
	})
	if err != nil {
		return err
	}

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
	run("http", func(ctx context.Context) error {
		return httpSrv.Serve(ctx, httpd.Listen{
			HTTP: httpAddr, HTTPS: httpsAddr, TLS: tlsCfg, Socket: socketPath(dataDir),
			MaxConns: cfg.Limits.HTTPConnections, MaxConnsPerClient: cfg.Limits.HTTPConnectionsPerClient,
		})
	})

	err = waitHealthy(ctx, localAddr(listen, cfg.Server.HTTPPort))
	if err == nil {
		err = context.Cause(ctx) // DHCP or TFTP failed to bind meanwhile
	}
	if err != nil {
		cancel(err)
	} else {
		ready = true
		printBanner(out, cfg, dataDir, assetsDir, dhcpSrv.Listening(), tftpAddr, httpAddr, httpsAddr, secrets.AdminTokenPath())
		log.Info("flint ready", "config", cfg.Source, "address", cfg.Server.AddressIP, "machines", len(cfg.Machines))
	}
	// Render the machines' first configs while nothing asks for them, and
	// again when a profile or an asset changes: a storm of first boots is
	// then answered from memory.
	warmed := make(chan struct{})
	go func() { defer close(warmed); renderer.Warm(ctx, 30*time.Second) }()
	// Mark installs that got no report within cluster.install_timeout.
	watched := make(chan struct{})
	go func() { defer close(watched); lc.WatchInstalls(ctx, time.Minute) }()
	defer func() { cancel(nil); <-watched }()
	defer func() { cancel(nil); <-warmed }() // a render in flight finishes its PKI writes

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
		log.Info("flint stopped", "refused_requests", lc.Refusals())
	}
	return first
}
