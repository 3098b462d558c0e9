package ignition

import (
	"container/list"
	"strings"
	"sync"
	"time"

	"github.com/flint-boot/flint/config"
)

// cacheKey names one rendered variant of a machine.
type cacheKey struct {
	mac     config.MAC
	spec    Spec
	profile string
	state   string
}

// cached is one rendered config (with token placeholders) and what it was
// made from: the profile set's digest and the asset hashes. It is served
// while they are the same and it is younger than maxAge (certificates are
// renewed by the PKI when a render asks, so a config is re-rendered now and
// then).
type cached struct {
	inputs string
	at     time.Time
	config []byte
}

// configCache is a bounded LRU of rendered configs: a site with 10,000
// machines keeps the ones booting now, not all of them.
type configCache struct {
	mu      sync.Mutex
	max     int
	maxAge  time.Duration
	entries map[cacheKey]*list.Element
	order   *list.List // front: most recently used
}

type cacheItem struct {
	key cacheKey
	val cached
}

func newConfigCache(max int, maxAge time.Duration) *configCache {
	return &configCache{max: max, maxAge: maxAge, entries: map[cacheKey]*list.Element{}, order: list.New()}
}

// get returns the config cached under k if it was made from inputs and is
// young enough.
func (c *configCache) get(k cacheKey, inputs string, now time.Time) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return nil, false
	}
	it := e.Value.(*cacheItem)
	if it.val.inputs != inputs || now.Sub(it.val.at) >= c.maxAge {
		c.order.Remove(e)
		delete(c.entries, k)
		return nil, false
	}
	c.order.MoveToFront(e)
	return it.val.config, true
}

func (c *configCache) put(k cacheKey, v cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		e.Value.(*cacheItem).val = v
		c.order.MoveToFront(e)
		return
	}
	c.entries[k] = c.order.PushFront(&cacheItem{key: k, val: v})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.entries, last.Value.(*cacheItem).key)
	}
}

// dropMachine forgets every variant of one machine.
func (c *configCache) dropMachine(mac config.MAC) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if k.mac == mac {
			c.order.Remove(e)
			delete(c.entries, k)
		}
	}
}

// dropAll forgets everything.
func (c *configCache) dropAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = map[cacheKey]*list.Element{}
	c.order.Init()
}

func (c *configCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// inputsOf is what a render depends on that may change while flint runs:
// the profile set and the assets' hashes. (The config does not change; the
// secrets are stable; certificates are bounded by maxAge.)
func inputsOf(digest string, assets map[string]Asset) string {
	var b strings.Builder
	b.WriteString(digest)
	for _, a := range []string{"etcd", "etcdctl", "k3s"} {
		b.WriteByte(0)
		b.WriteString(assets[a].SHA512)
	}
	return b.String()
}
