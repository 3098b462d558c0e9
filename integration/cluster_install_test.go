package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// A node's install in the cluster tests: the real Ignition client, the
// laid-down installer, the first boot from disk and its reports.

// ignition runs the real client's fetch and files stages from inside the
// node's namespace (so flint sees the leased address) into root.
// platform "metal" reads ignition.config.url from cmdline (a PXE boot);
// "file" applies configFile (the first boot of an installed disk).
func (n *clNode) ignition(work, root, platform, cmdline, configFile string, timeout time.Duration) (string, error) {
	sys := filepath.Join(work, "system") // no base configs from the host's /usr/lib/ignition
	for _, d := range []string{sys, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	if err := clPrepareRoot(root); err != nil {
		return "", err
	}
	env := []string{"IGNITION_SYSTEM_CONFIG_DIR=" + sys, "IGNITION_SYSTEM_RUNTIME_CONFIG_DIR=" + sys, "IGNITION_SYSTEM_LOCAL_CONFIG_DIR=" + sys}
	switch platform {
	case "metal":
		p := filepath.Join(work, "cmdline")
		if err := os.WriteFile(p, []byte(cmdline+"\n"), 0o644); err != nil {
			return "", err
		}
		env = append(env, "IGNITION_KERNEL_CMDLINE_PATH="+p)
	case "file":
		env = append(env, "IGNITION_CONFIG_FILE="+configFile)
	}
	var out strings.Builder
	for _, stage := range []string{"fetch", "files"} {
		r := n.run(env, timeout+10*time.Second, "timeout", "-k", "5", fmt.Sprint(int(timeout.Seconds())), n.env.ignition,
			"-platform", platform, "-stage", stage, "-root", root, "-log-to-stdout",
			"-config-cache", filepath.Join(work, "config.json"), "-state-file", filepath.Join(work, "state"),
			"-neednet", filepath.Join(work, "neednet"))
		out.WriteString(r.Stdout + r.Stderr)
		if stage == "fetch" {
			n.setTook("ignition-"+platform, r.Dur)
		}
		if r.Code != 0 {
			return out.String(), fmt.Errorf("%s: ignition -platform %s -stage %s failed (exit %d): the end of its output:\n%s", n.Name, platform, stage, r.Code, tail(r.Stdout+r.Stderr, 3000))
		}
	}
	return out.String(), nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]" + s[len(s)-n:]
}

// clPrepareRoot gives a root the users and groups Flatcar has.
func clPrepareRoot(root string) error {
	files := map[string]string{
		"etc/passwd":  "root:x:0:0:root:/root:/bin/bash\ncore:x:500:500:Flatcar Admin:/home/core:/bin/bash\netcd:x:232:232:etcd user:/dev/null:/sbin/nologin\n",
		"etc/group":   "root:x:0:\ncore:x:500:\netcd:x:232:\n",
		"etc/shadow":  "root:*:19000:0:99999:7:::\ncore:*:19000:0:99999:7:::\netcd:*:19000:0:99999:7:::\n",
		"etc/gshadow": "root:*::\ncore:!::\netcd:!::\n",
	}
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.Contains(rel, "shadow") {
			mode = 0o600
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
	}
	return nil
}

// install continues a boot pxe started. ignTimeout bounds each Ignition
// stage of the live system: a rebuilt server waits through 503s there.
func (n *clNode) install(res *bootResult, ignTimeout time.Duration) error {
	since := time.Now()
	boot := filepath.Join(n.dir, fmt.Sprintf("boot%d", n.boots))
	live := filepath.Join(boot, "live")
	liveRoot := filepath.Join(live, "root")
	out, err := n.ignition(live, liveRoot, "metal", res.Cmdline, "", ignTimeout)
	res.InstallerLog = out
	if err != nil {
		return err
	}
	if err := n.checkInstaller(liveRoot); err != nil {
		return err
	}
	if err := n.env.wantState(n.Name, "installing"); err != nil {
		return fmt.Errorf("after its installer config was served: %w", err)
	}

	disk := filepath.Join(boot, "disk")
	if err := n.runInstaller(boot, liveRoot, disk); err != nil {
		return err
	}
	if err := n.env.wantState(n.Name, "installed"); err != nil {
		return fmt.Errorf("after flint-install reported install-finished: %w", err)
	}

	// First boot from disk: the config flatcar-install embedded.
	first := filepath.Join(boot, "firstboot")
	out, err = n.ignition(first, n.root, "file", "", filepath.Join(disk, "config.ign"), 60*time.Second)
	res.FirstBootLog = out
	if err != nil {
		return err
	}
	if err := n.report("config-applied", n.Name+" booted with its "+n.Role+" config"); err != nil {
		return err
	}
	if n.Role == "server" {
		if res.EtcdEnv, err = n.readEnv("/etc/etcd/etcd.env"); err != nil {
			return err
		}
	}
	return n.checkInstallTimeline(since)
}

