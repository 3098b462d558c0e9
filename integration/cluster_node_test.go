package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// dhcp runs busybox udhcpc once on eth0; its script applies the address to
// the interface (and removes it on deconfig), as a node's DHCP client does.
// extra are more udhcpc flags (vendor class, options).
func (n *clNode) dhcp(label string, extra ...string) error {
	n.dhcpRuns++
	out := filepath.Join(n.dir, fmt.Sprintf("udhcpc-%d-%s.env", n.dhcpRuns, label))
	script := out + ".sh"
	body := `#!/bin/sh
# udhcpc calls this with deconfig, bound, renew, leasefail, nak
case "$1" in
deconfig)
	` + n.env.ipBin + ` -4 addr flush dev "$interface"
	;;
bound|renew)
	` + n.env.ipBin + ` -4 addr flush dev "$interface"
	` + n.env.ipBin + ` addr add "$ip/${mask:-24}" dev "$interface" || exit 1
	env > "` + out + `.tmp" && mv "` + out + `.tmp" "` + out + `"
	;;
esac
`
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		return err
	}
	args := append([]string{"-f", "-q", "-n", "-t", "5", "-T", "1", "-i", "eth0", "-s", script}, extra...)
	r := n.run(nil, 30*time.Second, "udhcpc", args...)
	n.setTook("dhcp-"+label, r.Dur)
	b, err := os.ReadFile(out)
	if err != nil {
		return fmt.Errorf("%s: udhcpc (%s) got no lease: %v\n%s", n.Name, label, err, r)
	}
	n.lease = parseEnv(string(b))
	got := n.lease["ip"]
	bits := 24
	if n.env.ha != nil {
		bits = netip.MustParsePrefix(haSubnet).Bits()
	}
	switch {
	case n.IP == "" && n.env.ha == nil && !inPool(got): // not in the config: a pool address
		return fmt.Errorf("%s: udhcpc (%s) got %s, want an address of the pool %s-%s", n.Name, label, got, poolStart, poolEnd)
	case n.IP == "" && n.env.ha != nil && !haInPool(got):
		return fmt.Errorf("%s: udhcpc (%s) got %s, want an address of the pool %s-%s", n.Name, label, got, haPoolStart, haPoolEnd)
	case n.IP != "" && got != n.IP:
		return fmt.Errorf("%s: udhcpc (%s) got %s, want its reservation %s", n.Name, label, got, n.IP)
	}
	server, who := flintIP, "flint"
	if n.env.proxy() {
		server, who = routerIP, "the LAN's DHCP server (dnsmasq)"
	}
	if n.dhcpFrom != nil {
		server, who = n.dhcpFrom.IP, "flint "+n.dhcpFrom.Name
	}
	if got := n.lease["serverid"]; got != server {
		return fmt.Errorf("%s: lease from server %s, want %s at %s", n.Name, got, who, server)
	}
	// The address is really on the interface: the guard will see it.
	addr := n.run(nil, 10*time.Second, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
	if !strings.Contains(addr.Stdout, fmt.Sprintf(" %s/%d ", got, bits)) {
		return fmt.Errorf("%s: eth0 does not carry %s/%d after udhcpc's bound:\n%s", n.Name, got, bits, addr)
	}
	n.logf("%s: %s leased %s from %s (boot file %q)", label, n.Name, got, n.lease["serverid"], n.lease["boot_file"])
	return nil
}

// udhcpcIPXE makes udhcpc look like iPXE on a UEFI NUC: vendor class and
// arch 7, user class "iPXE" (option 77), so flint answers with the HTTP script.
var udhcpcIPXE = []string{"-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007", "-x", "0x4d:69505845"}

// netboot is what iPXE does: DHCP, GET /boot.ipxe, chain to the machine's
// own script. It returns that script.
//
// In proxy mode the address comes from the LAN's DHCP server and the boot
// file from flint's proxy offer, which iPXE merges and udhcpc cannot: the
// node asks as a plain client (flint sees its broadcast REQUEST name the
// address) and goes on with the boot file flint offers iPXE.
//
// In TestHACluster the node fetches the scripts from scriptFrom, which may
// not be the instance whose DHCP answer named the boot file: the URL's host
// is rewritten. It stands for a node whose requests reach different
// instances (one died in between, or they sit behind one shared name).
func (n *clNode) netboot() (string, error) {
	if n.env.proxy() {
		if err := n.dhcp("ipxe"); err != nil {
			return "", err
		}
	} else {
		if err := n.dhcp("ipxe", udhcpcIPXE...); err != nil {
			return "", err
		}
		// The boot file names the flint that answered (flintIP but in TestHACluster).
		want := fmt.Sprintf("http://%s:%d/boot.ipxe", n.lease["serverid"], httpPort)
		if got := n.lease["boot_file"]; got != want {
			return "", fmt.Errorf("%s: iPXE's DHCP got boot file %q, want %q", n.Name, got, want)
		}
	}
	bootFile := n.scriptHTTP() + "/boot.ipxe"
	code, r := n.env.lab.Curl(n.host.NS, bootFile)
	n.record(r)
	if code != "200" {
		return "", fmt.Errorf("%s: GET %s: %s", n.Name, bootFile, code)
	}
	var chain string
	for _, ln := range strings.Split(r.Stdout, "\n") {
		if f := strings.Fields(ln); len(f) >= 2 && f[0] == "chain" {
			chain = f[1]
			break
		}
	}
	if chain == "" {
		return "", fmt.Errorf("%s: /boot.ipxe has no chain line:\n%s", n.Name, r.Stdout)
	}
	chain = strings.NewReplacer("${mac:hexhyp}", n.hex(), "${buildarch}", clBuildArch).Replace(chain)
	if want := n.scriptHTTP() + "/machines/" + n.hex() + "/boot.ipxe"; !strings.HasPrefix(chain, want) {
		return "", fmt.Errorf("%s: /boot.ipxe chains to %s, want %s", n.Name, chain, want)
	}
	code, r = n.env.lab.Curl(n.host.NS, chain)
	n.record(r)
	if code != "200" {
		return "", fmt.Errorf("%s: GET %s: %s\n%s", n.Name, chain, code, r.Stdout)
	}
	return r.Stdout, nil
}

