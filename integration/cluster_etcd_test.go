package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/netns"
)

// clUnit is the [Service] section of a systemd unit Ignition laid down.
type clUnit map[string]string

func (n *clNode) unit(name string) (clUnit, error) {
	b, err := os.ReadFile(n.rootPath("/etc/systemd/system/" + name))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", n.Name, err)
	}
	u := clUnit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		ln := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(ln, "[") {
			section = ln
			continue
		}
		if k, v, ok := strings.Cut(ln, "="); ok && section == "[Service]" {
			u[k] = v
		}
	}
	return u, nil
}

// startEtcd starts the member as the installed system's etcd.service would:
// ExecStart, User and Group from the laid-down unit, the environment from its
// EnvironmentFile, and every absolute path in it (certificates, data dir)
// mapped into the node's root. Nothing else is added.
func (e *clusterEnv) startEtcd(t *testing.T, n *clNode) (map[string]string, error) {
	t.Helper()
	u, err := n.unit("etcd.service")
	if err != nil {
		return nil, err
	}
	uid := fmt.Sprint(clEtcdUID)
	if u["User"] != uid || u["Group"] != uid || u["ExecStart"] != "/opt/bin/etcd" || u["EnvironmentFile"] != "/etc/etcd/etcd.env" {
		return nil, fmt.Errorf("%s: etcd.service runs %q as %s:%s with %q; this test expects /opt/bin/etcd as 232:232 with /etc/etcd/etcd.env", n.Name, u["ExecStart"], u["User"], u["Group"], u["EnvironmentFile"])
	}
	env, err := n.readEnv(u["EnvironmentFile"])
	if err != nil {
		return nil, err
	}
	argv := []string{"--reuid=" + u["User"], "--regid=" + u["Group"], "--clear-groups", "--pdeathsig=KILL", "env", "-i", "PATH=/usr/bin:/bin"}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := env[k]
		if !strings.HasPrefix(k, "ETCD_") {
			return nil, fmt.Errorf("%s: etcd.env sets %s, which is no etcd setting", n.Name, k)
		}
		if strings.HasPrefix(v, "/") {
			v = n.rootPath(v)
		}
		argv = append(argv, k+"="+v)
	}
	argv = append(argv, n.rootPath(u["ExecStart"]))
	n.etcdRuns++
	n.etcd = e.lab.Start(t, n.host.NS, fmt.Sprintf("etcd-%s#%d", n.Name, n.etcdRuns), "setpriv", argv...)
	n.logf("started etcd (pid %d) from its root with %d ETCD_ settings", n.etcd.Cmd.Process.Pid, len(keys))
	return env, nil
}

// clDatastore is an etcd client with a node's K3s datastore settings
// (K3S_DATASTORE_* of its /etc/rancher/k3s/k3s.env, paths in its root),
// running the node's own /opt/bin/etcdctl in the node's namespace.
type clDatastore struct {
	node                      *clNode
	Endpoints                 string // K3S_DATASTORE_ENDPOINT
	CAFile, CertFile, KeyFile string
	Token                     string
}

func (n *clNode) datastore() (*clDatastore, error) {
	env, err := n.readEnv("/etc/rancher/k3s/k3s.env")
	if err != nil {
		return nil, err
	}
	d := &clDatastore{node: n, Endpoints: env["K3S_DATASTORE_ENDPOINT"], Token: env["K3S_TOKEN"]}
	for _, f := range []struct {
		key string
		dst *string
	}{{"K3S_DATASTORE_CAFILE", &d.CAFile}, {"K3S_DATASTORE_CERTFILE", &d.CertFile}, {"K3S_DATASTORE_KEYFILE", &d.KeyFile}} {
		if !strings.HasPrefix(env[f.key], "/") {
			return nil, fmt.Errorf("%s: k3s.env %s=%q is no absolute path", n.Name, f.key, env[f.key])
		}
		*f.dst = n.rootPath(env[f.key])
	}
	if d.Endpoints == "" || d.Token == "" {
		return nil, fmt.Errorf("%s: k3s.env lacks K3S_DATASTORE_ENDPOINT or K3S_TOKEN: %v", n.Name, keysOf(env))
	}
	return d, nil
}

func keysOf(m map[string]string) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

// etcdctl runs the node's laid-down etcdctl against endpoints ("" = all of
// K3S_DATASTORE_ENDPOINT).
func (d *clDatastore) etcdctl(endpoints string, args ...string) Result {
	if endpoints == "" {
		endpoints = d.Endpoints
	}
	argv := append([]string{"--endpoints=" + endpoints, "--cacert=" + d.CAFile, "--cert=" + d.CertFile, "--key=" + d.KeyFile,
		"--dial-timeout=2s", "--command-timeout=4s"}, args...)
	return d.node.run([]string{"ETCDCTL_API=3"}, 20*time.Second, d.node.rootPath("/opt/bin/etcdctl"), argv...)
}

