package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
	"golang.org/x/sys/unix"
)

// storeUse is what a command does with flint's state.
type storeUse int

const (
	// storeServe reads and writes, creating the state (flint serve).
	storeServe storeUse = iota
	// storeRead only reads (flint machines). With bolt it takes the
	// database's shared lock and fails with store.ErrLocked while flint
	// serve holds it.
	storeRead
	// storeChange writes a state flint serve made (flint reprovision): with
	// bolt it never creates DATA/flint.db (store.ErrNoState).
	storeChange
)

// openStore opens the state the config's store section names: bolt
// (DATA/flint.db, the default, also when cfg is nil: no config given) or
// etcd. Every command opens its store here.
//
// With bolt the data directory is locked: one flint serve per directory,
// and other commands go through its admin socket while it runs. With etcd
// nothing is locked: several flint instances (and flint machines or
// reprovision next to them) share the store, whose transactions keep
// concurrent writes whole (the instances coordinate through it: DHCP
// claims, the rebuild slot, the membership lock, their announcements).
func openStore(cfg *config.Config, dataDir string, use storeUse) (store.Store, error) {
	var opts []store.Option
	if cfg != nil {
		opts = append(opts, store.WithLimits(store.Limits{Discovered: cfg.Limits.DiscoveredMachines, Events: cfg.Limits.TimelineEvents}))
	}
	if cfg != nil && cfg.Store.Backend == config.StoreEtcd {
		st, err := openEtcdStore(cfg, opts...)
		if err != nil {
			return nil, err // not a nil *Etcd in a non-nil Store
		}
		return st, nil
	}
	var st *store.Bolt
	var err error
	switch use {
	case storeRead:
		st, err = store.OpenBolt(dataDir, true)
	case storeChange:
		st, err = store.OpenBolt(dataDir, false, append(opts, store.ExistingOnly())...)
	default:
		return store.OpenBolt(dataDir, false, opts...)
	}
	if err != nil {
		return nil, servedElsewhere(dataDir, err)
	}
	return st, nil
}

// servedElsewhere turns "DIR holds no flint.db" into ErrLocked when a flint
// serve runs on DIR all the same (it holds DIR/serve.lock): one whose store
// is etcd, so DIR holds its lock, socket and assets, not its state.
// Commands then ask it over its admin socket, as they ask a serve that holds
// DIR/flint.db.
func servedElsewhere(dataDir string, err error) error {
	if !errors.Is(err, store.ErrNoState) || !serveHolds(dataDir) {
		return err
	}
	return fmt.Errorf("%w: %s holds no flint.db, but a flint serve runs there (its store is etcd)", store.ErrLocked, dataDir)
}

// serveHolds says whether a flint serve holds DATA/serve.lock (lockDataDir)
// now. It creates nothing and keeps no lock.
func serveHolds(dataDir string) bool {
	f, err := os.Open(filepath.Join(dataDir, "serve.lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB), unix.EWOULDBLOCK)
}

// lockDataDir takes DATA/serve.lock (flock, exclusive, not waiting) for
// one flint serve on an etcd store; unlock releases it. The kernel
// releases it too when the process dies, so a crash leaves nothing stale.
func lockDataDir(dataDir string) (unlock func(), err error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dataDir, "serve.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the data directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another flint serve uses --data %s (%s); stop it or give each instance its own data directory", store.ErrLocked, dataDir, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// openEtcdStore opens the etcd store the config's store section names,
// whatever store.backend says (flint store migrate fills it before the
// backend is switched).
func openEtcdStore(cfg *config.Config, opts ...store.Option) (*store.Etcd, error) {
	tlsCfg, err := storeTLS(cfg)
	if err != nil {
		return nil, err
	}
	st, err := store.OpenEtcd(store.EtcdConfig{Endpoints: cfg.Store.Endpoints, TLS: tlsCfg, Prefix: cfg.Store.Prefix}, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w\n(the store section of %s names this etcd)", err, cfg.Source)
	}
	return st, nil
}

// storeTLS is flint's client TLS for the etcd store, from the files the
// config names (config validation checked that they exist).
func storeTLS(cfg *config.Config) (*tls.Config, error) {
	s := cfg.Store
	caPEM, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, fmt.Errorf("store.ca_file: %w (fix it in %s)", err, cfg.Source)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("store.ca_file: %s holds no PEM certificate: it should be the CA that signed the etcd members' certificates (fix it in %s)", s.CAFile, cfg.Source)
	}
	cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("store.cert_file and store.key_file: %w (they must be flint's PEM client certificate for etcd and its key; fix them in %s)", err, cfg.Source)
	}
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
