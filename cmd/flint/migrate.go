package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/pki"
	"github.com/flint-boot/flint/store"
)

func newStoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Work on flint's state store (bolt or etcd)",
		Args:  noArgs("run flint store migrate"),
	}
	cmd.AddCommand(newMigrateCmd(), newResealCmd())
	return cmd
}

func newMigrateCmd() *cobra.Command {
	var to, path, data string
	var force bool
	cmd := &cobra.Command{
		Use:   "migrate --to etcd|bolt --config FILE [--data DIR] [--force]",
		Short: "Copy flint's state between DIR/flint.db and the etcd store the config names",
		Long: `migrate copies flint's state (DHCP leases, machine records with every field,
timelines with their times and order, the rebuild slot) from one store to
the other, as it is: nothing is re-recorded.

  --to etcd   from DIR/flint.db into the etcd store of the config's store
              section (endpoints, ca_file, cert_file, key_file, prefix; they
              may sit next to store.backend: bolt until you switch)
  --to bolt   from that etcd store into DIR/flint.db

Stop flint serve first (every instance, for --to bolt): a running serve
holds DIR/flint.db, and writes to etcd during the copy would be missed.
The destination must hold no state, or --force replaces it. After the copy
both stores are dumped again and compared (counts and SHA-256), and the
source must not have changed meanwhile; only then is the destination
marked complete. Interrupted (Ctrl-C) or failed, the
destination stays marked incomplete: flint serve refuses it and migrate
asks for --force. The source is never changed.

The PKI moves too, first: DIR/pki into the store (sealed with
store.encryption_key_file) or the store's into DIR/pki (0600): the CA and
its key, the K3s tokens, the report key, the admin token and every node
password; leaf certificates are issued again by the same CA. It is never
replaced: a destination with another CA stops the migration (--force or
not) before anything is copied.`,
		Args: noArgs("name the destination with --to etcd or --to bolt"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runMigrate(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), to, path, data, force)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "destination: etcd (from DIR/flint.db) or bolt (from etcd into DIR/flint.db)")
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file whose store section names the etcd store")
	cmd.Flags().StringVarP(&data, "data", "d", "./flint-data", "data directory of flint serve (DIR/flint.db)")
	cmd.Flags().BoolVar(&force, "force", false, "replace the state the destination holds (or an unfinished migration)")
	return cmd
}

// side is one side of a migration.
type side struct {
	name string // for messages: "DIR/flint.db" or "etcd https://...: prefix /flint/"
	st   portable
}

// portable is a part of flint's state that moves between stores as a dump
// stream: the store's records (store.Porter) for now; the PKI can become
// another part with the same four methods (see copyState).
type portable interface {
	Dump(ctx context.Context, w io.Writer) (store.Summary, error)
	Load(ctx context.Context, r io.Reader, progress func(store.Counts)) (store.Summary, error)
	Incomplete() (bool, error)
	Complete() error
}