type clHealth struct {
	Endpoint string `json:"endpoint"`
	Health   bool   `json:"health"`
	Took     string `json:"took"`
	Error    string `json:"error"`
}

type clMember struct {
	ID         uint64   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
}

func (d *clDatastore) members() ([]clMember, error) {
	r := d.etcdctl("", "member", "list", "-w", "json")
	if r.Code != 0 {
		return nil, fmt.Errorf("etcdctl member list: exit %d: %s", r.Code, strings.TrimSpace(r.Stderr))
	}
	var out struct {
		Members []clMember `json:"members"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
		return nil, fmt.Errorf("etcdctl member list -w json: %v: %q", err, r.Stdout)
	}
	return out.Members, nil
}

// clusterHealthy checks `endpoint health --cluster` and `member list`: want
// members, each started with its name, its peer URL and healthy.
func (d *clDatastore) clusterHealthy(servers []*clNode) error {
	ms, err := d.members()
	if err != nil {
		return err
	}
	if len(ms) != len(servers) {
		return fmt.Errorf("member list has %d members, want %d: %+v", len(ms), len(servers), ms)
	}
	for _, s := range servers {
		found := false
		for _, m := range ms {
			if m.Name == s.Name {
				found = true
				want := "https://" + s.IP + ":2380"
				if len(m.PeerURLs) != 1 || m.PeerURLs[0] != want {
					return fmt.Errorf("member %s has peer URLs %v, want [%s]", m.Name, m.PeerURLs, want)
				}
			}
		}
		if !found {
			return fmt.Errorf("no started member named %s in %+v", s.Name, ms)
		}
	}
	r := d.etcdctl("", "endpoint", "health", "--cluster", "-w", "json")
	var hs []clHealth
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.Stdout)), &hs); err != nil {
		return fmt.Errorf("etcdctl endpoint health --cluster (exit %d): %v: %q %s", r.Code, err, r.Stdout, r.Stderr)
	}
	healthy := 0
	var bad []string
	for _, h := range hs {
		if h.Health {
			healthy++
		} else {
			bad = append(bad, h.Endpoint+": "+h.Error)
		}
	}
	if healthy != len(servers) || r.Code != 0 {
		return fmt.Errorf("%d of %d endpoints healthy (exit %d); unhealthy: %v", healthy, len(hs), r.Code, bad)
	}
	return nil
}

// waitHealthy polls until the cluster has every server as a healthy member.
func (d *clDatastore) waitHealthy(servers []*clNode, timeout time.Duration, died func() error) error {
	return eventually(timeout, 200*time.Millisecond, func() error {
		if err := died(); err != nil {
			return err
		}
		return d.clusterHealthy(servers)
	})
}

type clStatus struct {
	Endpoint string `json:"Endpoint"`
	Status   struct {
		Header struct {
			MemberID uint64 `json:"member_id"`
		} `json:"header"`
		Leader uint64 `json:"leader"`
	} `json:"Status"`
}

// leader returns the endpoint and member ID of the leader, and every member's
// ID by endpoint.
func (d *clDatastore) leader() (string, uint64, map[string]uint64, error) {
	r := d.etcdctl("", "endpoint", "status", "--cluster", "-w", "json")
	var st []clStatus
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.Stdout)), &st); err != nil || r.Code != 0 {
		return "", 0, nil, fmt.Errorf("etcdctl endpoint status --cluster (exit %d): %v: %q %s", r.Code, err, r.Stdout, r.Stderr)
	}
	ids := map[string]uint64{}
	var ep string
	var leader uint64
	for _, s := range st {
		ids[s.Endpoint] = s.Status.Header.MemberID
		if s.Status.Leader == s.Status.Header.MemberID {
			ep, leader = s.Endpoint, s.Status.Leader
		}
	}
	if ep == "" {
		return "", 0, ids, fmt.Errorf("no member says it leads: %s", r.Stdout)
	}
	return ep, leader, ids, nil
}

// --- a writer that stands in for K3s: puts every ~100 ms -----------------

// clGateway talks to etcd's JSON gateway (/v3/kv/...) with a node's K3s
// datastore credentials, from the node's namespace.
type clGateway struct {
	client *http.Client
}

func newGateway(d *clDatastore) (*clGateway, error) {
	ca, err := os.ReadFile(d.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s holds no certificate", d.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		DialContext:         netns.Dialer(netns.Path(d.node.host.NS)),
		TLSClientConfig:     &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 2,
		ForceAttemptHTTP2:   false,
	}
	return &clGateway{client: &http.Client{Transport: tr}}, nil
}

func (g *clGateway) Close() {
	g.client.CloseIdleConnections()
}

// put writes key=value through endpoint.
func (g *clGateway) put(endpoint, key, value string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	body, _ := json.Marshal(map[string]string{
		"key":   base64.StdEncoding.EncodeToString([]byte(key)),
		"value": base64.StdEncoding.EncodeToString([]byte(value)),
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/v3/kv/put", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"header"`)) {
		return fmt.Errorf("%s: %s %s", endpoint, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// clWriter puts a key every interval, alternating between endpoints, and
// measures the longest time without a successful write.
type clWriter struct {
	gw        *clGateway
	endpoints []string
	interval  time.Duration
	stop      chan struct{}
	done      chan struct{}

	mu                  sync.Mutex
	started, lastOK     time.Time
	puts, fails         int
	maxGap              time.Duration
	maxGapEnd           time.Time
	errs                []string
	stoppedAt           time.Time
	lastFailedEndpoints map[string]int
}

func startWriter(gw *clGateway, endpoints []string, interval time.Duration) *clWriter {
	w := &clWriter{gw: gw, endpoints: endpoints, interval: interval, stop: make(chan struct{}), done: make(chan struct{}), lastFailedEndpoints: map[string]int{}}
	w.started, w.lastOK = time.Now(), time.Now()
	go w.run()
	return w
}

func (w *clWriter) run() {
	defer close(w.done)
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		ep := w.endpoints[i%len(w.endpoints)]
		err := w.gw.put(ep, fmt.Sprintf("flint-test/writer/%06d", i), time.Now().Format(time.RFC3339Nano), time.Second)
		now := time.Now()
		w.mu.Lock()
		w.puts++
		if err != nil {
			w.fails++
			w.lastFailedEndpoints[ep]++
			if len(w.errs) < 10 {
				w.errs = append(w.errs, now.Format("15:04:05.000")+" "+err.Error())
			}
		} else {
			if gap := now.Sub(w.lastOK); gap > w.maxGap {
				w.maxGap, w.maxGapEnd = gap, now
			}
			w.lastOK = now
		}
		w.mu.Unlock()
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
	}
}

// Stop ends the writer; the time since its last success counts as a gap too.
func (w *clWriter) Stop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stoppedAt.IsZero() {
		w.stoppedAt = time.Now()
		if gap := w.stoppedAt.Sub(w.lastOK); gap > w.maxGap {
			w.maxGap, w.maxGapEnd = gap, w.stoppedAt
		}
	}
}

