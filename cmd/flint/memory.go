package main

import (
	"log/slog"
	"runtime/debug"

	"github.com/flint-boot/flint/config"
)

// applyMemoryLimit sets Go's soft memory limit to limits.memory_mib, unless
// the GOMEMLIMIT environment variable already set one (the runtime applied
// it at start; it wins, as Go's documentation promises). A boot storm makes
// garbage faster than the default GC pacing returns it: without a limit the
// heap grows to twice what is live.
func applyMemoryLimit(cfg *config.Config, getenv func(string) string, log *slog.Logger) {
	if v := getenv("GOMEMLIMIT"); v != "" {
		log.Info("memory limit from GOMEMLIMIT; limits.memory_mib ignored", "GOMEMLIMIT", v)
		return
	}
	debug.SetMemoryLimit(int64(cfg.Limits.MemoryMiB) << 20)
}