func runMigrate(ctx context.Context, out, progress io.Writer, to, path, data string, force bool) error {
	if to != config.StoreEtcd && to != config.StoreBolt {
		return fmt.Errorf("--to %q: use --to etcd (from %s into etcd) or --to bolt (from etcd into %s)", to, filepath.Join(data, store.FileName), filepath.Join(data, store.FileName))
	}
	if path == "" {
		return errors.New("--config FILE is missing: its store section names the etcd store (endpoints, ca_file, cert_file, key_file, prefix)")
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return fmt.Errorf("%w\nfix the config (flint validate --config FILE shows every problem)", err)
	}
	if len(cfg.Store.Endpoints) == 0 {
		return fmt.Errorf("the store section of %s names no etcd: add store.endpoints, ca_file, cert_file and key_file (and prefix) for the etcd store, then run this again", cfg.Source)
	}
	boltName := filepath.Join(data, store.FileName)
	etcdName := fmt.Sprintf("the etcd store at %s, prefix %s", strings.Join(cfg.Store.Endpoints, ", "), cfg.Store.Prefix)
	openEtcd := func(opts ...store.Option) (store.Porter, error) {
		st, err := openEtcdStore(cfg, opts...)
		if err != nil {
			return nil, err // not a nil *Etcd in a non-nil Porter
		}
		return st, nil
	}
	stopServe := func(err error) error {
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("%w: flint serve is running on %s: stop it first (systemctl stop flint), then run flint store migrate again", err, data)
		}
		return err
	}
	if cfg.Store.EncryptionKeyFile == "" {
		return fmt.Errorf("the store section of %s has no encryption_key_file: the PKI moves with the state and is sealed with it in etcd; %s, set store.encryption_key_file, then run this again", cfg.Source, config.EncryptionKeyHowTo)
	}
	var src, dst side
	var etcdPorter store.Porter
	if to == config.StoreEtcd {
		// A shared lock: serve cannot start on the source meanwhile.
		b, err := store.OpenBolt(data, true)
		if err != nil {
			return stopServe(err)
		}
		defer b.Close()
		e, err := openEtcd(store.AllowIncomplete())
		if err != nil {
			return err
		}
		defer e.Close()
		etcdPorter = e
		src, dst = side{boltName, b}, side{etcdName, e}
	} else {
		e, err := openEtcd()
		if err != nil {
			return err
		}
		defer e.Close()
		etcdPorter = e
		b, err := store.OpenBolt(data, false, store.AllowIncomplete())
		if err != nil {
			return stopServe(err)
		}
		defer b.Close()
		src, dst = side{etcdName, e}, side{boltName, b}
	}
	if err := checkDestination(ctx, dst, to, force); err != nil {
		return err
	}
	// The PKI first: it is copied create-if-absent and never replaced, so a
	// destination with another CA stops the migration before anything of
	// the records moved, and a copy that stopped half-way is completed by
	// the next run.
	pkiNote, err := migratePKI(cfg, data, to, etcdPorter)
	if err != nil {
		return err
	}
	start := time.Now()
	sum, err := copyState(ctx, src, dst, progress, start)
	if err != nil {
		if ctx.Err() != nil {
			err = errors.New("interrupted")
		}
		return fmt.Errorf("%v after %v: %s is marked incomplete (flint serve refuses it); %s is unchanged. Run flint store migrate --to %s --force to copy again", err, time.Since(start).Round(time.Millisecond), dst.name, src.name, to)
	}
	fmt.Fprintf(out, "copied %v from %s to %s in %v\nverified: both hold the same dump (sha256 %s)\n", sum.Counts, src.name, dst.name, time.Since(start).Round(time.Millisecond), sum.SHA256)
	if sum.Rebuild != "" {
		fmt.Fprintf(out, "the rebuild slot (held by %s) came along\n", sum.Rebuild)
	}
	fmt.Fprintln(out, pkiNote)
	if to == config.StoreEtcd {
		if cfg.Store.Backend == config.StoreEtcd {
			fmt.Fprintf(out, "next step: store.backend is already etcd in %s: start flint serve with it\n", cfg.Source)
		} else {
			fmt.Fprintf(out, "next step: set store.backend: etcd in the store section of %s, then start flint serve (%s stays as it was)\n", cfg.Source, boltName)
		}
	} else {
		if cfg.Store.Backend == config.StoreBolt {
			fmt.Fprintf(out, "next step: store.backend is already bolt in %s: start flint serve with it and --data %s\n", cfg.Source, data)
		} else {
			fmt.Fprintf(out, "next step: set store.backend: bolt in the store section of %s, then start flint serve with --data %s (the etcd store stays as it was)\n", cfg.Source, data)
		}
	}
	return nil
}

