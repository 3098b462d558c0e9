package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// noArgs is cobra.NoArgs with an error that says what to pass instead.
func noArgs(hint string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("%s takes no arguments, got %q: %s", cmd.CommandPath(), strings.Join(args, " "), hint)
		}
		return nil
	}
}

// oneNode is the argument check of commands that act on one machine.
func oneNode(cmd *cobra.Command, args []string) error {
	switch len(args) {
	case 1:
		return nil
	case 0:
		return errors.New(cmd.Name() + " needs the machine's hostname or MAC: flint " + cmd.Name() + " NODE")
	default:
		return fmt.Errorf("%s takes one machine, got %d (%s): run it once per machine", cmd.Name(), len(args), strings.Join(args, " "))
	}
}

// plural is "1 server" or "3 servers": count and noun, singular or plural.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
