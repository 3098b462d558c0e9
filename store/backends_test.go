package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/flint-boot/flint/internal/etcdtest"
)

// A backend opens the state of one test: the same one again after a Close
// (bolt: the same directory; etcd: the same prefix of the same cluster).
type backend struct {
	name string
	open func(t *testing.T, opts ...Option) Store
}

// storeCases are the Store tests every backend passes.
var storeCases = []struct {
	name string
	f    func(t *testing.T, b backend)
}{
	{"LeasesPersistAcrossReopen", testLeasesPersistAcrossReopen},
	{"SightingsAndSyncConfig", testSightingsAndSyncConfig},
	{"TimelineOrderedAndBounded", testTimelineOrderedAndBounded},
	{"LookupsByKey", testLookupsByKey},
	{"DiscoveredCapped", testDiscoveredCapped},
	{"EvictedAndSeenAgainInOneBatch", testEvictedAndSeenAgainInOneBatch},
	{"ClaimRebuildIsOneTransaction", testClaimRebuildIsOneTransaction},
	{"WriteAfterCloseIsAnError", testWriteAfterCloseIsAnError},
	{"VersionGrowsWithWrites", testVersionGrowsWithWrites},
	{"ConcurrentUpdatesLoseNothing", testConcurrentUpdatesLoseNothing},
	{"SyncConfigAfterManyStrangers", testSyncConfigAfterManyStrangers},
	{"ConfigShrinksAtTheCap", testConfigShrinksAtTheCap},
}

// TestStore runs every case against bbolt and against a real etcd.
func TestStore(t *testing.T) {
	t.Run("bolt", func(t *testing.T) {
		for _, c := range storeCases {
			t.Run(c.name, func(t *testing.T) { c.f(t, boltBackend(t)) })
		}
	})
	t.Run("etcd", func(t *testing.T) {
		cl := etcdtest.Start(t, 1)
		for _, c := range storeCases {
			t.Run(c.name, func(t *testing.T) { c.f(t, etcdBackend(t, cl)) })
		}
	})
}

func boltBackend(t *testing.T) backend {
	dir := t.TempDir()
	return backend{name: "bolt", open: func(t *testing.T, opts ...Option) Store {
		t.Helper()
		st, err := OpenBolt(dir, false, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}}
}

var prefixes atomic.Int64

// etcdBackend gives each test its own prefix of the shared cluster.
func etcdBackend(t *testing.T, cl *etcdtest.Cluster) backend {
	prefix := fmt.Sprintf("/flint-test/%d/", prefixes.Add(1))
	return backend{name: "etcd", open: func(t *testing.T, opts ...Option) Store {
		t.Helper()
		st, err := OpenEtcd(EtcdConfig{Endpoints: cl.Endpoints(), TLS: cl.TLS, Prefix: prefix}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}}
}

// closeOnce closes a store at the end of the test unless the test did.
func closeOnce(t *testing.T, st Store) func() {
	var once sync.Once
	f := func() { once.Do(func() { st.Close() }) }
	t.Cleanup(f)
	return f
}
