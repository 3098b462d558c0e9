package pki

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestOneSummaryLine: what the PKI creates is logged as one line per burst
// ("CA created" or "CA kept", with counts), not one per certificate or
// password; a renewal keeps its own line with the reason.
func TestOneSummaryLine(t *testing.T) {
	old := summaryQuiet
	// Wide enough that a loaded machine does not split one burst (key
	// generation can pause longer than a short window).
	summaryQuiet = 250 * time.Millisecond
	defer func() { summaryQuiet = old }()
	dir := t.TempDir()

	open := func(t *testing.T) (*PKI, *syncBuffer) {
		t.Helper()
		var buf syncBuffer
		p, err := Open(dir, time.Now, slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
		if err != nil {
			t.Fatal(err)
		}
		return p, &buf
	}
	lines := func(t *testing.T, buf *syncBuffer) []map[string]any {
		t.Helper()
		time.Sleep(4 * summaryQuiet)
		var out []map[string]any
		for _, ln := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if ln == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(ln), &m); err != nil {
				t.Fatalf("%v: %s", err, ln)
			}
			out = append(out, m)
		}
		return out
	}

	t.Run("first start", func(t *testing.T) {
		p, buf := open(t)
		for i := 1; i <= 3; i++ {
			n := Node{Name: fmt.Sprintf("nuc%d", i), IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)})}
			if _, err := p.EtcdServer(n); err != nil {
				t.Fatal(err)
			}
			if _, err := p.NodePassword(n.Name); err != nil {
				t.Fatal(err)
			}
		}
		got := lines(t, buf)
		if len(got) != 1 || got[0]["msg"] != "pki: CA created" {
			t.Fatalf("want one summary line, got %v", got)
		}
		// the admin client certificate and 3 etcd server certificates; 4 tokens and keys and 3 node passwords
		if got[0]["certificates_issued"] != 4.0 || got[0]["secrets_generated"] != 7.0 || got[0]["certificates_renewed"] != 0.0 {
			t.Errorf("counts: %v", got[0])
		}
	})
	t.Run("restart", func(t *testing.T) {
		p, buf := open(t)
		if _, err := p.EtcdServer(Node{Name: "nuc1", IP: netip.MustParseAddr("198.18.0.11")}); err != nil {
			t.Fatal(err)
		}
		if got := lines(t, buf); len(got) != 0 {
			t.Errorf("nothing was created, yet: %v", got)
		}
		if _, err := p.EtcdServer(Node{Name: "nuc4", IP: netip.MustParseAddr("198.18.0.14")}); err != nil {
			t.Fatal(err)
		}
		// nuc1 moved: its certificate is renewed, with its own line saying why.
		if _, err := p.EtcdServer(Node{Name: "nuc1", IP: netip.MustParseAddr("198.18.0.21")}); err != nil {
			t.Fatal(err)
		}
		got := lines(t, buf)
		if len(got) != 2 || got[0]["msg"] != "issued certificate" || !strings.Contains(fmt.Sprint(got[0]["reason"]), "IP addresses") ||
			got[1]["msg"] != "pki: CA kept" || got[1]["certificates_issued"] != 1.0 || got[1]["certificates_renewed"] != 1.0 {
			t.Errorf("got %v", got)
		}
	})
}
