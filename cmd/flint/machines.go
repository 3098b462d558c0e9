package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

func newMachinesCmd() *cobra.Command {
	var data, path string
	var asJSON, watch bool
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "machines [--data DIR | --config FILE] [--json]",
		Short: "List known and discovered machines and what flint last saw of them",
		Long: `machines lists every machine of the config (known) and every other MAC that
asked flint for an address or a boot file (discovered), with the address it
got, its firmware architecture, when it was first and last seen and the last
exchange. It reads DIR/flint.db, or asks the running flint serve when that
holds the database. With --config it reads the state that config's store
section names: DIR/flint.db (store.backend: bolt) or the etcd store that
flint serve instances share (store.backend: etcd).

STATE is the machine's lifecycle: discovered (an unknown MAC asked), ready
(known, never installed), installing (its config was served; "stuck" once
cluster.install_timeout passed with no report), installed (the node reported
it done), reprovision (armed by flint reprovision). --watch
redraws the table until interrupted: handy during a boot storm.`,
		Args: noArgs("pass the data directory of your flint serve with --data DIR"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if watch {
				return watchMachines(cmd, path, data, every)
			}
			ms, err := readMachines(path, data)
			if err != nil {
				return err
			}
			sortMachines(ms)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(ms)
			}
			printMachines(cmd.OutOrStdout(), ms, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVarP(&data, "data", "d", "./flint-data", "data directory of the flint serve to inspect")
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file of the flint serve to inspect: its store section says where the state is (default: DIR/flint.db)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw the table every --interval until interrupted")
	cmd.Flags().DurationVar(&every, "interval", time.Second, "redraw interval for --watch")
	return cmd
}

// watchMachines redraws the table; on a terminal it clears the screen first.
func watchMachines(cmd *cobra.Command, cfgPath, data string, every time.Duration) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := cmd.OutOrStdout()
	tty := false
	if f, ok := out.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	read := func() ([]store.Machine, error) { return readMachines(cfgPath, data) }
	if cfgPath != "" {
		cfg, err := loadConfig(cfgPath)
		if err != nil {
			return fmt.Errorf("%w\nfix the config (flint validate --config FILE shows every problem)", err)
		}
		read = func() ([]store.Machine, error) { return readMachinesFrom(cfg, data) }
		if cfg.Store.Backend == config.StoreEtcd {
			// One connection for the whole watch, not one per redraw.
			st, err := openStore(cfg, data, storeRead)
			if err != nil {
				return err
			}
			defer st.Close()
			read = func() ([]store.Machine, error) { return publicMachines(st) }
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		ms, err := read()
		if tty {
			fmt.Fprint(out, "\x1b[H\x1b[2J")
		}
		now := time.Now()
		fmt.Fprintf(out, "flint machines --data %s   %s\n", data, now.Format("15:04:05"))
		if err != nil {
			fmt.Fprintf(out, "error: %v\n", err)
		} else {
			sortMachines(ms)
			printMachines(out, ms, now)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// readMachines reads the state directly (the config's store, or
// DIR/flint.db without a config), or asks the running flint serve over its
// admin socket when that holds the bolt database's lock.
func readMachines(cfgPath, dataDir string) ([]store.Machine, error) {
	var cfg *config.Config
	if cfgPath != "" {
		var err error
		if cfg, err = loadConfig(cfgPath); err != nil {
			return nil, fmt.Errorf("%w\nfix the config (flint validate --config FILE shows every problem)", err)
		}
	}
	return readMachinesFrom(cfg, dataDir)
}

// readMachinesFrom is readMachines with the config loaded (nil: none given).
func readMachinesFrom(cfg *config.Config, dataDir string) ([]store.Machine, error) {
	st, err := openStore(cfg, dataDir, storeRead)
	if err == nil {
		defer st.Close()
		return publicMachines(st)
	}
	if !errors.Is(err, store.ErrLocked) {
		return nil, err
	}
	var ms []store.Machine
	if err := adminCall(dataDir, http.MethodGet, "/api/v1/machines", nil, &ms, err); err != nil {
		return nil, err
	}
	return ms, nil
}

// publicMachines lists the records as flint shows them (store.Machine.Public).
func publicMachines(st store.Store) ([]store.Machine, error) {
	ms, err := st.Machines()
	for i := range ms {
		ms[i] = ms[i].Public()
	}
	return ms, err
}

func sortMachines(ms []store.Machine) {
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].Known != ms[j].Known {
			return ms[i].Known
		}
		if ms[i].Hostname != ms[j].Hostname {
			return ms[i].Hostname < ms[j].Hostname
		}
		return ms[i].MAC < ms[j].MAC
	})
}

func printMachines(out io.Writer, ms []store.Machine, now time.Time) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tMAC\tROLE\tSTATE\tIP\tARCH\tFIRST SEEN\tLAST SEEN\tLAST EVENT")
	for _, m := range ms {
		state, host, role := string(m.State), "-", "-"
		if m.Known {
			host, role = m.Hostname, m.Role
		}
		if state == "" {
			state = "discovered"
		}
		if m.Rebuilding {
			state += " (etcd rebuild)"
		}
		if m.Stuck && m.State == store.StateInstalling {
			state += " (stuck " + strings.TrimSuffix(ago(m.StateChanged, now), " ago") + ")"
		}
		ip := "-"
		switch {
		case m.IP.IsValid():
			ip = m.IP.String()
		case m.ReservedIP.IsValid():
			ip = m.ReservedIP.String() + " (reserved)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", host, m.MAC, role, state, ip,
			dash(m.Arch), ago(m.FirstSeen, now), ago(m.LastSeen, now), dash(m.LastEvent))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ago renders a time as "3m ago" so a watcher sees activity at a glance.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	default:
		return t.Local().Format("2006-01-02")
	}
}