// kernelCmdline is the kernel command line of an iPXE script, with
// ${mac:hexhyp} expanded as iPXE would.
func (n *clNode) kernelCmdline(script string) (string, error) {
	for _, ln := range strings.Split(script, "\n") {
		if !strings.HasPrefix(ln, "kernel ") {
			continue
		}
		ln, _, _ = strings.Cut(ln, " && ")
		f := strings.Fields(ln)
		if len(f) < 3 {
			return "", fmt.Errorf("%s: kernel line without arguments: %q", n.Name, ln)
		}
		cmdline := strings.ReplaceAll(strings.Join(f[2:], " "), "${mac:hexhyp}", n.hex())
		var url string
		for _, a := range strings.Fields(cmdline) {
			if v, ok := strings.CutPrefix(a, "ignition.config.url="); ok {
				url = v
			}
		}
		// The flint that rendered the script names itself.
		rendered := n.scriptHTTP() + "/ignition?mac=" + n.hex()
		tok, ok := strings.CutPrefix(url, rendered+"&token=")
		if !ok || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(tok) {
			return "", fmt.Errorf("%s: kernel line %q has ignition.config.url=%q, want %s&token=<64 hex digits>", n.Name, ln, url, rendered)
		}
		n.token = tok
		if n.configURL() != rendered {
			// TestHACluster: the config request goes to another instance
			// than the script's (with the token that one minted). Each
			// instance writes its own server.address into the URLs, so the
			// host is rewritten: a node whose requests reach different
			// instances, e.g. after one died or behind a shared name.
			cmdline = strings.ReplaceAll(cmdline, "ignition.config.url="+rendered+"&", "ignition.config.url="+n.configURL()+"&")
		}
		return cmdline, nil
	}
	return "", fmt.Errorf("%s: no kernel line in its iPXE script:\n%s", n.Name, script)
}

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

// bootResult is what one network boot of a disk-mode node did.
type bootResult struct {
	ServerID     string // the DHCP server (option 54) whose answer iPXE took
	Script       string // the machine's iPXE script
	InstallerLog string // Ignition applying the installer config (live system)
	FirstBootLog string // Ignition applying the embedded config on the first boot from disk
	Cmdline      string // the kernel command line of the script
	EtcdEnv      map[string]string
}

// A network boot of a disk-mode machine in its install window, up to and
// including the first boot of the installed system, in two parts:
//
// pxe (what firmware, iPXE and Flatcar's initramfs do before Ignition):
//  1. iPXE: DHCP (user class iPXE), /boot.ipxe, the machine's script, whose
//     kernel line names ignition.config.url;
//  2. the live system's initramfs asks for an address again (a plain client).
//
// install (from there):
//  3. the real Ignition client (-platform metal, that command line) applies
//     the installer config into the live system's root;
//  4. the installer unit: the laid-down /opt/bin/flint-install runs in the
//     node's namespace, with the live root's /opt mounted at /opt, a fake
//     flatcar-install that records its arguments and the config it was told
//     to embed, and a fake systemctl (reboot);
//  5. the first boot from disk: Ignition (-platform file) applies the embedded
//     config into the node's root, then flint-report config-applied runs as
//     flint-report-applied.service would.
func (n *clNode) pxe() (*bootResult, error) {
	res := &bootResult{}
	n.boots++
	script, err := n.netboot()
	if err != nil {
		return res, err
	}
	res.ServerID, res.Script = n.lease["serverid"], script
	if strings.Contains(script, "sanboot") {
		return res, fmt.Errorf("%s: flint told it to boot its disk, but it should install:\n%s", n.Name, script)
	}
	if res.Cmdline, err = n.kernelCmdline(script); err != nil {
		return res, err
	}
	if err := n.dhcp("initramfs"); err != nil {
		return res, err
	}
	return res, nil
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
