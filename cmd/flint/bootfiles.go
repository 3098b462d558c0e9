package main

import (
	"log/slog"
	"strings"

	"github.com/flint-boot/flint/assets"
	"github.com/flint-boot/flint/config"
)

// warnMissingBootFiles warns, at start-up, about the Flatcar files machines
// boot from (kernel, initrd, and the disk image for disk installs) that
// the assets directory lacks: flint serves meanwhile, but no machine boots.
func warnMissingBootFiles(cfg *config.Config, assetsDir string, log *slog.Logger) {
	st, err := assets.Open(assetsDir)
	if err != nil {
		log.Warn("cannot check the Flatcar boot files", "err", err.Error())
		return
	}
	for _, g := range st.Check(cfg) {
		if strings.HasPrefix(g.Name, "flatcar-") {
			log.Warn("Flatcar boot file missing: machines cannot boot until it is there", "asset", g.Name, "path", "/assets/"+g.Path, "problem", g.Reason)
		}
	}
}
