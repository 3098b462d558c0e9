// Package ipmisim runs OpenIPMI's ipmi_sim (Debian package openipmi) as a
// real IPMI BMC for flint's tests: a LAN channel (RMCP+, IPMI 2.0) that
// ipmitool logs in to, one admin user, and the machine's "power" as a
// command ipmi_sim starts on power on and stops (SIGTERM) on power off. A
// QEMU VM becomes the managed machine by connecting its ipmi-bmc-extern
// chardev to the VM serial port (SerialPort). Only tests import it.
package ipmisim

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Options describe one simulated BMC.
type Options struct {
	Dir string // lan.conf, the command file, state, the log
	// Addr is where the LAN channel listens (UDP LANPort) and the VM serial
	// port (TCP SerialPort): loopback, or an address in 198.18.0.0/15.
	Addr       netip.Addr
	LANPort    int
	SerialPort int // 0: no VM serial port
	User       string
	Password   string
	// StartCmd is an executable ipmi_sim runs on power on (without
	// arguments); the machine is on while it runs.
	StartCmd string
	// PoweroffWait is how long a connected VM gets to shut down gracefully
	// before SIGTERM (ipmi_sim's poweroff_wait, whole seconds, at least 1).
	PoweroffWait int
	// ChassisControl is an executable ipmi_sim asks instead for the power
	// state, power changes and the next boot device (its chassis_control
	// program: "PROG 0x20 get power boot", "PROG 0x20 set boot pxe"); it
	// takes the place of StartCmd.
	ChassisControl string
	// Wrap runs ipmi_sim inside something (e.g. ip netns exec NS).
	Wrap []string
}

// Sim is a running ipmi_sim.
type Sim struct {
	Options
	Cmd *exec.Cmd
	Log string
	// done is closed when ipmi_sim exits.
	done chan struct{}
}

var lab = netip.MustParsePrefix("198.18.0.0/15")

// Start writes the configuration and starts ipmi_sim; it returns once the
// LAN port is bound (or with ipmi_sim's log when it exits early).
func Start(o Options) (*Sim, error) {
	if !o.Addr.IsLoopback() && !lab.Contains(o.Addr) {
		return nil, fmt.Errorf("ipmisim: %s is neither loopback nor in %s", o.Addr, lab)
	}
	if strings.ContainsAny(o.User+o.Password+o.StartCmd+o.ChassisControl, "\"\n") {
		return nil, errors.New("ipmisim: user, password and start command must not hold quotes or newlines")
	}
	if o.PoweroffWait < 1 {
		o.PoweroffWait = 1
	}
	state := filepath.Join(o.Dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name \"flinttest\"\nset_working_mc 0x20\n  startlan 1\n")
	fmt.Fprintf(&b, "    addr %s %d\n    priv_limit admin\n", o.Addr, o.LANPort)
	for _, p := range []string{"callback", "user", "operator", "admin"} {
		fmt.Fprintf(&b, "    allowed_auths_%s md5\n", p)
	}
	b.WriteString("    guid a123456789abcdefa123456789abcdef\n  endlan\n")
	if o.SerialPort != 0 {
		fmt.Fprintf(&b, "  serial 15 %s %d codec VM\n", o.Addr, o.SerialPort)
	}
	if o.StartCmd != "" {
		fmt.Fprintf(&b, "  startcmd \"%s\"\n  startnow false\n  poweroff_wait %d\n  kill_wait 2\n", o.StartCmd, o.PoweroffWait)
	}
	if o.ChassisControl != "" {
		fmt.Fprintf(&b, "  chassis_control \"%s 0x20\"\n", o.ChassisControl)
	}
	fmt.Fprintf(&b, "  user 2 true \"%s\" \"%s\" admin 10 md5\n", o.User, o.Password)
	conf := filepath.Join(o.Dir, "lan.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	emu := filepath.Join(o.Dir, "bmc.emu")
	cmds := "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n"
	if err := os.WriteFile(emu, []byte(cmds), 0o600); err != nil {
		return nil, err
	}
	s := &Sim{Options: o, Log: filepath.Join(o.Dir, "ipmi_sim.log"), done: make(chan struct{})}
	log, err := os.Create(s.Log)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	argv := append(append([]string{}, o.Wrap...), "ipmi_sim", "-c", conf, "-f", emu, "-s", state, "-n")
	s.Cmd = exec.Command(argv[0], argv[1:]...)
	s.Cmd.Stdout, s.Cmd.Stderr = log, log
	s.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := s.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ipmi_sim (Debian package openipmi): %w", err)
	}
	go func() { s.Cmd.Wait(); close(s.done) }()
	// ipmi_sim prints nothing when it is up; give it a moment to bind, and
	// fail with its log when it exits instead.
	select {
	case <-s.done:
		out, _ := os.ReadFile(s.Log)
		return nil, fmt.Errorf("ipmi_sim exited at start: %s", strings.TrimSpace(string(out)))
	case <-time.After(500 * time.Millisecond):
	}
	return s, nil
}

// Stop ends ipmi_sim and what it started (its process group), by PID.
func (s *Sim) Stop() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	pgid := s.Cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.done
	}
	return nil
}

// Exited reports whether ipmi_sim is gone.
func (s *Sim) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}
