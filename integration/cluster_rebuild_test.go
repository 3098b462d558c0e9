package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The rebuild of a server, as TestCluster and TestHACluster do it: what it
// must keep, the reboot into its reinstall, and the checks afterwards.

// handLeadershipOver moves the etcd leadership from `from` to `to` if from
// leads, as a member that reboots cleanly hands it over. A killed leader
// costs an election (1-2 s of etcd's defaults), which the writer would
// measure and flint's member replacement waits out.
func handLeadershipOver(t *testing.T, ds *clDatastore, from, to *clNode) {
	t.Helper()
	leaderEP, leaderID, ids, err := ds.leader()
	if err != nil {
		t.Fatal(err)
	}
	if leaderEP == "https://"+from.IP+":2379" {
		r := ds.etcdctl(leaderEP, "move-leader", fmt.Sprintf("%x", ids["https://"+to.IP+":2379"]))
		if r.Code != 0 {
			t.Fatalf("etcdctl move-leader away from %s: %s", from.Name, r)
		}
		t.Logf("%s (%x) led the cluster; moved leadership to %s before killing it", from.Name, leaderID, to.Name)
	} else {
		t.Logf("leader is %s (%x)", leaderEP, leaderID)
	}
}

// clRebuildBefore is what a server keeps through its rebuild: the data its
// member serves again, its node password, its K3s token; and its old member.
type clRebuildBefore struct {
	keys     map[string]string // written through another member before
	password []byte
	token    string
	memberID uint64
}

// rememberForRebuild notes what n must keep; keys were written through ds.
func rememberForRebuild(ds *clDatastore, n *clNode, keys map[string]string) (clRebuildBefore, error) {
	b := clRebuildBefore{keys: keys}
	var err error
	if b.password, err = os.ReadFile(n.rootPath("/etc/rancher/node/password")); err != nil {
		return b, err
	}
	dsn, err := n.datastore()
	if err != nil {
		return b, err
	}
	b.token = dsn.Token
	ms, err := ds.members()
	if err != nil {
		return b, err
	}
	for _, m := range ms {
		if m.Name == n.Name {
			b.memberID = m.ID
		}
	}
	return b, nil
}

// rebootToRebuild is the reboot of an armed server n: its etcd killed, its
// disk wiped, a network boot and reinstall (with the instances n's routing
// names, in TestHACluster) through which Ignition waits out flint's 503 while
// flint replaces its etcd member; then etcd.env says state existing with the
// same initial cluster as its first boot (prev), and n's etcd is started.
func (e *clusterEnv) rebootToRebuild(t *testing.T, n *clNode, prev *bootResult, since time.Time) *bootResult {
	t.Helper()
	n.etcd.Signal(syscall.SIGKILL)
	if _, ok := n.etcd.Wait(5 * time.Second); !ok {
		t.Fatalf("%s's etcd survived SIGKILL", n.Name)
	}
	if err := n.wipe(); err != nil {
		t.Fatal(err)
	}
	n.run(nil, 5*time.Second, "ip", "-4", "addr", "flush", "dev", "eth0") // the reboot
	t.Logf("killed %s's etcd and wiped its disk; it boots from the network again", n.Name)

	res, err := n.pxe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.install(res, 120*time.Second); err != nil {
		t.Fatalf("%s's reinstall: %v\ninstaller Ignition:\n%s", n.Name, err, tail(res.InstallerLog, 6000))
	}
	if c := strings.Count(res.InstallerLog, "GET result: Service Unavailable"); c == 0 {
		t.Errorf("%s's Ignition never waited through a 503 while flint replaced its member:\n%s", n.Name, tail(res.InstallerLog, 4000))
	} else {
		t.Logf("%s's Ignition retried %d time(s) through 503 while flint replaced its etcd member", n.Name, c)
	}
	ev, err := e.timeline(n.MAC)
	if err != nil {
		t.Fatal(err)
	}
	if len(findEvents(ev, "etcd rejoin started", since)) == 0 || len(findEvents(ev, "etcd rejoin prepared", since)) == 0 {
		t.Errorf("%s's timeline lacks \"etcd rejoin started\"/\"etcd rejoin prepared\":\n%s", n.Name, formatTimeline(ev))
	}
	if got := res.EtcdEnv["ETCD_INITIAL_CLUSTER_STATE"]; got != "existing" {
		t.Fatalf("rebuilt %s's etcd.env has ETCD_INITIAL_CLUSTER_STATE=%q, want existing", n.Name, got)
	}
	if got, want := res.EtcdEnv["ETCD_INITIAL_CLUSTER"], prev.EtcdEnv["ETCD_INITIAL_CLUSTER"]; got != want {
		t.Errorf("rebuilt %s's ETCD_INITIAL_CLUSTER=%q, want the same as before: %q", n.Name, got, want)
	}
	if _, err := e.startEtcd(t, n); err != nil {
		t.Fatal(err)
	}
	return res
}

// checkRebuilt: the rebuilt server n serves all the keys written before from
// its own copy, as a new member, with the same node password and K3s token,
// and is installed again.
func checkRebuilt(t *testing.T, e *clusterEnv, n *clNode, before clRebuildBefore) {
	t.Helper()
	ds, err := n.datastore()
	if err != nil {
		t.Fatal(err)
	}
	// Serializable: answered by n alone, from its own copy of the data.
	r := ds.etcdctl("https://"+n.IP+":2379", "get", "flint-test/keys/", "--prefix", "--consistency=s", "-w", "json")
	var got struct {
		Kvs []struct {
			Key, Value []byte
		} `json:"kvs"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &got); r.Code != 0 || err != nil {
		t.Fatalf("serializable get from %s: exit %d %v\n%s", n.Name, r.Code, err, r)
	}
	found := 0
	for _, kv := range got.Kvs {
		if want, ok := before.keys[string(kv.Key)]; ok && want == string(kv.Value) {
			found++
		}
	}
	if want := len(before.keys); found != want || len(got.Kvs) != want {
		t.Errorf("%s serves %d keys under flint-test/keys/, %d of them right; want all %d", n.Name, len(got.Kvs), found, want)
	} else {
		t.Logf("all %d keys read back from %s alone (serializable)", want, n.Name)
	}
	ms, err := ds.members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Name == n.Name {
			if m.ID == before.memberID {
				t.Errorf("%s kept member ID %x: the old member was not replaced", n.Name, m.ID)
			}
			t.Logf("%s: old member %x removed, new member %x", n.Name, before.memberID, m.ID)
		}
	}
	pw, err := os.ReadFile(n.rootPath("/etc/rancher/node/password"))
	if err != nil || !bytes.Equal(pw, before.password) {
		t.Errorf("rebuilt %s's /etc/rancher/node/password differs from before (%v)", n.Name, err)
	}
	if ds.Token != before.token {
		t.Errorf("rebuilt %s's K3S_TOKEN differs from before", n.Name)
	}
	checkInstalled(t, e, n)
}
