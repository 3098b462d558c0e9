package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/power"
	"github.com/flint-boot/flint/store"
)

// openPower gives the power Controller of a machine; tests replace it.
var openPower = power.Open

func newPowerCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "power status|on|off|cycle|pxe NODE [--config FILE]",
		Short: "Ask a machine's BMC for its power state, switch it, or make its next boot a network boot",
		Long: `power talks to the BMC of NODE (a hostname or MAC from the config) named in
its machines[].bmc: IPMI (through the ipmitool program), Redfish or Intel AMT.

  status  prints on or off
  on      switches it on (nothing if it is on)
  off     switches it off at once, without a shutdown (nothing if it is off)
  cycle   switches it off and on again (on, if it was off)
  pxe     makes its next boot, once, a network boot

The BMC password comes from bmc.password_file or bmc.password_env, never from
the config itself. Each operation stops after bmc.timeout (default 30s) or on
Ctrl-C.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("power needs an action and a machine: flint power status|on|off|cycle|pxe NODE")
			}
			return fmt.Errorf("unknown power action %q: use status, on, off, cycle or pxe (flint power ACTION NODE)", args[0])
		},
	}
	cmd.PersistentFlags().StringVarP(&path, "config", "c", "", "config file that names the machine's bmc (default: the embedded example cluster)")
	for _, a := range []struct{ name, short string }{
		{"status", "Print whether NODE is on or off"},
		{"on", "Switch NODE on"},
		{"off", "Switch NODE off at once (no shutdown)"},
		{"cycle", "Switch NODE off and on again"},
		{"pxe", "Make NODE's next boot a network boot"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:   a.name + " NODE",
			Short: a.short,
			Args:  oneNode,
			RunE: func(cmd *cobra.Command, args []string) error {
				ctx, stop := signalContext(cmd)
				defer stop()
				return runPower(ctx, cmd.OutOrStdout(), path, a.name, args[0])
			},
		})
	}
	return cmd
}

// signalContext is the command's context, cancelled by Ctrl-C or SIGTERM.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// powerOf finds NODE in the config and opens its BMC's Controller.
func powerOf(path, node string) (*config.Machine, power.Controller, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	m, ok := cfg.MachineByNameOrMAC(node)
	if !ok {
		return nil, nil, fmt.Errorf("%s is not a machine of %s: pass its hostname or MAC (and the config flint serves with --config)", node, cfg.Source)
	}
	pc, err := openPower(m)
	if err != nil {
		if errors.Is(err, power.ErrNoBMC) {
			err = fmt.Errorf("%w (in %s)", err, cfg.Source)
		}
		return nil, nil, err
	}
	return m, pc, nil
}

func runPower(ctx context.Context, out io.Writer, path, action, node string) error {
	m, pc, err := powerOf(path, node)
	if err != nil {
		return err
	}
	switch action {
	case "status":
		st, err := pc.Status(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: %s\n", m.Hostname, st)
		return nil
	case "on":
		err = pc.On(ctx)
	case "off":
		err = pc.Off(ctx)
	case "cycle":
		err = pc.Cycle(ctx)
	case "pxe":
		err = pc.NetworkBoot(ctx)
	default:
		return fmt.Errorf("unknown power action %q: use status, on, off, cycle or pxe", action)
	}
	if err != nil {
		return err
	}
	done := map[string]string{"on": "switched on", "off": "switched off", "cycle": "power-cycled", "pxe": "next boot is a network boot"}
	fmt.Fprintf(out, "%s: %s (%s)\n", m.Hostname, done[action], pc.Describe())
	return nil
}

// rebootToInstall sets m's next boot to the network where its BMC can,
// power-cycles it and follows its timeline until it reports installed,
// wait passes, or ctx ends (Ctrl-C stops following, not the install).
func rebootToInstall(ctx context.Context, out io.Writer, cfg *config.Config, m *config.Machine, pc power.Controller, dataDir string, since time.Time, wait time.Duration) error {
	if err := pc.NetworkBoot(ctx); err != nil {
		if ctx.Err() != nil {
			return err
		}
		fmt.Fprintf(out, "warning: %v\n  %s boots in its firmware's own order: put network boot before its disk so flint can reinstall it\n", err, m.Hostname)
	} else {
		fmt.Fprintf(out, "%s: next boot is a network boot (%s)\n", m.Hostname, pc.Describe())
	}
	if err := pc.Cycle(ctx); err != nil {
		return fmt.Errorf("%w\n%s stays armed: power-cycle it by hand (flint power cycle %s), or disarm it with flint reprovision %s --cancel", err, m.Hostname, m.Hostname, m.Hostname)
	}
	fmt.Fprintf(out, "%s: power-cycled (%s); its timeline follows (Ctrl-C stops following, not the install)\n", m.Hostname, pc.Describe())
	return followTimeline(ctx, out, cfg, dataDir, m, since, wait, time.Second)
}

// followTimeline prints the machine's timeline events from since on as they
// arrive, until flint records it installed after since. Each read runs
// aside, so Ctrl-C ends the command at once even if flint serve is slow.
func followTimeline(ctx context.Context, out io.Writer, cfg *config.Config, dataDir string, m *config.Machine, since time.Time, wait, every time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	printed := map[string]bool{} // bounded by limits.timeline_events
	type poll struct {
		lines     []string
		installed *store.Machine
	}
	newLines := func(p *poll) {
		evs, err := readEvents(cfg, dataDir, m.MAC)
		if err != nil {
			p.lines = append(p.lines, fmt.Sprintf("  (cannot read the timeline now: %v)", err))
		}
		for _, e := range evs {
			key := fmt.Sprint(e.At.UnixNano(), e.Event, e.IP, e.Detail, e.By)
			if e.At.Before(since) || printed[key] {
				continue
			}
			printed[key] = true
			line := fmt.Sprintf("  %s  %+7.1fs  %-28s %-15s %s", e.At.Local().Format("15:04:05.000"), e.At.Sub(since).Seconds(), e.Event, addrOrDash(e), e.Detail)
			if e.By != "" {
				line += " (by " + e.By + ")"
			}
			p.lines = append(p.lines, line)
		}
	}
	read := func() poll {
		var p poll
		newLines(&p)
		if rec, ok, err := readMachine(cfg, dataDir, m.MAC); err == nil && ok && rec.State == store.StateInstalled && !rec.StateChanged.Before(since) {
			newLines(&p) // the report that made it installed, recorded meanwhile
			p.installed = &rec
		}
		return p
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		done := make(chan poll, 1)
		go func() { done <- read() }()
		select {
		case p := <-done:
			for _, ln := range p.lines {
				fmt.Fprintln(out, ln)
			}
			if p.installed != nil {
				fmt.Fprintf(out, "%s: installed, %s after it was armed\n", m.Hostname, p.installed.StateChanged.Sub(since).Round(100*time.Millisecond))
				return nil
			}
			select {
			case <-ctx.Done():
				return stopFollowing(ctx, out, m, dataDir, wait)
			case <-t.C:
			}
		case <-ctx.Done():
			return stopFollowing(ctx, out, m, dataDir, wait)
		}
	}
}

func stopFollowing(ctx context.Context, out io.Writer, m *config.Machine, dataDir string, wait time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s was not installed within %s: `flint machines --data %s` shows where it is, and its console why", m.Hostname, wait, dataDir)
	}
	fmt.Fprintf(out, "stopped following %s; it goes on booting: `flint machines --data %s --watch` shows it\n", m.Hostname, dataDir)
	return nil
}

func addrOrDash(e store.Event) string {
	if e.IP.IsValid() {
		return e.IP.String()
	}
	return "-"
}

// readEvents reads a machine's timeline from the store (openStore: cfg
// nil is DIR/flint.db), or from the running flint serve when that holds it.
func readEvents(cfg *config.Config, dataDir, mac string) ([]store.Event, error) {
	st, err := openStore(cfg, dataDir, storeRead)
	if err == nil {
		defer st.Close()
		return st.Events(mac)
	}
	if !errors.Is(err, store.ErrLocked) {
		return nil, err
	}
	var evs []store.Event
	err = adminCall(dataDir, http.MethodGet, "/api/v1/machines/"+url.PathEscape(mac)+"/events", nil, &evs, err)
	return evs, err
}

// readMachine reads one machine's record the same way.
func readMachine(cfg *config.Config, dataDir, mac string) (store.Machine, bool, error) {
	st, err := openStore(cfg, dataDir, storeRead)
	if err == nil {
		defer st.Close()
		return st.Machine(mac)
	}
	if !errors.Is(err, store.ErrLocked) {
		return store.Machine{}, false, err
	}
	ms, err := readMachinesFrom(cfg, dataDir)
	for _, m := range ms {
		if m.MAC == mac {
			return m, true, nil
		}
	}
	return store.Machine{}, false, err
}
