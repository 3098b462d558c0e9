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

// configCache is a bounded LRU of rendered configs, by count and by bytes:
// a site with 10,000 machines keeps the ones booting now, not all of them.
// Each machine's variants are indexed, so forgetting one machine does not
// walk the cache.
type configCache struct {
	mu       sync.Mutex
	max      int
	maxBytes int
	bytes    int
	maxAge   time.Duration
	entries  map[cacheKey]*list.Element
	byMAC    map[config.MAC]map[cacheKey]struct{}
	order    *list.List // front: most recently used
}

type cacheItem struct {
	key cacheKey
	val cached
}

func newConfigCache(max, maxBytes int, maxAge time.Duration) *configCache {
	c := &configCache{max: max, maxBytes: maxBytes, maxAge: maxAge}
	c.reset()
	return c
}

func (c *configCache) reset() {
	c.entries = map[cacheKey]*list.Element{}
	c.byMAC = map[config.MAC]map[cacheKey]struct{}{}
	c.order = list.New()
	c.bytes = 0
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
		c.remove(e)
		return nil, false
	}
	c.order.MoveToFront(e)
	return it.val.config, true
}

// put keeps v under k, evicting the least recently used beyond the bounds.
// A config larger than the whole byte bound is not kept.
func (c *configCache) put(k cacheKey, v cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		c.remove(e)
	}
	if len(v.config) > c.maxBytes {
		return
	}
	c.entries[k] = c.order.PushFront(&cacheItem{key: k, val: v})
	c.bytes += len(v.config)
	vs := c.byMAC[k.mac]
	if vs == nil {
		vs = map[cacheKey]struct{}{}
		c.byMAC[k.mac] = vs
	}
	vs[k] = struct{}{}
	for c.order.Len() > c.max || c.bytes > c.maxBytes {
		c.remove(c.order.Back())
	}
}

// remove forgets one entry; c.mu is held.
func (c *configCache) remove(e *list.Element) {
	it := e.Value.(*cacheItem)
	c.order.Remove(e)
	delete(c.entries, it.key)
	c.bytes -= len(it.val.config)
	if vs := c.byMAC[it.key.mac]; vs != nil {
		delete(vs, it.key)
		if len(vs) == 0 {
			delete(c.byMAC, it.key.mac)
		}
	}
}

// dropMachine forgets every variant of one machine.
func (c *configCache) dropMachine(mac config.MAC) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.byMAC[mac] {
		c.remove(c.entries[k])
	}
}

// dropAll forgets everything.
func (c *configCache) dropAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reset()
}

func (c *configCache) len() (entries, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len(), c.bytes
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
