package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serve says at start-up which Flatcar file machines would boot from is
// missing, instead of leaving a new user to find a 404 on a console.
func TestServeWarnsMissingFlatcar(t *testing.T) {
	cfg, err := loadConfig(loopbackConfig(t, freePort(t), freePort(t), ""))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var logs bytes.Buffer
	warnMissingBootFiles(cfg, dir, slog.New(slog.NewTextHandler(&logs, nil)))
	for _, want := range []string{"Flatcar boot file missing", "/assets/flatcar/flatcar_production_pxe.vmlinuz", "/assets/flatcar/flatcar_production_pxe_image.cpio.gz", "flint assets sync"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("start-up warnings lack %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "k3s") {
		t.Errorf("the K3s and etcd assets are warned about by the render check, not here:\n%s", logs.String())
	}
	for _, f := range []string{"flatcar/flatcar_production_pxe.vmlinuz", "flatcar/flatcar_production_pxe_image.cpio.gz"} {
		os.MkdirAll(filepath.Join(dir, "flatcar"), 0o755)
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	logs.Reset()
	warnMissingBootFiles(cfg, dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if logs.Len() > 0 {
		t.Errorf("warnings with both files there:\n%s", logs.String())
	}
}
