package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// embeddedModules are the libraries that decide what a rendered config may
// hold: Butane translates the profiles, Ignition (and Flatcar's fork, for
// spec 2) checks and converts the result.
var embeddedModules = []string{"github.com/coreos/butane", "github.com/coreos/ignition/v2", "github.com/flatcar/ignition"}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print flint's version, its Go version and the Butane and Ignition libraries it embeds",
		Args:  noArgs("run flint version alone"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, _ := debug.ReadBuildInfo()
			writeVersion(cmd.OutOrStdout(), info)
			return nil
		},
	}
}

// writeVersion prints version (set with -ldflags "-X main.version=..."), the
// Go version, and the embedded modules' versions when info lists them.
func writeVersion(w io.Writer, info *debug.BuildInfo) {
	fmt.Fprintf(w, "flint %s\n", version)
	fmt.Fprintf(w, "  go %s\n", runtime.Version())
	if info == nil {
		return
	}
	for _, path := range embeddedModules {
		for _, m := range info.Deps {
			if m.Path != path {
				continue
			}
			if m.Replace != nil {
				m = m.Replace
			}
			fmt.Fprintf(w, "  %s %s\n", path, m.Version)
		}
	}
}
