package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/store"
)

// A machine that never installed has no plan: its next boot installs it.
func TestReprovisionNeedsAnInstall(t *testing.T) {
	f := newFixture(t, "full", "disk")
	plan, err := f.m.Reprovision("nuc2", true)
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "nuc2 was never installed: it installs on its first network boot") || len(plan.Steps) > 0 {
		t.Fatalf("never installed: %+v %v", plan, err)
	}
	f.dhcp(t, nuc2, ip2)
	f.deliver(t, nuc2, ip2, f.script(t, nuc2, ip2), StageBoot)
	if _, err := f.m.Reprovision("nuc2", false); !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "nuc2 is installing now") {
		t.Fatalf("installing: %v", err)
	}
	if r := f.state(t, nuc2); r.State != store.StateInstalling || r.Rebuilding {
		t.Fatalf("a refused reprovision changed nuc2: %+v", r)
	}
}

// TestCancelReprovision: one mistaken --yes must not block every other
// rebuild, until flint has touched etcd.
func TestCancelReprovision(t *testing.T) {
	f := newFixture(t, "full", "disk")
	f.installDisk(t, nuc1, ip1)
	f.installDisk(t, nuc2, ip2)
	if _, err := f.m.CancelReprovision("nuc2"); !errors.Is(err, ErrNotArmed) || !strings.Contains(err.Error(), "nuc2 is installed, not armed for reprovision: nothing to cancel") {
		t.Fatalf("cancel of an unarmed machine: %v", err)
	}
	if _, err := f.m.Reprovision("nuc2", true); err != nil {
		t.Fatal(err)
	}
	t.Run("the armed server holds the slot and the refusal says how to free it", func(t *testing.T) {
		_, err := f.m.Reprovision("nuc1", true)
		if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "flint reprovision nuc2 --cancel") {
			t.Fatalf("second server: %v", err)
		}
	})
	t.Run("cancel puts it back to installed and frees the slot", func(t *testing.T) {
		plan, err := f.m.CancelReprovision("nuc2")
		if err != nil || !plan.Cancelled || plan.Machine != "nuc2" {
			t.Fatalf("cancel: %+v %v", plan, err)
		}
		if r := f.state(t, nuc2); r.State != store.StateInstalled || r.Rebuilding || r.EtcdRejoin {
			t.Fatalf("after cancel: %+v", r)
		}
		if s := f.m.Script(nuc2, ip2); s.Verdict != ScriptLocal {
			t.Fatalf("nuc2 boots from the network after the cancel: %+v", s)
		}
		if !strings.Contains(f.events(t, nuc2), "reprovision cancelled") {
			t.Errorf("timeline:\n%s", f.events(t, nuc2))
		}
		if plan, err := f.m.Reprovision("nuc1", true); err != nil || !plan.Armed {
			t.Fatalf("nuc1 after the cancel: %+v %v", plan, err)
		}
	})
	release := make(chan struct{})
	f.etc.set(nil, release)
	f.dhcp(t, nuc1, ip1)
	tok := f.script(t, nuc1, ip1)
	t.Run("refused while flint replaces the member", func(t *testing.T) {
		if a := f.admit(nuc1, ip1, tok, StageBoot); a.Verdict != Wait {
			t.Fatalf("boot: %v %q", a.Verdict, a.Reason)
		}
		_, err := f.m.CancelReprovision("nuc1")
		if !errors.Is(err, ErrRebuildStarted) || !strings.Contains(err.Error(), "flint is replacing its etcd member right now") || !strings.Contains(err.Error(), "Boot nuc1 from the network to finish the rebuild") {
			t.Fatalf("cancel during the rejoin: %v", err)
		}
	})
	close(release)
	// The timeline event comes after the rejoin freed its slot (EtcdRejoin
	// is stored before): only then does a cancel see the finished rejoin.
	waitFor(t, "member re-added", func() bool { return strings.Contains(f.events(t, nuc1), "etcd rejoin prepared") })
	t.Run("refused once the member was replaced, by the package function too", func(t *testing.T) {
		for _, cancel := range []func() error{
			func() error { _, err := f.m.CancelReprovision("nuc1"); return err },
			func() error { _, err := CancelReprovision(f.st, f.cfg, "nuc1", f.clock.Now()); return err },
		} {
			if err := cancel(); !errors.Is(err, ErrRebuildStarted) || !strings.Contains(err.Error(), "flint already removed its old etcd member and added it back") {
				t.Fatalf("cancel after the rejoin: %v", err)
			}
		}
		if r := f.state(t, nuc1); r.State != store.StateReprovision || !r.Rebuilding {
			t.Fatalf("a refused cancel changed nuc1: %+v", r)
		}
	})
}

