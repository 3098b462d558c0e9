package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// clNode is one NUC: a namespace on the lab bridge with its MAC, and a
// directory holding what its boots wrote.
//
//	DIR/bootN/          one network boot (PXE -> live system -> installer)
//	      live/root     the live system's root: the installer config applied
//	      disk/         what flatcar-install was asked to write (args, config.ign)
//	DIR/root            the installed system: its first boot applied config.ign
type clNode struct {
	clNodeSpec
	env  *clusterEnv
	host *Host
	dir  string
	root string
	log  syncBuffer // every client's output, printed when the test fails

	boots, dhcpRuns int // counters that name files

	token    string            // the boot token of its last install script
	lease    map[string]string // what udhcpc's script got on bound
	etcd     *Proc
	etcdRuns int

	// With two flint instances (TestHACluster; nil otherwise): the one
	// whose DHCP answers reach the node (the other's are dropped at its
	// eth0, see onlyDHCPFrom), the one it fetches its iPXE scripts from,
	// and the one its config requests go to.
	dhcpFrom, scriptFrom, cfgFrom *haFlint

	// took is how long the last run of a step took: "dhcp-LABEL" (udhcpc),
	// "ignition-PLATFORM" (Ignition's fetch stage: the configs over the
	// network). Written by the node's own goroutine only.
	took map[string]time.Duration
}

func (n *clNode) setTook(step string, d time.Duration) {
	if n.took == nil {
		n.took = map[string]time.Duration{}
	}
	n.took[step] = d
}

func (n *clNode) logf(format string, args ...any) {
	fmt.Fprintf(&n.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func (n *clNode) record(r Result) {
	fmt.Fprintf(&n.log, "%s %s\n", time.Now().Format("15:04:05.000"), r.String())
}

func (n *clNode) hex() string { return hexhyp(n.MAC) }

// scriptHTTP is the base URL the node fetches its iPXE scripts from.
func (n *clNode) scriptHTTP() string {
	if n.scriptFrom != nil {
		return n.scriptFrom.HTTP()
	}
	return flintHTTP
}

// cfgHTTP and cfgHTTPS are the base URLs of the flint its configs come from.
func (n *clNode) cfgHTTP() string {
	if n.cfgFrom != nil {
		return n.cfgFrom.HTTP()
	}
	return flintHTTP
}

func (n *clNode) cfgHTTPS() string {
	if n.cfgFrom != nil {
		return n.cfgFrom.HTTPS()
	}
	return flintHTTPS
}

// configURL is the pointer config the node's kernel command line names,
// without its boot token.
func (n *clNode) configURL() string { return n.cfgHTTP() + "/ignition?mac=" + n.hex() }

// installedURL is the installed system's config, which the installer fetches
// over HTTPS (with a token the installer config carries), without the token.
func (n *clNode) installedURL() string {
	return n.cfgHTTPS() + "/ignition?mac=" + n.hex() + "&stage=installed"
}

// rootPath maps an absolute path of the installed system into its root.
func (n *clNode) rootPath(p string) string {
	return filepath.Join(n.root, strings.TrimPrefix(p, "/"))
}

// run runs a command in the node's namespace and keeps its output in the node's log.
func (n *clNode) run(env []string, timeout time.Duration, name string, args ...string) Result {
	r := n.env.lab.runEnv(n.host.NS, env, timeout, name, args...)
	n.record(r)
	return r
}

// wipe is a new disk (and RAM): everything the node had is gone.
func (n *clNode) wipe() error {
	if err := os.RemoveAll(n.dir); err != nil {
		return err
	}
	return os.MkdirAll(n.dir, 0o755)
}

// parseEnvFile parses KEY=VALUE lines (an EnvironmentFile without quoting).
func parseEnvFile(b []byte) (map[string]string, error) {
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		ln := strings.TrimSpace(sc.Text())
		if ln == "" || strings.HasPrefix(ln, "#") {
			continue
		}
		k, v, ok := strings.Cut(ln, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("not KEY=VALUE: %q", ln)
		}
		if _, dup := env[k]; dup {
			return nil, fmt.Errorf("%s set twice", k)
		}
		env[k] = v
	}
	return env, sc.Err()
}

// readEnv reads and parses an env file of the installed system.
func (n *clNode) readEnv(p string) (map[string]string, error) {
	b, err := os.ReadFile(n.rootPath(p))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", n.Name, err)
	}
	env, err := parseEnvFile(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %v", n.Name, p, err)
	}
	return env, nil
}

// fileOwned checks mode and owner of a file of the installed system.
func (n *clNode) fileOwned(p string, mode os.FileMode, uid int) error {
	st, err := os.Stat(n.rootPath(p))
	if err != nil {
		return fmt.Errorf("%s: %v", n.Name, err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode().Perm() != mode || int(sys.Uid) != uid || int(sys.Gid) != uid {
		return fmt.Errorf("%s: %s is %#o %d:%d, want %#o %d:%d", n.Name, p, st.Mode().Perm(), sys.Uid, sys.Gid, mode, uid, uid)
	}
	return nil
}

// fetchConfig asks for a config with curl from the node's namespace (its
// leased address) and returns the status and body. HTTPS URLs are checked
// against flint's CA.
func (n *clNode) fetchConfig(url string) (string, string) {
	code, r := n.env.lab.Curl(n.host.NS, "--cacert", n.env.caFile,
		"-H", "Accept: application/vnd.coreos.ignition+json;version=3.6.0, */*;q=0.1", url)
	n.record(r)
	return code, r.Stdout
}

var errRefusedNoEvent = errors.New("no \"ignition refused\" event")

// wantRefused checks that a config request got 403 with a reason and that
// the machine's timeline recorded it.
func (e *clusterEnv) wantRefused(who, code, body string, target *clNode, since time.Time, reason *regexp.Regexp) error {
	if code != "403" {
		return fmt.Errorf("%s: got %s, want 403 (body %.200q)", who, code, body)
	}
	if !reason.MatchString(body) {
		return fmt.Errorf("%s: the 403 does not explain itself: %q, want it to match %s", who, body, reason)
	}
	// A refusal reaches the timeline in its instance's next batch of
	// informational events; the admin API writes its own instance's batch
	// before it reads, but with two instances (TestHACluster) the one that
	// refused may be the other: its batch follows within a moment.
	wait := time.Duration(0)
	if e.ha != nil {
		wait = 2 * time.Second
	}
	return eventually(wait, 100*time.Millisecond, func() error {
		ev, err := e.timeline(target.MAC)
		if err != nil {
			return err
		}
		refused := append(findEvents(ev, "ignition refused", since), findEvents(ev, "ignition pointer refused", since)...)
		for _, r := range refused {
			if reason.MatchString(r.Detail) {
				return nil
			}
		}
		return fmt.Errorf("%s: %w matching %s on %s's timeline since %s:\n%s", who, errRefusedNoEvent, reason, target.Name, since.Format("15:04:05.000"), formatTimeline(ev))
	})
}
