package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/deploy/examples"
	"github.com/flint-boot/flint/httpd"
	"github.com/flint-boot/flint/ignition"
	"github.com/flint-boot/flint/pki"
	"github.com/flint-boot/flint/store"
)

// /readyz's checks against the real store and renderer: ready while both
// answer, and each failure named by its check.
func TestReadiness(t *testing.T) {
	cfg, err := config.Parse(examples.ClusterSource, examples.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	profilesDir := filepath.Join(t.TempDir(), "profiles")
	if err := os.Mkdir(profilesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.Cluster.ProfilesDir = profilesDir
	data := t.TempDir()
	st, err := store.OpenBolt(data, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	secrets, err := pki.Open(filepath.Join(data, "pki"), time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	renderer, err := ignition.NewRenderer(cfg, secrets, filepath.Join(data, "assets"), ignition.RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := readiness{store: st, renderer: renderer, probe: readinessProbeKey(cfg)}
	if err := r.Ready(); err != nil {
		t.Fatalf("Ready with a working store and profiles: %v", err)
	}

	// The operator's profiles directory disappears (a bad mount, a typo'd rename).
	if err := os.Remove(profilesDir); err != nil {
		t.Fatal(err)
	}
	if check := failedCheck(t, r.Ready()); check != "profiles" {
		t.Errorf("profiles directory gone: failed check %q, want profiles", check)
	}
	if err := os.Mkdir(profilesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := r.Ready(); err != nil {
		t.Errorf("profiles directory back: still not ready: %v", err)
	}

	st.Close()
	if check := failedCheck(t, r.Ready()); check != "store" {
		t.Errorf("store closed: failed check %q, want store", check)
	}
}

func failedCheck(t *testing.T, err error) string {
	t.Helper()
	var nr *httpd.NotReady
	if !errors.As(err, &nr) {
		t.Fatalf("Ready = %v, want a *httpd.NotReady", err)
	}
	return nr.Check
}