// migratePKI copies the PKI the way of the migration (see the command's
// help) and says what it did.
func migratePKI(cfg *config.Config, data, to string, etcdStore store.Porter) (string, error) {
	e, ok := etcdStore.(*store.Etcd)
	if !ok {
		return "", fmt.Errorf("internal error: the etcd side of the migration is a %T", etcdStore)
	}
	sealed, err := sealedPKI(cfg, e)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(data, "pki")
	if to == config.StoreEtcd {
		copied, other, err := pki.Copy(pki.FileStorage(dir), sealed)
		switch {
		case err != nil:
			return "", fmt.Errorf("%w\nnothing was migrated; fix or restore %s", err, dir)
		case other:
			return "", fmt.Errorf("%s already holds another CA than %s: nothing was migrated. A PKI is never replaced (nodes trust its CA): migrate into another store.prefix, or move %s away if this site should take the store's identity", sealed.Origin(), dir, dir)
		case copied:
			return fmt.Sprintf("PKI: %s copied into %s (sealed with store.encryption_key_file)", dir, sealed.Origin()), nil
		}
		return fmt.Sprintf("PKI: %s already holds %s's CA, tokens and node passwords (or %s holds no PKI)", sealed.Origin(), dir, dir), nil
	}
	copied, err := pki.ExportFiles(sealed, dir)
	if err != nil {
		return "", fmt.Errorf("%w\nnothing was migrated", err)
	}
	if copied {
		return fmt.Sprintf("PKI: %s copied into %s (files 0600)", sealed.Origin(), dir), nil
	}
	return fmt.Sprintf("PKI: %s already holds %s's CA, tokens and node passwords (or the store holds no PKI)", dir, sealed.Origin()), nil
}

// checkDestination refuses a destination that holds state or an unfinished
// migration, unless force.
func checkDestination(ctx context.Context, dst side, to string, force bool) error {
	inc, err := dst.st.Incomplete()
	if err != nil {
		return err
	}
	have, err := dst.st.Dump(ctx, io.Discard)
	if err != nil {
		return fmt.Errorf("read what %s holds: %w", dst.name, err)
	}
	switch {
	case force:
		return nil
	case inc:
		return fmt.Errorf("%s holds an unfinished migration (%v so far): run flint store migrate --to %s --force to copy again", dst.name, have.Counts, to)
	case !have.Empty() || have.Rebuild != "":
		return fmt.Errorf("%s already holds %v: flint store migrate copies into an empty store only; pass --force to replace that state", dst.name, have.Counts)
	}
	return nil
}

// copyState streams src's dump into dst's Load, then dumps dst again and
// compares. Each part of flint's state that moves between stores is one
// such copy: the PKI can become another part with its own Dump and Load.
func copyState(ctx context.Context, src, dst side, progress io.Writer, start time.Time) (store.Summary, error) {
	pr, pw := io.Pipe()
	dumped := make(chan store.Summary, 1)
	dumpErr := make(chan error, 1)
	go func() {
		sum, err := src.st.Dump(ctx, pw)
		pw.CloseWithError(err)
		dumped <- sum
		dumpErr <- err
	}()
	last := start
	report := func(c store.Counts) {
		if time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintf(progress, "flint store migrate: %v copied (%v)\n", c, time.Since(start).Round(100*time.Millisecond))
		}
	}
	loaded, err := dst.st.Load(ctx, pr, report)
	pr.CloseWithError(errors.New("load stopped"))
	sum, derr := <-dumped, <-dumpErr
	if err != nil {
		return sum, fmt.Errorf("write %s: %w", dst.name, err)
	}
	if derr != nil {
		return sum, fmt.Errorf("read %s: %w", src.name, derr)
	}
	if loaded != sum {
		return sum, fmt.Errorf("%s wrote %v (sha256 %s), %s read %v (sha256 %s)", src.name, sum.Counts, sum.SHA256, dst.name, loaded.Counts, loaded.SHA256)
	}
	check, err := dst.st.Dump(ctx, io.Discard)
	if err != nil {
		return sum, fmt.Errorf("verify %s: %w", dst.name, err)
	}
	if check != sum {
		return sum, fmt.Errorf("verify: %s holds %v (sha256 %s) after the copy, %s %v (sha256 %s)", dst.name, check.Counts, check.SHA256, src.name, sum.Counts, sum.SHA256)
	}
	// The source must not have moved on meanwhile (a flint serve still
	// running on the etcd store): the copy would miss those writes.
	again, err := src.st.Dump(ctx, io.Discard)
	if err != nil {
		return sum, fmt.Errorf("verify %s: %w", src.name, err)
	}
	if again != sum {
		return sum, fmt.Errorf("%s changed during the copy (now %v, copied %v): stop every flint serve that uses it", src.name, again.Counts, sum.Counts)
	}
	return sum, dst.st.Complete()
}
