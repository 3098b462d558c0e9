// Command flint is a bare-metal boot server: DHCP, TFTP and HTTP in one binary.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "flint:", err)
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit status (validate uses 1 for a bad config).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 1
}

type globalFlags struct {
	logFormat string
	logLevel  string
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "flint",
		Short: "Bare-metal boot server: DHCP, TFTP and HTTP for PXE/iPXE-booting Flatcar machines",
		Long: `flint answers DHCP, TFTP and HTTP for the machines of one site so that they
PXE-boot, load iPXE, and fetch a per-machine boot script — from one binary
and one YAML config file.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Check the global flags for every command, also those that log nothing.
		PersistentPreRunE: func(*cobra.Command, []string) error {
			_, err := g.logger()
			return err
		},
	}
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(newServeCmd(g), newValidateCmd(), newMachinesCmd(), newRenderCmd(g), newPKICmd(g), newReprovisionCmd(), newPowerCmd(), newAssetsCmd(g), newStoreCmd(), newVersionCmd())
	return root
}

// logger builds the structured logger all services share; logs go to stderr so
// stdout stays for the banner and command output.
func (g *globalFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(g.logFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: use text or json", g.logFormat)
	}
}
