package store

import (
	"context"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/etcdtest"
)

// TestEtcdInstances: instances sharing a store see each other's
// announcements; one that stops vanishes at once, one that dies (its client
// gone without a word) within the lease's ttl.
func TestEtcdInstances(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	a, b, watcher := openEtcd(t, cl, "/flint/inst/"), openEtcd(t, cl, "/flint/inst/"), openEtcd(t, cl, "/flint/inst/")
	other := openEtcd(t, cl, "/flint/other-site/")
	ids := func(t *testing.T, st *Etcd) []string {
		t.Helper()
		ins, err := st.Instances()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, in := range ins {
			out = append(out, in.ID+"="+in.SiteHash)
		}
		return out
	}
	stopA, err := a.Announce(context.Background(), Instance{ID: "http://198.18.0.1:8080", SiteHash: "h1", Since: time.Now()}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Announce(context.Background(), Instance{ID: "http://198.18.0.2:8080", SiteHash: "h2", Since: time.Now()}, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, watcher); len(got) != 2 || got[0] != "http://198.18.0.1:8080=h1" || got[1] != "http://198.18.0.2:8080=h2" {
		t.Fatalf("instances: %v, want both, ordered", got)
	}
	if got := ids(t, other); len(got) != 0 {
		t.Errorf("another prefix (site) sees %v", got)
	}
	t.Run("announcements outlive their ttl while kept alive", func(t *testing.T) {
		time.Sleep(3 * time.Second)
		if got := ids(t, watcher); len(got) != 2 {
			t.Fatalf("after 3 s (ttl 2 s): %v, want both still there", got)
		}
	})
	t.Run("a stopped instance vanishes at once", func(t *testing.T) {
		stopA()
		if got := ids(t, watcher); len(got) != 1 || got[0] != "http://198.18.0.2:8080=h2" {
			t.Fatalf("after a stopped: %v", got)
		}
	})
	t.Run("a dead instance vanishes within its ttl", func(t *testing.T) {
		b.Close() // no revoke: as if the process died
		start := time.Now()
		for len(ids(t, watcher)) != 0 {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("b still announced %v after its client closed", time.Since(start))
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("b vanished %v after its client closed (ttl 2 s)", time.Since(start).Round(100*time.Millisecond))
	})
}
