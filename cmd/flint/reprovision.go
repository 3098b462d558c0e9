package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/power"
	"github.com/flint-boot/flint/store"
)

func newReprovisionCmd() *cobra.Command {
	var data, path string
	var yes, cancel, reboot bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "reprovision NODE [--yes | --cancel] [--reboot] [--data DIR]",
		Short: "Arm a machine so its next PXE boot reinstalls it",
		Long: `reprovision arms NODE (a hostname or MAC from the config): its next PXE boot
gets its Ignition config again and reinstalls it, with the same certificates,
K3s token and node password.

For a server it first explains what will happen to etcd (the old member is
removed and added back; the node rejoins with ETCD_INITIAL_CLUSTER_STATE=
existing once the other members are healthy) and only arms it with --yes.
It refuses while another server is still being rebuilt, and for a machine
that was never installed (its first network boot installs it).

--cancel disarms an armed reprovision: the machine is installed again and
another server may be rebuilt. It is refused once flint has started changing
the machine's etcd membership (etcd then waits for the member to rejoin).

It talks to the running flint serve of DIR over its admin socket
(DIR/flint.sock, for the user flint runs as), or writes DIR/flint.db
directly when none runs (then --config names the config flint serves).
It never creates DIR/flint.db: a directory flint serve never used is an error.
With a config whose store.backend is etcd it writes the shared etcd store
directly, in one transaction, whether or not flint serve runs.

--reboot then reboots it through its BMC (machines[].bmc, see flint power):
it sets the next boot to the network where the BMC can, power-cycles the
machine and prints its timeline as flint records it, until flint records it
installed, --wait passes, or Ctrl-C (which stops following, not the install).
The BMC is checked before anything is armed. --config names the config
flint serves (the BMC's settings come from it).`,
		Args: oneNode,
		RunE: func(cmd *cobra.Command, args []string) error {
			if yes && cancel {
				return fmt.Errorf("--yes arms and --cancel disarms: pass one")
			}
			if reboot && cancel {
				return fmt.Errorf("--reboot reinstalls and --cancel disarms: pass one")
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			var m *config.Machine
			var pc power.Controller
			var cfg *config.Config // the store to follow the machine in
			if reboot {
				var err error
				if m, pc, err = powerOf(path, args[0]); err != nil {
					return fmt.Errorf("%w\nnothing was armed", err)
				}
				if cfg, err = loadConfig(path); err != nil {
					return fmt.Errorf("%w\nnothing was armed", err)
				}
			}
			since := time.Now()
			plan, err := reprovision(path, data, args[0], yes, cancel)
			out := cmd.OutOrStdout()
			if plan.Cancelled {
				fmt.Fprintf(out, "cancelled: %s stays installed and no longer holds the rebuild slot; `%s` shows it\n", plan.Machine, machinesCommand(path, data))
				return nil
			}
			if plan.Machine != "" && len(plan.Steps) > 0 {
				fmt.Fprintf(out, "%s (%s): on its next PXE boot flint will\n", plan.Machine, plan.Role)
				for i, s := range plan.Steps {
					fmt.Fprintf(out, "  %d. %s\n", i+1, s)
				}
			}
			if err != nil {
				return err
			}
			switch {
			case plan.Armed && reboot:
				fmt.Fprintf(out, "armed: %s reinstalls on its next network boot\n", plan.Machine)
				if wait <= 0 {
					wait = time.Hour
				}
				return rebootToInstall(ctx, out, cfg, m, pc, data, since, wait)
			case plan.Armed:
				fmt.Fprintf(out, "armed: reboot %s from the network; `%s` shows its progress\n", plan.Machine, machinesCommand(path, data))
			case plan.NeedsConfirm:
				return &exitError{code: 2, err: fmt.Errorf("%s is an etcd member: nothing was changed; run `flint reprovision %s --yes` to arm it", plan.Machine, plan.Machine)}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&data, "data", "d", "./flint-data", "data directory of the flint serve that boots the machine")
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file, when flint serve is not running (default: the embedded example cluster)")
	cmd.Flags().BoolVar(&yes, "yes", false, "arm a server (etcd member) after reading what will happen")
	cmd.Flags().BoolVar(&cancel, "cancel", false, "disarm an armed reprovision (refused once etcd membership changed)")
	cmd.Flags().BoolVar(&reboot, "reboot", false, "then network-boot it through its BMC and follow its timeline until it is installed")
	cmd.Flags().DurationVar(&wait, "wait", time.Hour, "with --reboot: how long to follow the machine before giving up")
	return cmd
}

func reprovision(cfgPath, dataDir, name string, confirm, cancel bool) (lifecycle.Plan, error) {
	// The config says which store; one that does not load is only needed
	// when no flint serve answers for DIR/flint.db (below).
	cfg, cfgErr := loadConfig(cfgPath)
	storeCfg := cfg
	if cfgErr != nil {
		storeCfg = nil
	}
	// Never create a database: this changes the state of a flint serve.
	st, err := openStore(storeCfg, dataDir, storeChange)
	if err == nil {
		defer st.Close()
		if cfgErr != nil {
			return lifecycle.Plan{}, fmt.Errorf("%w\n(flint serve is not running, so reprovision reads the config itself: pass the one it serves with --config)", cfgErr)
		}
		if cancel {
			return lifecycle.CancelReprovision(st, cfg, name, time.Now())
		}
		return lifecycle.Reprovision(st, cfg, name, confirm, time.Now())
	}
	if errors.Is(err, store.ErrNoState) {
		return lifecycle.Plan{}, fmt.Errorf("%w\nreprovision changes what flint serve recorded about installed machines; a machine flint never served installs on its first boot", err)
	}
	if !errors.Is(err, store.ErrLocked) {
		return lifecycle.Plan{}, err
	}
	// flint serve holds the database: ask it over the admin socket.
	var plan lifecycle.Plan
	body := map[string]bool{"confirm": confirm}
	if cancel {
		body = map[string]bool{"cancel": true}
	}
	err = adminCall(dataDir, http.MethodPost, "/api/v1/machines/"+url.PathEscape(name)+"/reprovision", body, &plan, err)
	if isStatus(err, http.StatusNotFound) {
		return plan, fmt.Errorf("%w: %v", lifecycle.ErrNoMachine, err)
	}
	return plan, err
}

// machinesCommand is the flint machines command that shows the store a
// reprovision changed: the data directory's, or (a config was given) the
// config's, which may be an etcd store.
func machinesCommand(configPath, data string) string {
	if configPath != "" {
		return "flint machines --config " + configPath + " --data " + data
	}
	return "flint machines --data " + data
}
