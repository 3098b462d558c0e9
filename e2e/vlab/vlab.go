package vlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Options say where and how to run a lab.
type Options struct {
	NS        string // network namespace, flt-...
	Dir       string // config, flint's data directory, logs, OVMF vars
	FlintBin  string
	TestOSDir string // vmlinuz + initrd.cpio.gz from BuildTestOS
	VMs       []VM
	// Detached processes outlive the caller (make lab); attached ones die with it (tests).
	Detached bool
	// VMTimeout, when set, wraps each QEMU in timeout(1): a detached machine
	// has no caller left to stop it. The tests time their machines themselves.
	VMTimeout time.Duration
	// ProxyDHCP runs flint in proxy DHCP mode next to dnsmasq, the LAN's own
	// DHCP server (StartRouter), instead of as the only DHCP server.
	ProxyDHCP bool
}

// Lab is a running lab: the namespace, flint, and the machines started so far.
type Lab struct {
	Options
	Net        *Network
	ConfigPath string
	DataDir    string
	AssetsDir  string
	FlintLog   string
	Flint      *Proc
	Admin      Admin            // flint's admin API, over its socket
	VMProcs    map[string]*Proc // by VM name
	impostor   *Impostor
	router     *Network // ProxyDHCP: dnsmasq's namespace
	Dnsmasq    *Proc
}

// Up creates the network, writes flint's config and assets, and starts flint.
// The machines are started with StartVM. On error everything made is removed.
func Up(o Options) (*Lab, error) {
	l := &Lab{
		Options:   o,
		DataDir:   filepath.Join(o.Dir, "data"),
		AssetsDir: filepath.Join(o.Dir, "data", "assets"),
		FlintLog:  filepath.Join(o.Dir, "flint.log"),
		Admin:     AdminOf(filepath.Join(o.Dir, "data")),
		VMProcs:   map[string]*Proc{},
	}
	if err := os.MkdirAll(l.AssetsDir, 0o755); err != nil {
		return nil, err
	}
	if err := PlaceAssets(l.AssetsDir, o.TestOSDir); err != nil {
		return nil, err
	}
	l.ConfigPath = filepath.Join(o.Dir, "flint.yaml")
	if err := os.WriteFile(l.ConfigPath, []byte(ConfigYAML(o.VMs, l.AssetsDir, o.ProxyDHCP)), 0o644); err != nil {
		return nil, err
	}
	taps := make([]string, len(o.VMs))
	for i, v := range o.VMs {
		taps[i] = v.Tap
	}
	network, err := CreateNetwork(o.NS, taps)
	if err != nil {
		return nil, err
	}
	l.Net = network
	if o.ProxyDHCP {
		if l.router, l.Dnsmasq, err = network.StartRouter(o.Dir, o.VMs, o.Detached); err != nil {
			return nil, errors.Join(err, l.Down())
		}
	}
	l.Flint, err = network.StartFlint(o.FlintBin, l.ConfigPath, l.DataDir, l.FlintLog, o.Detached)
	if err != nil {
		return nil, errors.Join(err, l.Down())
	}
	return l, nil
}

// StartVM boots one machine from the network.
func (l *Lab) StartVM(v VM) (*Proc, error) {
	args, err := v.QEMUArgs(l.Dir)
	if err != nil {
		return nil, err
	}
	// A fresh serial log per boot: the suite reads it whole.
	_ = os.Remove(v.SerialLog(l.Dir))
	cmd := l.Net.Command("qemu-system-x86_64", args...)
	if l.VMTimeout > 0 {
		secs := fmt.Sprint(int(l.VMTimeout.Seconds()))
		cmd = l.Net.Command("timeout", append([]string{"--kill-after=5", secs, "qemu-system-x86_64"}, args...)...)
	}
	p, err := Start("vm "+v.Name, cmd, filepath.Join(l.Dir, "vm-"+v.Name+".qemu.log"), l.Detached)
	if err != nil {
		return nil, err
	}
	l.VMProcs[v.Name] = p
	return p, nil
}

// Impostor returns the lab's impostor (made on first use; Down deletes it).
func (l *Lab) Impostor() (*Impostor, error) {
	if l.impostor == nil {
		im, err := l.Net.NewImpostor()
		if err != nil {
			return nil, err
		}
		l.impostor = im
	}
	return l.impostor, nil
}

// CACert is flint's CA certificate, to check its HTTPS server against.
func (l *Lab) CACert() string { return CACert(l.DataDir) }

// Down stops the machines and flint (by PID) and deletes the namespaces.
func (l *Lab) Down() error {
	var errs []error
	for _, p := range l.VMProcs {
		errs = append(errs, p.Stop(3*time.Second))
	}
	if l.impostor != nil && l.impostor.Exists() {
		if err := l.impostor.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("delete the impostor's namespace: %w", err))
		}
	}
	if l.Flint != nil {
		errs = append(errs, l.Flint.Stop(10*time.Second))
	}
	if l.Dnsmasq != nil {
		errs = append(errs, l.Dnsmasq.Stop(3*time.Second))
	}
	if l.router != nil && l.router.Exists() {
		if err := l.router.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("delete the router's namespace: %w", err))
		}
	}
	if l.Net != nil && l.Net.Exists() {
		if err := l.Net.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("delete namespace: %w", err))
		}
	}
	return errors.Join(errs...)
}