func (w *clWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("%d puts over %v against %s, %d failed (by endpoint %v), longest time without a successful put %v (ending %s); first errors: %q",
		w.puts, w.stoppedAt.Sub(w.started).Round(time.Millisecond), strings.Join(w.endpoints, " and "), w.fails, w.lastFailedEndpoints,
		w.maxGap.Round(time.Millisecond), w.maxGapEnd.Format("15:04:05.000"), w.errs)
}

// mustFor is a cluster test's check between steps: any error set fails t
// and stops it, as everything after depends on that step.
func mustFor(t *testing.T) func(errs ...error) {
	return func(errs ...error) {
		t.Helper()
		failed := false
		for _, err := range errs {
			if err != nil {
				t.Error(err)
				failed = true
			}
		}
		if failed {
			t.FailNow()
		}
	}
}

// etcdDied names a server whose etcd exited (nil while all run).
func (e *clusterEnv) etcdDied() error {
	for _, s := range e.servers() {
		if s.etcd != nil && s.etcd.Exited() {
			return fmt.Errorf("etcd of %s exited: %v\n%s", s.Name, s.etcd.Cmd.ProcessState, tail(s.etcd.Stderr.String(), 4000))
		}
	}
	return nil
}

// startServersEtcd runs each server's etcd from what Ignition laid down,
// waits until the 3-member cluster is healthy, then does what
// etcd-healthy.service and flint-report-etcd.service do on each server
// (report etcd-healthy to the flint that configured it). It returns the
// first server's view of the datastore and when the cluster was healthy.
func (e *clusterEnv) startServersEtcd(t *testing.T) (*clDatastore, time.Time, error) {
	servers := e.servers()
	for _, s := range servers {
		if _, err := e.startEtcd(t, s); err != nil {
			return nil, time.Time{}, err
		}
	}
	ds, err := servers[0].datastore()
	if err != nil {
		return nil, time.Time{}, err
	}
	if err := ds.waitHealthy(servers, 60*time.Second, e.etcdDied); err != nil {
		return nil, time.Time{}, fmt.Errorf("the etcd cluster did not become healthy: %w", err)
	}
	healthyAt := time.Now()
	for _, s := range servers {
		if err := s.report("etcd-healthy", "member "+s.Name+" answers /health"); err != nil {
			return nil, time.Time{}, err
		}
	}
	return ds, healthyAt, nil
}