// checkInstallTimeline: the machine's timeline shows this install in order --
// the installer profile served to the PXE boot, then the machine's own
// config (to the installer), then the node's reports.
func (n *clNode) checkInstallTimeline(since time.Time) error {
	ev, err := n.env.timeline(n.MAC)
	if err != nil {
		return err
	}
	var seq []string
	for _, e := range ev {
		// Refusals (others asking for its config, forged reports) are on
		// its timeline too, but they are not this install's steps.
		if e.At.Before(since) || strings.HasSuffix(e.Event, " refused") {
			continue
		}
		switch {
		case e.Event == "ignition served" && strings.Contains(e.Detail, "profile installer"):
			seq = append(seq, "installer config")
		case e.Event == "ignition served":
			seq = append(seq, "own config")
		case strings.HasPrefix(e.Event, "node "):
			seq = append(seq, e.Event)
		}
		if e.Event == "ignition served" && e.IP != n.IP {
			return fmt.Errorf("%s: a config went to %s, not to its lease %s:\n%s", n.Name, e.IP, n.IP, formatTimeline(ev))
		}
	}
	want := []string{"installer config", "node install-started", "own config", "node install-finished", "node config-applied"}
	if !slices.Equal(seq, want) {
		return fmt.Errorf("%s: this install's timeline is %q, want %q:\n%s", n.Name, seq, want, formatTimeline(ev))
	}
	return nil
}

