package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/pki"
	"github.com/flint-boot/flint/store"
)

// pkiStorage is where the PKI lives for the store the config names: with
// bolt (or no config) DATA/pki; with etcd the store's etcd under
// PREFIX/pki/, sealed with store.encryption_key_file, over st's connection,
// so that every instance sharing the store has one CA, one set of tokens and
// one report key.
func pkiStorage(cfg *config.Config, dataDir string, st store.Store) (pki.Storage, error) {
	if cfg == nil || cfg.Store.Backend != config.StoreEtcd {
		return pki.FileStorage(filepath.Join(dataDir, "pki")), nil
	}
	e, ok := st.(*store.Etcd)
	if !ok {
		return nil, fmt.Errorf("internal error: store.backend is etcd but the store is a %T", st)
	}
	return sealedPKI(cfg, e)
}

// sealedPKI is the PKI in etcd store e, sealed with the config's
// store.encryption_key_file, whatever store.backend says (flint store
// migrate fills an etcd store before the switch).
func sealedPKI(cfg *config.Config, e *store.Etcd) (pki.Storage, error) {
	key, err := storeKey(cfg)
	if err != nil {
		return nil, err
	}
	return pki.EtcdStorage(e.Client(), e.Prefix(), key)
}

// storeKey reads the config's store.encryption_key_file.
func storeKey(cfg *config.Config) ([]byte, error) {
	key, err := config.ReadEncryptionKey(cfg.Store.EncryptionKeyFile)
	if err != nil {
		return nil, fmt.Errorf("store.encryption_key_file: %w (fix it in %s; %s)", err, cfg.Source, config.EncryptionKeyHowTo)
	}
	return key, nil
}

// openExistingPKI opens the PKI without creating or changing anything, for
// commands that only read: DATA/pki, or with an etcd store (cfg's) the PKI
// in etcd. done releases the store connection; the error says where it
// looked and what to do.
func openExistingPKI(cfg *config.Config, data string, log *slog.Logger) (p *pki.PKI, done func(), err error) {
	done = func() {}
	var st store.Store
	if cfg != nil && cfg.Store.Backend == config.StoreEtcd {
		if st, err = openStore(cfg, data, storeRead); err != nil {
			return nil, nil, err
		}
		done = func() { st.Close() }
		defer func() {
			if err != nil {
				st.Close()
			}
		}()
	}
	storage, err := pkiStorage(cfg, data, st)
	if err != nil {
		return nil, nil, err
	}
	p, err = pki.OpenExistingStorage(storage, time.Now, log)
	if errors.Is(err, pki.ErrNoPKI) && st != nil {
		return nil, nil, fmt.Errorf("%w\nthis command only reads the etcd store that %s names; run flint serve with that config once to create the CA and tokens there", err, cfg.Source)
	}
	if errors.Is(err, pki.ErrNoPKI) {
		dir := filepath.Join(data, "pki")
		full := ""
		if abs, aerr := filepath.Abs(dir); aerr == nil && abs != dir {
			full = " (full path " + abs + ")"
		}
		return nil, nil, fmt.Errorf("%w%s\nthis command only reads the data directory; pass --data with the directory of your flint serve, or run `flint serve --data %s` once to create the CA and tokens there", err, full, data)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open the PKI in %s: %w", storage.Origin(), err)
	}
	return p, done, nil
}

// carryPKIIntoEtcd copies DATA/pki into an etcd store that has no PKI yet,
// and the node passwords it lacks while its CA is DATA/pki's
// (pki.ImportFiles): a site moving to the etcd store keeps its CA, tokens
// and node passwords instead of starting a new CA the cluster does not trust.
func carryPKIIntoEtcd(pkiDir string, st pki.Storage, log *slog.Logger) error {
	copied, err := pki.ImportFiles(pkiDir, st)
	if err != nil {
		return fmt.Errorf("%w\nfix or restore %s, or move it away to start the etcd store with a new CA", err, pkiDir)
	}
	if copied {
		log.Info("copied the PKI of the data directory into the etcd store; every instance now uses it", "from", pkiDir, "to", st.Origin())
	}
	return nil
}

// warnStalePKIDir warns when DATA/pki holds another CA than the PKI in the
// etcd store that this instance uses: nodes provisioned from that directory
// trust a CA this flint no longer serves.
func warnStalePKIDir(pkiDir string, secrets *pki.PKI, log *slog.Logger) {
	old, err := os.ReadFile(filepath.Join(pkiDir, "ca.crt"))
	if err != nil || bytes.Equal(bytes.TrimSpace(old), bytes.TrimSpace(secrets.CACertPEM())) {
		return
	}
	log.Warn("the data directory holds another CA than the etcd store; flint uses the store's and ignores the directory "+
		"(nodes provisioned with the directory's CA must be reprovisioned, or the store's PKI replaced by it)",
		"dir", pkiDir, "store", secrets.Dir())
}

// checkStorePKI says whether the PKI in the etcd store opens with this
// config's store.encryption_key_file (flint validate --store): an instance
// with another key would fail at start. It writes nothing.
func checkStorePKI(out io.Writer, cfg *config.Config, dataDir string, st store.Store) error {
	storage, err := pkiStorage(cfg, dataDir, st)
	if err != nil {
		return err
	}
	p, err := pki.OpenExistingStorage(storage, time.Now, nil)
	switch {
	case errors.Is(err, pki.ErrNoPKI):
		fmt.Fprintf(out, "PKI: none in %s yet; the first flint serve creates it (or copies its DATA/pki there)\n", storage.Origin())
		return nil
	case errors.Is(err, pki.ErrSealed):
		return &exitError{code: 1, err: fmt.Errorf("PKI in %s: %w", storage.Origin(), err)}
	case err != nil:
		return fmt.Errorf("PKI in %s: %w", storage.Origin(), err)
	}
	certs, err := p.List() // the CA first
	if err != nil {
		return fmt.Errorf("PKI in %s: %w", storage.Origin(), err)
	}
	fmt.Fprintf(out, "PKI: %s opens with store.encryption_key_file (CA %q, expires %s)\n", storage.Origin(),
		certs[0].CommonName, certs[0].NotAfter.Format("2006-01-02"))
	return nil
}