// A rejoin that failed part-way may have removed the old member: no cancel.
func TestCancelAfterFailedRejoin(t *testing.T) {
	f := newFixture(t, "full", "disk")
	f.installDisk(t, nuc2, ip2)
	if _, err := f.m.Reprovision("nuc2", true); err != nil {
		t.Fatal(err)
	}
	f.etc.set(errors.New("add member: context deadline exceeded"), nil)
	f.dhcp(t, nuc2, ip2)
	f.admit(nuc2, ip2, f.script(t, nuc2, ip2), StageBoot)
	waitFor(t, "refusal", func() bool { return strings.Contains(f.events(t, nuc2), "etcd rejoin refused") })
	if _, err := f.m.CancelReprovision("nuc2"); !errors.Is(err, ErrRebuildStarted) || !strings.Contains(err.Error(), "failed part-way") {
		t.Fatalf("cancel after a failed rejoin: %v", err)
	}
}

// A rejoin refused before any change (quorum) leaves the cancel possible.
func TestCancelAfterUnchangedRejoin(t *testing.T) {
	f := newFixture(t, "full", "disk")
	f.installDisk(t, nuc2, ip2)
	if _, err := f.m.Reprovision("nuc2", true); err != nil {
		t.Fatal(err)
	}
	f.etc.set(fmt.Errorf("%w: quorum would be lost: nuc3 is unhealthy", ErrNothingChanged), nil)
	f.dhcp(t, nuc2, ip2)
	f.admit(nuc2, ip2, f.script(t, nuc2, ip2), StageBoot)
	waitFor(t, "refusal", func() bool { return strings.Contains(f.events(t, nuc2), "etcd rejoin refused") })
	if plan, err := f.m.CancelReprovision("nuc2"); err != nil || !plan.Cancelled {
		t.Fatalf("cancel after a refusal that changed nothing: %+v %v", plan, err)
	}
}

// A rejoin that fails on flint's own files tells the waiting node to wait,
// not where flint keeps its keys: the paths go to the operator's timeline.
func TestRejoinFailureKeepsPathsOffTheLAN(t *testing.T) {
	f := newFixture(t, "full", "disk")
	f.installDisk(t, nuc2, ip2)
	if _, err := f.m.Reprovision("nuc2", true); err != nil {
		t.Fatal(err)
	}
	f.m.RetryRejoin = time.Hour
	f.m.connect = func(ctx context.Context, endpoints []string) (Rejoiner, error) {
		return nil, errors.New("flint's etcd admin certificate: open /var/lib/flint/pki/clients/flint-admin.key: permission denied")
	}
	f.dhcp(t, nuc2, ip2)
	tok := f.script(t, nuc2, ip2)
	f.admit(nuc2, ip2, tok, StageBoot)
	waitFor(t, "refusal", func() bool { return strings.Contains(f.events(t, nuc2), "etcd rejoin refused") })
	a := f.admit(nuc2, ip2, tok, StageBoot)
	if a.Verdict != Wait || strings.Contains(a.Reason, "/var/lib") || !strings.Contains(a.Reason, "flint's log and the machine's timeline say why") {
		t.Fatalf("the node's answer: %v %q", a.Verdict, a.Reason)
	}
	if ev := f.events(t, nuc2); !strings.Contains(ev, "/var/lib/flint/pki/clients/flint-admin.key") {
		t.Errorf("the timeline does not say why:\n%s", ev)
	}
	if p, err := f.m.CancelReprovision("nuc2"); err != nil || !p.Cancelled {
		t.Fatalf("cancel after a failure that never reached etcd: %+v %v", p, err)
	}
}
