package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flint-boot/flint/assets"
	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/deploy/examples"
	"github.com/flint-boot/flint/ignition"
	"github.com/flint-boot/flint/pki"
)

// loadConfig reads --config, or the embedded example cluster when it is empty.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Parse(examples.ClusterSource, examples.Cluster)
	}
	return config.LoadFile(path)
}

func newValidateCmd() *cobra.Command {
	var path, data string
	var withStore bool
	cmd := &cobra.Command{
		Use:   "validate [FILE | --config FILE] [--data DIR] [--store]",
		Short: "Check a config file and report every problem with its field and line",
		Long: `validate parses the config, applies defaults and checks that it can work:
addresses inside the subnet and outside the pool, no duplicate MACs, IPs or
hostnames, known roles, at least one server. Problems are printed as
FILE:LINE: FIELD: MESSAGE and make it exit 1; warnings (like an even number of
etcd members) are printed but exit 0. It also checks the config against the
data directory DIR: boot.assets_dir must not hold DIR or its pki/.

Then it renders one machine of each kind (profile, role, install mode) in
both Ignition specs, with a throw-away PKI in memory (validate writes nothing), and reports
profile problems as PROFILE:LINE: MACHINE: MESSAGE. What else differs between
machines (names, addresses) the config checks above cover, so a site of
10,000 machines validates in the time of a few.
Assets missing from DIR/assets are warnings.

--store (with store.backend: etcd) compares the config and profiles with
those of the flint instances serving from the store now, and exits 1 if any
differs: while they differ, none of them serves a secret config. It also
checks that the PKI in the store opens with store.encryption_key_file.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return fmt.Errorf("validate checks one config file, got %d (%s): run it once per file", len(args), strings.Join(args, " "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if path != "" && path != args[0] {
					return fmt.Errorf("validate got two config files, %s and --config %s: pass one", args[0], path)
				}
				path = args[0]
			}
			cfg, err := loadConfig(path)
			var cerr *config.Error
			if errors.As(err, &cerr) {
				for _, p := range cerr.Problems {
					fmt.Fprintln(cmd.ErrOrStderr(), p.Located(cerr.Source))
				}
				return &exitError{code: 1, err: fmt.Errorf("%s has %s; fix %s and run validate again", cerr.Source, plural(len(cerr.Problems), "problem", "problems"), them(len(cerr.Problems)))}
			}
			if err != nil {
				return err
			}
			for _, w := range cfg.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w.Located(cfg.Source))
			}
			if err := cfg.CheckDataDir(data); errors.As(err, &cerr) {
				for _, p := range cerr.Problems {
					fmt.Fprintln(cmd.ErrOrStderr(), p.Located(cerr.Source))
				}
				return &exitError{code: 1, err: fmt.Errorf("%s does not fit data directory %s; fix it and run validate again", cerr.Source, data)}
			}
			problems, err := renderProblems(cfg, assetsDirOf(cfg, data))
			if err != nil {
				return err
			}
			// Missing assets are warnings: the operator may still sync or place them.
			if err := warnMissingAssets(cmd.ErrOrStderr(), cfg, data); err != nil {
				return err
			}
			var bad int
			for _, p := range problems {
				if p.Kind == ignition.KindAsset {
					continue // reported by the asset store's check above
				}
				bad++
				fmt.Fprintln(cmd.ErrOrStderr(), p.String())
			}
			if bad > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%s in the profiles; fix %s and run validate again", plural(bad, "problem", "problems"), them(bad))}
			}
			servers := len(cfg.Servers())
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok: dhcp mode %s, %s (%s, %s)\n", cfg.Source, cfg.DHCP.Mode,
				plural(len(cfg.Machines), "machine", "machines"), plural(servers, "server", "servers"), plural(len(cfg.Machines)-servers, "agent", "agents"))
			if len(cfg.DHCP.Subnets) > 0 {
				// Which subnet answers requests that come without a relay.
				if !cfg.Server.AddressIP.IsValid() {
					fmt.Fprintln(cmd.OutOrStdout(), "  flint's own segment (requests without a relay): the subnet holding server.address, which flint reads from its interface at start")
				}
				for _, n := range cfg.DHCP.Networks {
					how := "relayed (giaddr in it)"
					if n.Local {
						how = "flint's own segment (requests without a relay), holding server.address"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "  subnet %s: %s\n", n.Prefix, how)
				}
			}
			if withStore {
				return compareWithStore(cmd.OutOrStdout(), cfg, data)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&withStore, "store", false, "compare the site with the flint instances serving from the config's etcd store")
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file (default: the embedded example cluster)")
	cmd.Flags().StringVarP(&data, "data", "d", "./flint-data", "data directory whose assets/ the configs reference")
	return cmd
}

// renderProblems renders one machine of each kind with a throw-away PKI that
// lives in memory only: validate writes nothing.
func renderProblems(cfg *config.Config, assetsDir string) ([]ignition.Problem, error) {
	secrets, err := pki.Ephemeral(time.Now)
	if err != nil {
		return nil, err
	}
	return ignition.ValidateAll(cfg, secrets, assetsDir), nil
}

// them is the pronoun for n problems.
func them(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

// assetsDirOf is where serve would serve /assets/ from.
func assetsDirOf(cfg *config.Config, dataDir string) string { return assets.DirFor(cfg, dataDir) }

// warnMissingAssets lists what the machines would download but the asset
// store lacks, with what to do.
func warnMissingAssets(w io.Writer, cfg *config.Config, dataDir string) error {
	st, err := assets.Open(assets.DirFor(cfg, dataDir))
	if err != nil {
		return err
	}
	for _, g := range st.Check(cfg) {
		fmt.Fprintf(w, "warning: asset %s (/assets/%s): %s\n", g.Name, g.Path, g.Reason)
	}
	return nil
}
