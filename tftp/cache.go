package tftp

import (
	"container/list"
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"
)

// Default bounds of the in-memory copies (Options.CacheFiles,
// Options.CacheBytes). Debian's iPXE binaries are 0.1-1.1 MB each and a site
// serves two or three of them, so the defaults hold every file a normal
// root has with room to spare.
const (
	DefaultCacheFiles = 16
	DefaultCacheBytes = 64 << 20
)

// fileKey identifies one version of a file: a file replaced on disk (a new
// inode, as package upgrades and `cp` to a temp name + rename do) or written
// in place (size, mtime or ctime change) has another key. ctime is there
// because mtime can be set back (`rsync --inplace -t`, `touch -d`) and ctime
// cannot.
type fileKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // ns since the epoch
}

// fileCache keeps the bytes of the files flint served last, so that a
// transfer is sent from memory instead of one read(2) per block.
//
// It holds at most maxFiles entries and maxBytes bytes (a file larger than
// maxBytes is never kept). Entries are keyed by the request's cleaned
// relative name and only made for names that are regular files under the
// root, so requests for names that do not exist never grow it. Every lookup
// compares the file's current key (one stat per request, which the server
// makes anyway) with the entry's: a changed file is dropped and read again,
// a file that is gone is dropped. Least recently used entries go first, but
// an entry that a transfer is sending from (or that is being read in) is
// never evicted to make room: then the new file is sent from disk instead.
// So requests that alternate between files (a client can choose which)
// never make a second copy of one version, and the bytes in memory stay
// within the bound.
//
// The one way past it is a file that changes on disk while transfers send
// the old version: those bytes stay in memory until those transfers end.
// That takes the operator replacing files, not a client.
type fileCache struct {
	maxFiles int
	maxBytes int64

	mu      sync.Mutex
	entries map[string]*cacheEntry
	lru     list.List // of *cacheEntry, most recently used first
	bytes   int64     // sum of the sizes of all entries, loading ones included
}

type cacheEntry struct {
	name  string
	key   fileKey
	elem  *list.Element
	refs  int           // transfers sending from it, and its loader; under fileCache.mu
	ready chan struct{} // closed once the load ended; data and ok are set then
	data  []byte
	ok    bool
}

func newFileCache(maxFiles int, maxBytes int64) *fileCache {
	return &fileCache{maxFiles: maxFiles, maxBytes: maxBytes, entries: make(map[string]*cacheEntry)}
}

// errChanged: the file changed between the stat that chose it and the read.
var errChanged = errors.New("file changed while it was read")

// get returns the bytes of the file at path, named name in requests, whose
// stat is fi, and release, to be called once the transfer no longer needs
// them; ok is false when it is not kept (too large, changed while being
// read, no room) and the caller reads the file itself.
func (c *fileCache) get(name, path string, fi fs.FileInfo) (data []byte, release func(), ok bool) {
	if c == nil || fi.Size() > c.maxBytes {
		c.forget(name)
		return nil, nil, false
	}
	key, haveKey := keyOf(fi)
	if !haveKey {
		return nil, nil, false
	}
	c.mu.Lock()
	e := c.entries[name]
	if e != nil && e.key == key {
		c.lru.MoveToFront(e.elem)
		e.refs++
		c.mu.Unlock()
		<-e.ready // a load by another transfer of the same file: a few ms at most
		if !e.ok {
			c.release(e)
			return nil, nil, false
		}
		return e.data, func() { c.release(e) }, true
	}
	if e != nil {
		c.drop(e) // another version; transfers still sending it keep their bytes
	}
	if !c.makeRoom(fi.Size()) {
		c.mu.Unlock()
		return nil, nil, false
	}
	e = &cacheEntry{name: name, key: key, refs: 1, ready: make(chan struct{})}
	e.elem = c.lru.PushFront(e)
	c.entries[name] = e
	c.bytes += key.size
	c.mu.Unlock()

	data, err := load(path, key)
	c.mu.Lock()
	if err == nil {
		e.data, e.ok = data, true
	} else if c.entries[name] == e {
		c.drop(e)
	}
	c.mu.Unlock()
	close(e.ready)
	if !e.ok {
		c.release(e)
		return nil, nil, false
	}
	return e.data, func() { c.release(e) }, true
}

func (c *fileCache) release(e *cacheEntry) {
	c.mu.Lock()
	e.refs--
	c.mu.Unlock()
}

// forget drops what is kept under name: the file is gone or not served from memory.
func (c *fileCache) forget(name string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if e := c.entries[name]; e != nil {
		c.drop(e)
	}
	c.mu.Unlock()
}

// drop removes e; c.mu is held.
func (c *fileCache) drop(e *cacheEntry) {
	delete(c.entries, e.name)
	c.lru.Remove(e.elem)
	c.bytes -= e.key.size
}

// makeRoom evicts least recently used entries that no transfer uses until
// one more of size bytes fits both bounds, or says there is no such room;
// c.mu is held. It evicts nothing unless that makes enough room.
func (c *fileCache) makeRoom(size int64) bool {
	if size > c.maxBytes {
		return false
	}
	files, bytes := len(c.entries), c.bytes
	var victims []*cacheEntry
	for el := c.lru.Back(); el != nil && (files >= c.maxFiles || bytes+size > c.maxBytes); el = el.Prev() {
		if e := el.Value.(*cacheEntry); e.refs == 0 {
			victims = append(victims, e)
			files--
			bytes -= e.key.size
		}
	}
	if files >= c.maxFiles || bytes+size > c.maxBytes {
		return false
	}
	for _, e := range victims {
		c.drop(e)
	}
	return true
}

// stats: entries and bytes kept now.
func (c *fileCache) stats() (files int, bytes int64) {
	if c == nil {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.bytes
}

// load reads the whole file at path, which must still be the version key
// names, before and after the read.
func load(path string, key fileKey) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := sameVersion(f, key); err != nil {
		return nil, err
	}
	data := make([]byte, key.size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, err
	}
	if err := sameVersion(f, key); err != nil {
		return nil, err
	}
	return data, nil
}

func sameVersion(f *os.File, key fileKey) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if k, ok := keyOf(fi); !ok || !fi.Mode().IsRegular() || k != key {
		return errChanged
	}
	return nil
}
