package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/ignition"
)

func newRenderCmd(g *globalFlags) *cobra.Command {
	var path, data, mac, spec string
	var roleCheck, pretty bool
	cmd := &cobra.Command{
		Use:   "render --mac MAC|HOSTNAME [--config FILE] [--data DIR] [--spec 3|2] [--pretty] [--role-check]",
		Short: "Print the Ignition config a machine gets",
		Long: `render prints the Ignition config flint serves to the machine with MAC, made
with the PKI in DIR/pki and the assets in DIR/assets. render only reads DIR:
it fails if flint serve has not created the PKI there yet, and certificates or
a node password the machine does not have yet are made in memory for the
output (flint serve makes the real ones when the machine first asks). The
output holds that machine's private keys and the K3s token: treat it as a
secret: printed to a terminal, it comes with a warning on stderr.

--mac takes the machine's MAC or its hostname. --pretty indents the JSON.
--spec 2 renders the spec 2.3.0 config legacy Flatcar clients get.
--role-check also lists what the machine's role needs (certificates, etcd and
K3s settings, units) and exits 1 if anything is missing or if an agent would
get etcd keys.`,
		Args: noArgs("name the machine with --mac MAC and the config with --config FILE"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			if err := cfg.ResolveAddress(); err != nil {
				return err
			}
			m, err := machineOf(cfg, mac)
			if err != nil {
				return err
			}
			hw := m.HW
			sp := ignition.SpecV3
			switch spec {
			case "3", "":
			case "2":
				sp = ignition.SpecLegacy
			default:
				return fmt.Errorf("--spec %q: use 3 (Ignition v2, current Flatcar) or 2 (legacy Ignition v0.x)", spec)
			}
			secrets, closePKI, err := openExistingPKI(cfg, data, log)
			if err != nil {
				return err
			}
			defer closePKI()
			r, err := ignition.NewRenderer(cfg, secrets, assetsDirOf(cfg, data), ignition.RenderOptions{Log: log})
			if err != nil {
				return err
			}
			out, err := r.RenderMAC(hw, sp)
			if err != nil {
				return err
			}
			if roleCheck {
				return checkRole(cmd.OutOrStdout(), m, out)
			}
			if u := secrets.Unsaved(); len(u) > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: %s has no %s in %s yet: this output holds ones made just for it; flint serve makes and keeps its own when %s first fetches its config\n",
					m.Hostname, strings.Join(u, ", "), secrets.Dir(), m.Hostname)
			}
			if pretty {
				var b bytes.Buffer
				if err := json.Indent(&b, out, "", "  "); err != nil {
					return fmt.Errorf("indent the config: %w", err)
				}
				out = b.Bytes()
			}
			if isTerminal(cmd.OutOrStdout()) {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: this is %s's config with its private keys, node password and the K3s token; it stays in this terminal's scrollback: redirect it to a file (flint render ... > %s.ign) and keep that private\n", m.Hostname, m.Hostname)
			}
			_, err = cmd.OutOrStdout().Write(append(out, '\n'))
			return err
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file (default: the embedded example cluster)")
	cmd.Flags().StringVarP(&data, "data", "d", "./flint-data", "data directory (PKI and assets)")
	cmd.Flags().StringVar(&mac, "mac", "", "the machine: its MAC (52:54:00:12:34:56 or 52-54-00-12-34-56) or its hostname")
	cmd.Flags().BoolVar(&pretty, "pretty", false, "indent the JSON for reading")
	cmd.Flags().StringVar(&spec, "spec", "3", "Ignition spec: 3 or 2 (legacy)")
	cmd.Flags().BoolVar(&roleCheck, "role-check", false, "check the config carries what the machine's role needs instead of printing it")
	cmd.MarkFlagRequired("mac")
	return cmd
}

// machineOf finds the machine --mac names, by hostname or MAC.
func machineOf(cfg *config.Config, s string) (*config.Machine, error) {
	if m, ok := cfg.MachineByNameOrMAC(s); ok {
		return m, nil
	}
	if hw, err := config.ParseMAC(s); err == nil {
		return nil, fmt.Errorf("MAC %s is not under machines: in %s", hw, cfg.Source)
	}
	names := make([]string, 0, len(cfg.Machines))
	for _, m := range cfg.Machines {
		names = append(names, m.Hostname)
	}
	return nil, fmt.Errorf("--mac %q is neither a MAC nor a hostname under machines: in %s (hostnames: %s)", s, cfg.Source, strings.Join(names, ", "))
}

// isTerminal reports whether w is a terminal (a variable for tests).
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// What a role's config must hold (files, directories, units) — the checklist
// of --role-check. Paths are the profiles' defaults.
var roleNeeds = map[string][]string{
	config.RoleServer: {
		"file /etc/hostname", "file /etc/systemd/network/00-flint.network", "file /etc/hosts",
		"file /etc/ssl/etcd/ca.crt", "file /etc/ssl/etcd/server.crt", "file /etc/ssl/etcd/server.key",
		"file /etc/ssl/etcd/peer.crt", "file /etc/ssl/etcd/peer.key",
		"file /etc/ssl/etcd/client.crt", "file /etc/ssl/etcd/client.key",
		"file /etc/etcd/etcd.env", "directory /var/lib/etcd", "file /opt/bin/etcd", "file /opt/bin/etcdctl",
		"file /opt/bin/k3s", "file /etc/rancher/k3s/k3s.env", "file /etc/rancher/node/password",
		"unit etcd.service", "unit k3s.service",
	},
	config.RoleAgent: {
		"file /etc/hostname", "file /etc/systemd/network/00-flint.network", "file /etc/hosts",
		"file /opt/bin/k3s", "file /etc/rancher/k3s/k3s.env", "file /etc/rancher/node/password",
		"unit k3s-agent.service",
	},
}

// checkRole lists the role's needs against the rendered config.
func checkRole(out io.Writer, m *config.Machine, raw []byte) error {
	var c struct {
		Storage struct {
			Files       []struct{ Path string } `json:"files"`
			Directories []struct{ Path string } `json:"directories"`
		} `json:"storage"`
		Systemd struct {
			Units []struct{ Name string } `json:"units"`
		} `json:"systemd"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("parse the rendered config: %w", err)
	}
	have := map[string]bool{}
	for _, f := range c.Storage.Files {
		have["file "+f.Path] = true
	}
	for _, d := range c.Storage.Directories {
		have["directory "+d.Path] = true
	}
	for _, u := range c.Systemd.Units {
		have["unit "+u.Name] = true
	}
	var missing []string
	fmt.Fprintf(out, "%s (%s, role %s):\n", m.Hostname, m.MAC, m.Role)
	for _, need := range roleNeeds[m.Role] {
		mark := "ok     "
		if !have[need] {
			mark = "MISSING"
			missing = append(missing, need)
		}
		fmt.Fprintf(out, "  %s %s\n", mark, need)
	}
	if m.Role == config.RoleAgent {
		for k := range have {
			if strings.HasPrefix(k, "file /etc/ssl/etcd/") {
				fmt.Fprintf(out, "  WRONG   %s: an agent must not get etcd credentials\n", k)
				missing = append(missing, k)
			}
		}
	}
	if len(missing) > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%s's config lacks what role %s needs: %s", m.Hostname, m.Role, strings.Join(missing, ", "))}
	}
	return nil
}
