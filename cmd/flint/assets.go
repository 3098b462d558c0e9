package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/flint-boot/flint/assets"
)

func newAssetsCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "assets",
		Short: "Mirror and list the Flatcar, K3s and etcd files machines download",
		Long: `assets keeps flint's asset store: the Flatcar PXE kernel and initrd (and disk
image), K3s and etcd, each verified, under versioned paths in the assets
directory (boot.assets_dir, or DATA/assets), with the config's default paths
pointing at the configured versions.`,
	}
	cmd.AddCommand(newAssetsSyncCmd(g), newAssetsLsCmd())
	return cmd
}

func newAssetsSyncCmd(g *globalFlags) *cobra.Command {
	var path, data string
	var prune bool
	cmd := &cobra.Command{
		Use:   "sync [--config FILE] [--data DIR] [--prune]",
		Short: "Fetch and verify the releases the config's assets section names",
		Long: `sync fetches the Flatcar, K3s and etcd releases named in the config's assets
section from their base URLs (upstream, or a local mirror: http(s):// or
file://) and keeps each file only after it verified:

  Flatcar  detached OpenPGP signature (FILE.sig) with assets.flatcar.signing_key,
           and the SHA-512 in FILE.DIGESTS
  K3s      SHA-256 in the release's sha256sum-ARCH.txt
  etcd     SHA-256 of the release tarball in SHA256SUMS; etcd and etcdctl
           are extracted from it

An interrupted download resumes where it stopped on the next run. A file
that fails verification is deleted; the previous version and the links stay
as they were. Files already in the store and unchanged are not fetched again.
Progress goes to stderr: bars on a terminal, log lines otherwise.`,
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
			dir := assets.DirFor(cfg, data)
			ctx, stop := signal.NotifyContext(contextOf(cmd), syscall.SIGINT, syscall.SIGTERM)
			defer stop()

			opt := assets.Options{Log: log, UserAgent: "flint/" + version, Prune: prune}
			if term.IsTerminal(int(os.Stderr.Fd())) {
				opt.Progress = barProgress{w: os.Stderr}
			} else {
				opt.Progress = assets.LogProgress(log, 5*time.Second)
			}
			res, err := assets.Sync(ctx, dir, cfg.AssetSources(), opt)
			var cerr *assets.ConfigError
			if errors.As(err, &cerr) {
				if path == "" {
					return fmt.Errorf("%s: %w\npass your site's config with --config FILE", cfg.Source, err)
				}
				return fmt.Errorf("%s: %w", cfg.Source, err)
			}
			if res == nil {
				return err // nothing was attempted: a key, lock or directory problem
			}
			printSyncResult(cmd.OutOrStdout(), dir, res)
			if err != nil {
				return fmt.Errorf("sync incomplete: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file (default: the embedded example cluster)")
	cmd.Flags().StringVarP(&data, "data", "d", "./flint-data", "data directory; assets go to DATA/assets unless boot.assets_dir is set")
	cmd.Flags().BoolVar(&prune, "prune", false, "after a complete sync, delete the releases the config no longer names")
	return cmd
}

func contextOf(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

func printSyncResult(out io.Writer, dir string, res *assets.Result) {
	if res.UpToDate() && len(res.Pruned) == 0 {
		var rels []string
		for _, rr := range res.Releases {
			rels = append(rels, rr.Product+" "+rr.Version)
		}
		fmt.Fprintf(out, "up to date: %s in %s (nothing downloaded)\n", strings.Join(rels, ", "), dir)
		return
	}
	for _, rr := range res.Releases {
		var parts []string
		if len(rr.Fetched) > 0 {
			var files []string
			for _, e := range rr.Fetched {
				files = append(files, fmt.Sprintf("%s (%s)", baseName(e.Path), humanBytes(e.Size)))
			}
			parts = append(parts, "fetched and verified "+strings.Join(files, ", "))
		}
		switch {
		case errors.Is(rr.Err, context.Canceled):
			parts = append(parts, "interrupted; run sync again to resume")
		case rr.Err != nil:
			parts = append(parts, "FAILED (see below); the store keeps its previous files")
		case rr.Switched:
			parts = append(parts, "now current")
		case len(rr.Fetched) == 0:
			parts = append(parts, "up to date")
		}
		fmt.Fprintf(out, "%s %s: %s\n", rr.Product, rr.Version, strings.Join(parts, "; "))
	}
	for _, d := range res.Pruned {
		fmt.Fprintf(out, "deleted old release %s\n", d)
	}
	fmt.Fprintf(out, "store %s: %s, %s downloaded\n", dir, plural(int(res.Requests), "request", "requests"), humanBytes(res.Bytes))
}

func newAssetsLsCmd() *cobra.Command {
	var path, data string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [--config FILE] [--data DIR] [--json]",
		Short: "List what the asset store holds",
		Long: `ls lists the verified files in the asset store from its manifest: logical
name, version (* marks the one the stable paths point at), size, the start of
its SHA-512 and its path under the assets directory. With --config it also
says which assets that config's machines need and the store lacks.`,
		Args: noArgs("pass the config with --config FILE and the data directory with --data DIR"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			dir := assets.DirFor(cfg, data)
			st, err := assets.Open(dir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				entries := st.Entries()
				if entries == nil {
					entries = []assets.Entry{}
				}
				return enc.Encode(entries)
			}
			entries := st.Entries()
			if len(entries) == 0 {
				fmt.Fprintf(out, "%s holds no synced assets: run flint assets sync --config FILE\n", dir)
			} else {
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tVERSION\tSIZE\tSHA512\tPATH")
				for _, e := range entries {
					v := e.Version
					if e.Current {
						v += " *"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Name, v, humanBytes(e.Size), short(e.SHA512), e.Path)
				}
				tw.Flush()
			}
			if path != "" {
				for _, gap := range st.Check(cfg) {
					fmt.Fprintln(out, "missing: "+gap.String())
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file: its boot.assets_dir, and what its machines need")
	cmd.Flags().StringVarP(&data, "data", "d", "./flint-data", "data directory; assets are in DATA/assets unless boot.assets_dir is set")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the manifest entries as JSON")
	return cmd
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

func baseName(p string) string { return p[strings.LastIndex(p, "/")+1:] }

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// barProgress draws one progress bar per download on a terminal.
type barProgress struct{ w io.Writer }

func (b barProgress) Start(file string, resumed, total int64) assets.Meter {
	desc := file
	if resumed > 0 {
		desc += " (resumed)"
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(b.w) }),
	)
	if resumed > 0 {
		_ = bar.Set64(resumed)
	}
	return barMeter{bar: bar, w: b.w}
}

type barMeter struct {
	bar *progressbar.ProgressBar
	w   io.Writer
}

func (m barMeter) Add(n int64) { _ = m.bar.Add64(n) }

func (m barMeter) Finish(err error) {
	if err != nil {
		_ = m.bar.Exit()
		fmt.Fprintln(m.w)
		return
	}
	_ = m.bar.Finish()
}
