package etcdtest

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// TestStartProgram: a program's cluster serves writes and reads over TLS,
// and stop leaves no etcd process behind.
func TestStartProgram(t *testing.T) {
	Require(t)
	c, stop, err := StartProgram(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	pid := c.Members[0].PID()
	cli := c.Client() // closed by stop
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	got, err := cli.Get(ctx, "k")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "v" {
		t.Fatalf("get k: %v %v, want v", got, err)
	}
	stop()
	stopped = true
	if c.Members[0].Running() {
		t.Fatal("member still running after stop")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("etcd pid %d still exists after stop", pid)
	}
}

// TestStartProgramError: what would fail a test comes back as an error.
func TestStartProgramError(t *testing.T) {
	Require(t)
	c, stop, err := StartProgram(t.TempDir()+"/missing", 1)
	if err == nil || c != nil || stop != nil {
		t.Fatalf("StartProgram in a missing dir: %v, %v, %v; want only an error", c, stop != nil, err)
	}
	t.Log(err)
}
