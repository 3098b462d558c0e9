package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestPrometheus: a real Prometheus (Debian's) on a monitoring host of the
// LAN scrapes flint's /metrics over HTTPS, checking flint's certificate
// against its CA and sending the admin token, and after a machine fetched
// its script and config the queries for those counters answer.
func TestPrometheus(t *testing.T) {
	needRoot(t)
	needBinaries(t)
	needTools(t, "curl", "prometheus")
	site := newMonitoredSite(t, node1)
	l, data, ca, mon := site.l, site.data, site.ca, site.mon

	t.Run("scrape needs the admin token", func(t *testing.T) {
		if code, r := l.Curl(mon.NS, "--cacert", ca, "-o", "/dev/null", flintHTTPS+"/metrics"); code != "401" {
			t.Errorf("GET /metrics without the token: %s\n%s", code, r)
		}
		if code, r := l.Curl(mon.NS, "-o", "/dev/null", flintHTTP+"/metrics"); code != "404" {
			t.Errorf("GET /metrics on plain HTTP: %s\n%s", code, r)
		}
	})

	t.Run("promtool check metrics", func(t *testing.T) {
		out := filepath.Join(l.Dir, "metrics.txt")
		code, r := l.Curl(mon.NS, "--cacert", ca, "-H", "Authorization: Bearer "+site.adminToken(t), "-o", out, flintHTTPS+"/metrics")
		if code != "200" {
			t.Fatalf("GET /metrics with the token: %s\n%s", code, r)
		}
		if r := l.Run("", 20*time.Second, "sh", "-c", "promtool check metrics < "+out); r.Err != nil || strings.TrimSpace(r.Stdout+r.Stderr) != "" {
			t.Errorf("promtool check metrics on flint's /metrics:\n%s", r)
		}
	})

	site.node1Boots(t)

	u, _ := url.Parse(flintHTTPS)
	prom := l.writeFile(t, "prometheus.yml", fmt.Sprintf(`global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: flint
    scheme: https
    tls_config: {ca_file: %s}
    authorization: {credentials_file: %s}
    static_configs: [{targets: ["%s"]}]
`, ca, filepath.Join(data, "pki", "admin-token"), u.Host), 0o644)
	l.Start(t, mon.NS, "prometheus", "prometheus", "--config.file="+prom,
		"--storage.tsdb.path="+filepath.Join(l.Dir, "prometheus"), "--web.listen-address=127.0.0.1:9090", "--log.level=warn")

	query := func(expr string) (string, error) {
		code, r := l.Curl(mon.NS, "-G", "--data-urlencode", "query="+expr, "http://127.0.0.1:9090/api/v1/query")
		if code != "200" {
			return "", fmt.Errorf("query %s: %s %s", expr, code, r.Stdout)
		}
		var res struct {
			Status string
			Data   struct {
				Result []struct {
					Value [2]any
				}
			}
		}
		if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
			return "", fmt.Errorf("query %s: %v: %s", expr, err, r.Stdout)
		}
		if res.Status != "success" || len(res.Data.Result) != 1 {
			return "", fmt.Errorf("query %s: %s", expr, r.Stdout)
		}
		v, _ := res.Data.Result[0].Value[1].(string)
		return v, nil
	}
	for _, c := range []struct{ expr, want string }{
		{`up{job="flint"}`, "1"},
		{`flint_ignition_configs_total{kind="secret",verdict="serve"}`, "1"},
		{`flint_ignition_configs_total{kind="pointer",verdict="serve"}`, "1"},
		{`flint_http_requests_total{listener="http",route="/machines/:mac/boot.ipxe",code="200"}`, "1"},
		{`flint_build_info{job="flint"}`, "1"},
		{`flint_dhcp_packets_total{type="discover",reply="offer"}`, "1"},
		{`flint_dhcp_packets_total{type="request",reply="ack"}`, "1"},
		{`flint_tftp_transfers_total{file="undionly.kpxe",result="ok"}`, "1"},
		{`flint_machines{state="installing"}`, "1"},
	} {
		t.Run(c.expr, func(t *testing.T) {
			err := eventually(30*time.Second, 500*time.Millisecond, func() error {
				v, err := query(c.expr)
				if err != nil {
					return err
				}
				if v != c.want {
					return fmt.Errorf("%s = %s, want %s", c.expr, v, c.want)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("the Grafana dashboard's queries", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "flint.json"))
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			Panels []struct {
				Title   string
				Targets []struct{ Expr string }
			}
		}
		if err := json.Unmarshal(raw, &dash); err != nil {
			t.Fatalf("deploy/grafana/flint.json: %v", err)
		}
		documented := readmeMetrics(t)
		names := regexp.MustCompile(`\bflint_[a-z_]+`)
		n := 0
		for _, p := range dash.Panels {
			for _, tg := range p.Targets {
				n++
				// Every metric it names is one of flint's (a histogram by its _bucket).
				for _, name := range names.FindAllString(tg.Expr, -1) {
					if !documented[strings.TrimSuffix(name, "_bucket")] {
						t.Errorf("panel %q: %s is not a metric of the README's table", p.Title, name)
					}
				}
				// And Prometheus evaluates it.
				code, r := l.Curl(mon.NS, "-G", "--data-urlencode", "query="+tg.Expr, "http://127.0.0.1:9090/api/v1/query")
				if code != "200" || !strings.Contains(r.Stdout, `"status":"success"`) {
					t.Errorf("panel %q: %s: %s %s", p.Title, tg.Expr, code, r.Stdout)
				}
			}
		}
		if n < 10 {
			t.Errorf("only %d queries in the dashboard", n)
		}
	})

	t.Run("every metric is documented", func(t *testing.T) {
		documented := readmeMetrics(t)
		raw, err := os.ReadFile(filepath.Join(l.Dir, "metrics.txt"))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^# TYPE (flint_[a-z_]+) `).FindAllStringSubmatch(string(raw), -1) {
			if !documented[m[1]] {
				t.Errorf("%s is exposed but not in the README's metrics table", m[1])
			}
		}
	})
}

// readToken is a token file's one line.
func readToken(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// readmeMetrics is the set of metric names in the README's metrics table
// (rows like | `flint_x_total`, `flint_y` | ...).
func readmeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, ln := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(ln, "| `flint_") {
			continue
		}
		first := strings.Split(ln, "|")[1]
		for _, m := range regexp.MustCompile("`(flint_[a-z_]+)`").FindAllStringSubmatch(first, -1) {
			out[m[1]] = true
		}
	}
	if len(out) < 10 {
		t.Fatalf("only %d metrics found in the README's table", len(out))
	}
	return out
}