// checkInstaller: the live system got the installer, which names the
// machine's installed-system URL, and no secret at all.
func (n *clNode) checkInstaller(liveRoot string) error {
	p := filepath.Join(liveRoot, "opt/bin/flint-install")
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("%s: the installer config laid down no /opt/bin/flint-install: %v", n.Name, err)
	}
	if st.Mode().Perm() != 0o755 {
		return fmt.Errorf("%s: /opt/bin/flint-install has mode %#o, want 0755", n.Name, st.Mode().Perm())
	}
	b, _ := os.ReadFile(p)
	for _, want := range []string{
		"'" + n.installedURL() + "&token=",
		"--cacert /etc/flint/ca.crt",
		fmt.Sprintf("flatcar-install -d '%s' -V '%s' -b '%s/assets/flatcar' -i /run/flint-installed.ign", clInstallDisk, clFlatcarVersion, n.cfgHTTP()),
		"/opt/bin/flint-report install-finished",
	} {
		if !strings.Contains(string(b), want) {
			return fmt.Errorf("%s: /opt/bin/flint-install lacks %q:\n%s", n.Name, want, b)
		}
	}
	if _, err := os.Stat(filepath.Join(liveRoot, "opt/bin/flint-report")); err != nil {
		return fmt.Errorf("%s: the installer config laid down no /opt/bin/flint-report: %v", n.Name, err)
	}
	if _, err := os.Stat(filepath.Join(liveRoot, "etc/systemd/system/flint-install.service")); err != nil {
		return fmt.Errorf("%s: no flint-install.service in the live system: %v", n.Name, err)
	}
	preset, _ := os.ReadFile(filepath.Join(liveRoot, "etc/systemd/system-preset/20-ignition.preset"))
	if !strings.Contains(string(preset), "enable flint-install.service") {
		return fmt.Errorf("%s: flint-install.service is not enabled (preset: %q)", n.Name, preset)
	}
	// No secret in the live system: the installed config is fetched by URL.
	var leaks []string
	err = filepath.WalkDir(liveRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		c, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, secret := range []string{"PRIVATE KEY", "K3S_TOKEN", "K3S_AGENT_TOKEN"} {
			if bytes.Contains(c, []byte(secret)) {
				leaks = append(leaks, strings.TrimPrefix(path, liveRoot)+" contains "+secret)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(leaks) > 0 {
		return fmt.Errorf("%s: the installer config carries secrets: %s", n.Name, strings.Join(leaks, "; "))
	}
	return nil
}

// runInstaller runs the laid-down /opt/bin/flint-install as its unit would.
func (n *clNode) runInstaller(boot, liveRoot, disk string) error {
	fake := filepath.Join(boot, "fakebin")
	for _, d := range []string{fake, disk} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	fakes := map[string]string{
		// The disk is a directory: the arguments and the config to embed.
		"flatcar-install": `#!/bin/sh
# flint's cluster test: a flatcar-install that records what it was asked to do
set -e
printf '%s\n' "$@" > "` + disk + `/args"
cfg=
while [ $# -gt 0 ]; do
	case "$1" in
	-i) cfg=$2; shift ;;
	esac
	shift
done
[ -n "$cfg" ] || { echo "flatcar-install: no -i config" >&2; exit 1; }
cp "$cfg" "` + disk + `/config.ign"
echo "flatcar-install (test stand-in): wrote Flatcar and $cfg to the disk"
`,
		"systemctl": "#!/bin/sh\necho \"$*\" >> \"" + disk + "/systemctl\"\n",
	}
	for name, body := range fakes {
		if err := os.WriteFile(filepath.Join(fake, name), []byte(body), 0o755); err != nil {
			return err
		}
	}
	// ip netns exec gives the command a private mount namespace: the live
	// root's /opt is mounted at /opt, its /etc laid over the host's (read
	// only: flint's CA and the report token), and a tmpfs at /run there only.
	r := n.run([]string{"FLINT_TEST_FAKEBIN=" + fake}, 90*time.Second, "timeout", "-k", "5", "80", "sh", "-c",
		`mount --bind "$0/opt" /opt && `+overlayEtc+` && mount -t tmpfs flint-test-run /run && PATH="$FLINT_TEST_FAKEBIN:$PATH" exec /opt/bin/flint-install`,
		liveRoot)
	if r.Code != 0 {
		return fmt.Errorf("%s: /opt/bin/flint-install failed (exit %d):\n%s", n.Name, r.Code, r)
	}
	args, err := os.ReadFile(filepath.Join(disk, "args"))
	if err != nil {
		return fmt.Errorf("%s: flint-install never ran flatcar-install: %v\n%s", n.Name, err, r)
	}
	want := []string{"-d", clInstallDisk, "-V", clFlatcarVersion, "-b", n.cfgHTTP() + "/assets/flatcar", "-i", "/run/flint-installed.ign"}
	if got := strings.Split(strings.TrimSuffix(string(args), "\n"), "\n"); !slices.Equal(got, want) {
		return fmt.Errorf("%s: flatcar-install ran with %q, want %q", n.Name, got, want)
	}
	cfg, err := os.ReadFile(filepath.Join(disk, "config.ign"))
	if err != nil {
		return err
	}
	var c struct {
		Ignition struct{ Version string } `json:"ignition"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil || !strings.HasPrefix(c.Ignition.Version, "3.") {
		return fmt.Errorf("%s: the config flatcar-install got is no spec 3 Ignition config (%v): %.300s", n.Name, err, cfg)
	}
	if sc, _ := os.ReadFile(filepath.Join(disk, "systemctl")); strings.TrimSpace(string(sc)) != "reboot" {
		return fmt.Errorf("%s: flint-install ended with systemctl %q, want reboot", n.Name, sc)
	}
	return nil
}

// overlayEtc (in sh -c with the node's root as $0) lays the root's /etc over
// the host's, read-only, in the command's private mount namespace: what the
// node's scripts read from /etc/flint is the node's.
const overlayEtc = `mount -t overlay flint-test-etc -o lowerdir="$0/etc":/etc /etc`

// report runs the installed system's /opt/bin/flint-report in the node's
// namespace, with its /etc (flint's CA, the report token).
func (n *clNode) report(event, detail string) error {
	script := n.rootPath("/opt/bin/flint-report")
	if _, err := os.Stat(script); err != nil {
		return fmt.Errorf("%s: no /opt/bin/flint-report in its root: %v", n.Name, err)
	}
	r := n.run(nil, 60*time.Second, "sh", "-c", overlayEtc+` && exec bash -x "$1" "$2" "$3"`, n.root, script, event, detail)
	// flint-report never fails a boot (curl ... || true): its trace shows whether curl did.
	if r.Code != 0 || strings.Contains(r.Stderr, "curl: (") {
		return fmt.Errorf("%s: flint-report %s failed:\n%s", n.Name, event, r)
	}
	return nil
}
