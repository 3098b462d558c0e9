package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/pki"
)

func newResealCmd() *cobra.Command {
	var path, newKey string
	cmd := &cobra.Command{
		Use:   "reseal --config FILE --new-key FILE",
		Short: "Seal the PKI in the etcd store with a new encryption key",
		Long: `reseal changes the key that seals flint's PKI in the etcd store (the CA and
its key, certificates, K3s tokens, node passwords, report key, admin token):
every value is opened with the config's store.encryption_key_file and
sealed again with the key in --new-key (32 bytes, like the first; 0600).

Stop every flint serve on the store first: an instance holding the old key
cannot open what was re-sealed (reseal refuses while instances are
announced in the store). Then copy the new key file to every flint host as
store.encryption_key_file (or point the setting at it) and start them.
A re-seal that stopped half-way (Ctrl-C, a lost connection) is completed by
running it again with the same two keys: values already sealed with the new
key are left as they are.`,
		Args: noArgs("name the new key with --new-key FILE"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runReseal(ctx, cmd.OutOrStdout(), path, newKey)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file whose store section names the etcd store and its current encryption_key_file")
	cmd.Flags().StringVar(&newKey, "new-key", "", "file with the new 32-byte key (0600)")
	return cmd
}

func runReseal(ctx context.Context, out io.Writer, path, newKeyFile string) error {
	if path == "" || newKeyFile == "" {
		return errors.New("--config FILE and --new-key FILE are both needed: the config names the etcd store and its current key, --new-key the key to seal with from now on")
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return fmt.Errorf("%w\nfix the config (flint validate --config FILE shows every problem)", err)
	}
	if cfg.Store.Backend != config.StoreEtcd {
		return fmt.Errorf("store.backend in %s is %s: only the PKI in an etcd store is sealed (DATA/pki holds plain 0600 files)", cfg.Source, cfg.Store.Backend)
	}
	oldKey, err := storeKey(cfg)
	if err != nil {
		return err
	}
	newKey, err := config.ReadEncryptionKey(newKeyFile)
	if err != nil {
		return fmt.Errorf("--new-key: %w (%s)", err, config.EncryptionKeyHowTo)
	}
	if bytes.Equal(oldKey, newKey) {
		return fmt.Errorf("--new-key %s holds the same key as store.encryption_key_file (%s): nothing to do", newKeyFile, cfg.Store.EncryptionKeyFile)
	}
	st, err := openEtcdStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	running, err := st.Instances()
	if err != nil {
		return err
	}
	if len(running) > 0 {
		var ids []string
		for _, in := range running {
			ids = append(ids, in.ID)
		}
		return fmt.Errorf("flint instances are running on this store (%s): stop every one first (systemctl stop flint on each host); an instance with the old key could not open what is re-sealed. Nothing was changed", strings.Join(ids, ", "))
	}
	start := time.Now()
	n, already, err := pki.Reseal(ctx, st.Client(), st.Prefix(), oldKey, newKey)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted: %w", err)
		}
		return fmt.Errorf("%w\n%d values were re-sealed before it stopped; run the same command again to complete it", err, n)
	}
	// Prove it: the PKI opens with the new key.
	sealed, err := pki.EtcdStorage(st.Client(), st.Prefix(), newKey)
	if err != nil {
		return err
	}
	if _, err := pki.OpenExistingStorage(sealed, time.Now, nil); err != nil && !errors.Is(err, pki.ErrNoPKI) {
		return fmt.Errorf("after the re-seal the PKI does not open with the new key: %w", err)
	}
	fmt.Fprintf(out, "re-sealed %d values under %s with the key in %s (%d were already) in %v\n", n, sealed.Origin(), newKeyFile, already, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(out, "next step: put that key in store.encryption_key_file on every flint host (replace %s, or point the setting at the new file), then start flint; keep the old key as long as you keep etcd snapshots taken before now: their PKI is sealed with it\n", cfg.Store.EncryptionKeyFile)
	return nil
}
