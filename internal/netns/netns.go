// Package netns runs code and dials connections inside a named Linux network
// namespace (/run/netns/NAME, as `ip netns add` makes them). Only tests and
// test helpers import it: flint itself never changes namespaces.
package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Path is where `ip netns add name` puts the namespace's handle.
func Path(name string) string { return "/run/netns/" + name }

// Do runs f on an OS thread that has joined the network namespace at
// nsPath (/run/netns/NAME), then returns that thread to the namespace it came
// from. Sockets f creates stay in nsPath's namespace.
//
// The thread saves its own namespace (/proc/thread-self/ns/net) before it
// moves: /proc/self/ns/net is the main thread's, which another goroutine may
// have moved at that moment, and restoring to it would leave this thread in a
// foreign namespace for whatever runs on it next (a process started from it
// would see another network). If the way back fails, the goroutine ends
// locked, so the Go runtime retires the thread instead of reusing it (a
// thread's end sends PDEATHSIG to processes forked from it, so this is only
// for the failure it is).
func Do(nsPath string, f func() error) error {
	target, err := os.Open(nsPath)
	if err != nil {
		return err
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer home.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread() // still at home
			errc <- fmt.Errorf("setns %s: %w", nsPath, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back from %s: %w", nsPath, err) // stay locked: the thread is retired
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Dialer dials from the network namespace at nsPath (see Do); the
// connection stays there.
func Dialer(nsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(nsPath, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		if err != nil && c != nil {
			c.Close()
			c = nil
		}
		return c, err
	}
}
