package etcdtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
)

// StartProgram is Start for a program instead of a test (bench/etcdrun runs
// the etcd of bench/ignition.sh): n members under dir, which must exist.
// What would fail a test is returned as an error instead (with nothing left
// running); stop kills the members by PID and closes the clients. A Cluster
// method that fails later (e.g. EncryptionKeyFile) panics with the reason,
// as there is no test to fail.
func StartProgram(dir string, n int) (c *Cluster, stop func(), err error) {
	for _, bin := range []string{"etcd", "etcdctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, nil, fmt.Errorf("%s not found: install it with %q (as root)", bin, InstallHint)
		}
	}
	p := &program{dir: dir}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(programFailure)
			if !ok {
				panic(r)
			}
			p.stop()
			c, stop, err = nil, nil, errors.New(string(f))
		}
	}()
	return startLoopback(p, n), p.stop, nil
}

// programFailure is what program's Fatal panics with; StartProgram
// recovers it.
type programFailure string

// program is the TB of StartProgram: Fatal panics, Cleanup collects what
// stop runs, logs go to stderr.
type program struct {
	dir      string
	mu       sync.Mutex
	failed   bool
	cleanups []func()
}

func (p *program) Helper() {}

func (p *program) Fatal(args ...any) { p.fail(fmt.Sprint(args...)) }

func (p *program) Fatalf(format string, args ...any) { p.fail(fmt.Sprintf(format, args...)) }

func (p *program) fail(msg string) {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
	panic(programFailure(msg))
}

func (p *program) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "etcdtest: "+format+"\n", args...)
}

func (p *program) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

func (p *program) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *program) TempDir() string {
	d, err := os.MkdirTemp(p.dir, "etcd-")
	if err != nil {
		p.Fatal(err)
	}
	return d
}

// stop runs the cleanups, last first, once each.
func (p *program) stop() {
	p.mu.Lock()
	fs := p.cleanups
	p.cleanups = nil
	p.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
