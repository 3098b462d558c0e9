package integration

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboard: Debian's Chromium, headless on a LAN host, opens flint's
// web dashboard over HTTPS (flint's certificate pinned), connects with the
// admin token, sees the config's machines, watches one change state live
// (no reload) while it network-boots from its own namespace with the real
// clients (udhcpc, atftp, then its script, kernel, initrd and config:
// installing) and sends its first report (installed), opens its timeline
// (every step in order) and a reprovision plan (nothing armed), arms it
// from the page (the state follows live), and saves a screenshot.
func TestDashboard(t *testing.T) {
	needRoot(t)
	needBinaries(t)
	needTools(t, "curl", "chromium")
	site := newMonitoredSite(t, node1, node2, node3)
	l, data := site.l, site.data

	// Chromium runs in the monitoring host's namespace; it trusts flint's
	// serving certificate by its public key, nothing else.
	wrapper := l.writeFile(t, "chromium-in-netns", "#!/bin/sh\nexec ip netns exec "+site.mon.NS+" chromium \"$@\"\n", 0o755)
	ctx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(wrapper), chromedp.NoSandbox, chromedp.WindowSize(1400, 800),
		chromedp.Flag("ignore-certificate-errors-spki-list", spkiHash(t, filepath.Join(data, "pki", "serving", "flint.crt"))))...)
	defer cancel()
	ctx, cancel = chromedp.NewContext(ctx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	row := `tr[data-mac="` + node1.MAC + `"]`
	stateOf := func() string {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('`+row+`')||{dataset:{}}).dataset.state || ''`))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("connect with the admin token", func(t *testing.T) {
		err := chromedp.Do(ctx,
			chromedp.Navigate(flintHTTPS+"/ui/"),
			chromedp.WaitVisible(chromedp.ID("token")),
			chromedp.SendKeys(chromedp.ID("token"), site.adminToken(t)),
			chromedp.Click(chromedp.ID("connect")),
			chromedp.WaitVisible(chromedp.CSS(row)),
			chromedp.WaitVisible(chromedp.CSS("#status.live")),
		)
		if err != nil {
			t.Fatalf("the dashboard did not show the machines live: %v", err)
		}
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("machines")))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []machine{node1, node2, node3} {
			if !strings.Contains(text, m.Hostname) || !strings.Contains(text, m.MAC) {
				t.Errorf("the table lacks %s (%s):\n%s", m.Hostname, m.MAC, text)
			}
		}
		if s := stateOf(); s != "ready" {
			t.Errorf("node1 is %q before it boots, want ready", s)
		}
	})

	// waitState waits until the page, never reloaded, shows node1 in want.
	waitState := func(t *testing.T, want, after string) {
		t.Helper()
		start := time.Now()
		if err := eventually(10*time.Second, 100*time.Millisecond, func() error {
			if s := stateOf(); s != want {
				return fmt.Errorf("node1 shows %q", s)
			}
			return nil
		}); err != nil {
			t.Fatalf("the page did not follow node1 to %s without a reload: %v", want, err)
		}
		t.Logf("the page showed %s %v after %s", want, time.Since(start).Round(time.Millisecond), after)
	}

	t.Run("a machine changes state live", func(t *testing.T) {
		config := site.node1Boots(t)
		waitState(t, "installing", "its config went out")
		site.node1Reports(t, config, "config-applied")
		waitState(t, "installed", "it reported config-applied")
	})

	t.Run("timeline and reprovision plan", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(row)), chromedp.WaitVisible(chromedp.CSS("#timeline li"))); err != nil {
			t.Fatal(err)
		}
		timeline, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("timeline")))
		if err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("reprovision")), chromedp.WaitVisible(chromedp.ID("plan"))); err != nil {
			t.Fatal(err)
		}
		plan, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("plan")))
		if err != nil {
			t.Fatal(err)
		}
		// Every step of the boot, newest first as the page lists them.
		at := 0
		for _, step := range []string{"node config-applied", "ignition served", "flatcar_production_pxe_image.cpio.gz", "flatcar_production_pxe.vmlinuz",
			"http script", "tftp undionly.kpxe", "dhcp ACK", "dhcp OFFER"} {
			i := strings.Index(timeline[at:], step)
			if i < 0 {
				t.Errorf("the timeline lacks %q after position %d:\n%s", step, at, timeline)
				break
			}
			at += i
		}
		t.Logf("node1's timeline on the page:\n%s", timeline)
		if !strings.Contains(plan, "node1") || !strings.Contains(plan, "etcd") {
			t.Errorf("plan:\n%s", plan)
		}
		if s := stateOf(); s != "installed" {
			t.Errorf("showing the plan changed node1 to %q", s)
		}
	})

	t.Run("arming from the page, after its plan", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("arm"))); err != nil {
			t.Fatal(err)
		}
		waitState(t, "reprovision", "it was armed from the page")
		plan, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("plan")))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(plan, "node1 is armed") {
			t.Errorf("after arming, the plan box says:\n%s", plan)
		}
	})

	t.Run("screenshot", func(t *testing.T) {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(l.Dir, "dashboard.png")
		if dir := os.Getenv("FLINT_SCREENSHOT_DIR"); dir != "" {
			path = filepath.Join(dir, "dashboard.png")
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	})
}

// spkiHash is Chromium's pin of a certificate's public key: base64 of the
// SHA-256 of its SubjectPublicKeyInfo.
func spkiHash(t *testing.T, certFile string) string {
	t.Helper()
	raw, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		t.Fatalf("%s: no PEM", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
