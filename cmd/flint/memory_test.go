package main

import (
	"log/slog"
	"math"
	"runtime/debug"
	"testing"

	"github.com/flint-boot/flint/config"
)

func TestApplyMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	log := slog.New(slog.DiscardHandler)
	cfg := &config.Config{Limits: config.Limits{MemoryMiB: 120}}

	applyMemoryLimit(cfg, func(string) string { return "" }, log)
	if got := debug.SetMemoryLimit(-1); got != 120<<20 {
		t.Errorf("limit %d, want limits.memory_mib's %d", got, 120<<20)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	applyMemoryLimit(cfg, func(k string) string {
		if k == "GOMEMLIMIT" {
			return "1GiB"
		}
		return ""
	}, log)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("limit %d with GOMEMLIMIT set: the config overrode the environment", got)
	}
}
