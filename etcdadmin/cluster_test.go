package etcdadmin

// The etcd cluster these tests run against: internal/etcdtest.

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// testCluster is a real 3-member TLS etcd cluster on loopback
// (internal/etcdtest) with what these tests add to it.
type testCluster struct {
	*etcdtest.Cluster
	t *testing.T
}

type testMember = etcdtest.Member

// newTestCluster starts three members and waits until all serve linearizable reads.
func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	return &testCluster{Cluster: etcdtest.Start(t, 3), t: t}
}

// settle waits until the members have been connected to each other for 5 s:
// before that etcd's --strict-reconfig-check refuses membership changes with
// "unhealthy cluster" (PrepareRejoin retries). A real cluster is older; a test
// that measures the rebuild itself waits this out first.
func (c *testCluster) settle() {
	if d := time.Until(c.HealthyAt.Add(5500 * time.Millisecond)); d > 0 {
		c.t.Logf("waiting %v for the peer connections to be 5 s old", d.Round(time.Millisecond))
		time.Sleep(d)
	}
}

func (c *testCluster) start(m *testMember, initialCluster, state string) {
	c.t.Helper()
	c.StartMember(m, initialCluster, state)
}

func (c *testCluster) kill(m *testMember) { c.t.Helper(); c.Kill(m) }
func (c *testCluster) wipe(m *testMember) { c.t.Helper(); c.Wipe(m) }

func (c *testCluster) waitReadable(m *testMember, timeout time.Duration) {
	c.t.Helper()
	c.WaitReadable(m, timeout)
}

// client returns a raw etcd client for the given members only.
func (c *testCluster) client(members ...*testMember) *clientv3.Client {
	c.t.Helper()
	cli, err := newClient(c.Endpoints(members...), c.TLS)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// admin returns an Admin for all three members.
func (c *testCluster) admin() *Admin {
	c.t.Helper()
	a, err := New(c.Endpoints(), c.TLS, slogForTest(c.t))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { a.Close() })
	return a
}

// ctlMember is a member as etcdctl prints it: an independent view of the
// membership, not going through the code under test.
type ctlMember struct {
	ID         uint64   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
}

// etcdctlMembers runs `etcdctl member list` against the given members.
func (c *testCluster) etcdctlMembers(via ...*testMember) []ctlMember {
	c.t.Helper()
	out := c.etcdctl(via, "member", "list", "-w", "json")
	var resp struct {
		Members []ctlMember `json:"members"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		c.t.Fatalf("parse etcdctl member list: %v\n%s", err, out)
	}
	return resp.Members
}

func (c *testCluster) etcdctl(via []*testMember, args ...string) []byte {
	c.t.Helper()
	return c.Etcdctl(via, args...)
}

// memberSummary is a stable description of a membership for comparisons.
func memberSummary(members []ctlMember) string {
	var parts []string
	for _, m := range members {
		parts = append(parts, strconv.FormatUint(m.ID, 16)+"/"+m.Name+"/"+strings.Join(m.PeerURLs, ","))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func slogForTest(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// writer puts a key every 50 ms and records the longest stretch without a
// successful write: a lost quorum shows up as a long gap.
type writer struct {
	mu       sync.Mutex
	ok, fail int
	maxGap   time.Duration
	lastErr  error
	stop     context.CancelFunc
	done     chan struct{}
}

func startWriter(cli *clientv3.Client) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		last := time.Now()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				w.record(time.Since(last), nil, false)
				return
			case <-tick.C:
			}
			opCtx, opCancel := context.WithTimeout(ctx, time.Second)
			_, err := cli.Put(opCtx, "writer/"+strconv.Itoa(i%10), strconv.Itoa(i))
			opCancel()
			if ctx.Err() != nil {
				continue // stopping; not a failure of the cluster
			}
			now := time.Now()
			w.record(now.Sub(last), err, true)
			if err == nil {
				last = now
			}
		}
	}()
	return w
}

func (w *writer) record(gap time.Duration, err error, counted bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.maxGap = max(w.maxGap, gap)
	if !counted {
		return
	}
	if err != nil {
		w.fail++
		w.lastErr = err
	} else {
		w.ok++
	}
}

func (w *writer) finish() (ok, fail int, maxGap time.Duration, lastErr error) {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ok, w.fail, w.maxGap, w.lastErr
}
