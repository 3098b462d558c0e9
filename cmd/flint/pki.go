package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/spf13/cobra"
)

func newPKICmd(g *globalFlags) *cobra.Command {
	var data, path, print string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "pki [--data DIR] [--config FILE] [--json | --print ca.crt|admin-token]",
		Short: "List the certificates flint keeps, with subjects, SANs and expiry",
		Long: `pki lists the etcd CA and every certificate in DIR/pki: file, common name,
SANs, key usages and expiry, and whether it is due for renewal (flint re-issues
a node's certificates on its next render once they are within 30 days of
expiry). Private keys, the K3s token and node passwords are never printed.
With --config naming an etcd store (store.backend: etcd), it lists the PKI the
flint instances keep there instead.

--print ca.crt prints the CA certificate (PEM) that clients of flint's HTTPS
trust; --print admin-token prints the admin API's bearer token. With an etcd
store both are sealed there, so this is how to get them (e.g. for curl
--cacert or Prometheus' credentials_file); keep the token as secret as a root
password.`,
		Args: noArgs("pass the data directory of your flint serve with --data DIR"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			var cfg *config.Config
			if path != "" {
				if cfg, err = loadConfig(path); err != nil {
					return err
				}
			}
			p, closePKI, err := openExistingPKI(cfg, data, log)
			if err != nil {
				return err
			}
			defer closePKI()
			switch print {
			case "":
			case "ca.crt":
				_, err := cmd.OutOrStdout().Write(p.CACertPEM())
				return err
			case "admin-token":
				if isTerminal(cmd.OutOrStdout()) {
					fmt.Fprintln(cmd.ErrOrStderr(), "warning: this is flint's admin token; it stays in this terminal's scrollback: redirect it to a 0600 file instead")
				}
				_, err := fmt.Fprintln(cmd.OutOrStdout(), p.AdminToken())
				return err
			default:
				return fmt.Errorf("--print %q: use ca.crt or admin-token", print)
			}
			certs, err := p.List()
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(certs)
			}
			now := time.Now()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FILE\tSUBJECT\tSANS\tUSAGE\tEXPIRES\tSTATUS")
			for _, c := range certs {
				var sans []string
				sans = append(sans, c.DNSNames...)
				for _, ip := range c.IPs {
					sans = append(sans, ip.String())
				}
				status := "ok"
				if c.RenewalDue {
					status = "renew: " + c.Reason
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s (%dd)\t%s\n", c.File, c.CommonName, dash(strings.Join(sans, ",")),
					strings.Join(c.Usages, ","), c.NotAfter.Format("2006-01-02"), int(c.NotAfter.Sub(now).Hours()/24), status)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&data, "data", "d", "./flint-data", "data directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file: with an etcd store, list the PKI kept there")
	cmd.Flags().StringVar(&print, "print", "", "print ca.crt (the CA certificate) or admin-token (the admin API token) instead of the list")
	return cmd
}
