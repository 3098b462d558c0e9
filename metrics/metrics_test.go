package metrics

import (
	"bytes"
	"fmt"
	"io"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/testenv"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

// TestExposition: every family flint keeps is exposed with the values
// counted, and `promtool check metrics` (Debian's prometheus package) finds
// nothing wrong with names, units, help texts or types.
func TestExposition(t *testing.T) {
	m := New("v1.2.3")
	m.DHCPPacket("DISCOVER", "OFFER")
	m.DHCPPacket("RELEASE", "")
	m.TFTPTransfer("ipxe.efi", 1000, true)
	m.TFTPTransfer("ipxe.efi", 0, false)
	m.HTTPRequest("http", "/machines/:mac/boot.ipxe", "GET", 200, 3*time.Millisecond)
	m.Config("secret", "serve", "")
	m.RefusalReasons([]string{"token", "address"})
	m.Config("secret", "refuse", "token")
	m.CounterFunc("flint_events_dropped_total", "Timeline events dropped because the queue was full.", func() float64 { return 7 })
	m.AssetSync(func() (AssetSyncs, bool) {
		return AssetSyncs{Runs: 3, LastRun: time.Unix(1700000100, 0), LastSuccess: time.Unix(1700000000, 0), Bytes: 4096,
			Failures: map[string]int64{"flatcar": 1, "k3s": 0}}, true
	})
	out := scrape(t, m)

	t.Run("values", func(t *testing.T) {
		for _, want := range []string{
			`flint_dhcp_packets_total{reply="OFFER",type="DISCOVER"} 1`,
			`flint_dhcp_packets_total{reply="none",type="RELEASE"} 1`,
			`flint_tftp_transfers_total{file="ipxe.efi",result="ok"} 1`,
			`flint_tftp_transfers_total{file="ipxe.efi",result="failed"} 1`,
			`flint_tftp_sent_bytes_total{file="ipxe.efi"} 1000`,
			`flint_http_requests_total{code="200",listener="http",method="GET",route="/machines/:mac/boot.ipxe"} 1`,
			`flint_http_request_duration_seconds_count{listener="http",route="/machines/:mac/boot.ipxe"} 1`,
			`flint_ignition_configs_total{kind="secret",verdict="serve"} 1`,
			`flint_ignition_configs_total{kind="secret",verdict="refuse"} 1`,
			`flint_ignition_refusals_total{kind="secret",reason="token"} 1`,
			`flint_ignition_refusals_total{kind="pointer",reason="address"} 0`,
			`flint_events_dropped_total 7`,
			`flint_asset_sync_runs_total 3`,
			`flint_asset_sync_downloaded_bytes_total 4096`,
			`flint_asset_sync_failures_total{product="flatcar"} 1`,
			`flint_asset_sync_failures_total{product="k3s"} 0`,
			`flint_asset_sync_last_run_ok 0`,
			`flint_asset_sync_last_run_timestamp_seconds 1.7000001e+09`,
			`flint_asset_sync_last_success_timestamp_seconds 1.7e+09`,
			`flint_build_info{goversion="go`,
			`go_goroutines `,
			`process_resident_memory_bytes `,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("exposition lacks %s", want)
			}
		}
	})

	t.Run("promtool", func(t *testing.T) {
		promtool, err := exec.LookPath("promtool")
		if err != nil {
			testenv.Unavailable(t, "install Debian's prometheus package (make deps)", "promtool not found")
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(out)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("promtool check metrics: %v\n%s", err, stderr.String())
		}
	})
}

// TestLabelsStayBounded: names a client makes up never become series; at
// most maxFileLabels files get their own.
func TestLabelsStayBounded(t *testing.T) {
	m := New("test")
	for i := 0; i < 1000; i++ {
		m.TFTPTransfer(fmt.Sprintf("made-up-%d", i), 0, false)
	}
	for i := 0; i < maxFileLabels+10; i++ {
		m.TFTPTransfer(fmt.Sprintf("file-%d", i), 10, true)
	}
	m.HTTPRequest("http", "", "BREW", 404, time.Millisecond)
	out := scrape(t, m)
	if strings.Contains(out, "made-up-") {
		t.Error("a failed transfer of a made-up name got a series of its own")
	}
	if !strings.Contains(out, `flint_tftp_transfers_total{file="other",result="failed"} 1000`) {
		t.Error("failed transfers of made-up names are not counted as other")
	}
	if n := strings.Count(out, `flint_tftp_transfers_total{file="file-`); n != maxFileLabels {
		t.Errorf("%d files have series of their own, want %d", n, maxFileLabels)
	}
	if !strings.Contains(out, `flint_tftp_transfers_total{file="other",result="ok"} 10`) {
		t.Error("files past the cap are not counted as other")
	}
	if !strings.Contains(out, `method="other",route="unmatched"`) {
		t.Error("an unknown method or route is not folded into other/unmatched")
	}
}

// TestNilCountsNothing: a package used without metrics does not crash.
func TestNilCountsNothing(t *testing.T) {
	var m *Metrics
	m.DHCPPacket("DISCOVER", "OFFER")
	m.TFTPTransfer("x", 1, true)
	m.HTTPRequest("http", "/", "GET", 200, time.Second)
	m.Config("secret", "refuse", "token")
	m.RefusalReasons([]string{"token"})
	m.CounterFunc("flint_x_total", "x", func() float64 { return 0 })
}

// TestAlertedSeriesStartAtZero: the series the alert rules take increase()
// of are there before the first event, so the first refusal fires.
func TestAlertedSeriesStartAtZero(t *testing.T) {
	out := scrape(t, New("test"))
	for _, want := range []string{
		`flint_ignition_configs_total{kind="secret",verdict="refuse"} 0`,
		`flint_ignition_configs_total{kind="pointer",verdict="wait"} 0`,
		`flint_etcd_rejoins_total{result="failed"} 0`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("a fresh flint lacks %s", want)
		}
	}
}

// TestAssetSyncNeverRun: before the first sync only the counters show (at
// 0); an unreadable store shows none of the family.
func TestAssetSyncNeverRun(t *testing.T) {
	m := New("test")
	m.AssetSync(func() (AssetSyncs, bool) { return AssetSyncs{Failures: map[string]int64{"etcd": 0}}, true })
	out := scrape(t, m)
	for _, want := range []string{"flint_asset_sync_runs_total 0", `flint_asset_sync_failures_total{product="etcd"} 0`} {
		if !strings.Contains(out, want) {
			t.Errorf("never synced: exposition lacks %s", want)
		}
	}
	for _, absent := range []string{"flint_asset_sync_last_run_ok ", "flint_asset_sync_last_run_timestamp_seconds ", "flint_asset_sync_last_success_timestamp_seconds "} {
		if strings.Contains(out, absent) {
			t.Errorf("never synced: exposition has %s", absent)
		}
	}
	m = New("test")
	m.AssetSync(func() (AssetSyncs, bool) { return AssetSyncs{}, false })
	if out := scrape(t, m); strings.Contains(out, "flint_asset_sync_") {
		t.Errorf("unreadable store: exposition has asset sync series")
	}
}

// TestMachines: one reading gives both families.
func TestMachines(t *testing.T) {
	m := New("test")
	calls := 0
	m.Machines(func() (map[string]int, int) {
		calls++
		return map[string]int{"ready": 2, "installing": 1}, 1
	})
	out := scrape(t, m)
	for _, want := range []string{`flint_machines{state="ready"} 2`, `flint_machines{state="installing"} 1`, "flint_machines_stuck 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
	if calls != 1 {
		t.Errorf("one scrape read the machines %d times, want once", calls)
	}
}
