package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/deploy/examples"
)

// loadConfig reads --config, or the embedded example cluster when it is empty.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Parse(examples.ClusterSource, examples.Cluster)
	}
	return config.LoadFile(path)
}

func newValidateCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "Check a config file and report every problem with its field and line",
		Long: `validate parses the config, applies defaults and checks that it can work:
addresses inside the subnet and outside the pool, no duplicate MACs, IPs or
hostnames, known roles, at least one server. Problems are printed as
FILE:LINE: FIELD: MESSAGE and make it exit 1; warnings (like an even number of
etcd members) are printed but exit 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			var cerr *config.Error
			if errors.As(err, &cerr) {
				for _, p := range cerr.Problems {
					fmt.Fprintln(cmd.ErrOrStderr(), p.Located(cerr.Source))
				}
				return &exitError{code: 1, err: fmt.Errorf("%s has %d problem(s); fix them and run validate again", cerr.Source, len(cerr.Problems))}
			}
			if err != nil {
				return err
			}
			for _, w := range cfg.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w.Located(cfg.Source))
			}
			servers := len(cfg.Servers())
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok: dhcp mode %s, %d machines (%d servers, %d agents)\n",
				cfg.Source, cfg.DHCP.Mode, len(cfg.Machines), servers, len(cfg.Machines)-servers)
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file (default: the embedded example cluster)")
	return cmd
}
