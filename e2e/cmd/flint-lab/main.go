// Command flint-lab runs the e2e suite's virtual lab for people: a network
// namespace with a bridge, flint serving it, and five QEMU machines booting
// from flint (SeaBIOS + iPXE, OVMF native PXE, OVMF + e1000, OVMF HTTP boot,
// OVMF Secure Boot). Run it as root
// from the repository root; `make lab` and `make lab-down` do.
//
//	flint-lab up     [--flint bin/flint] [--dir .work/lab]   start it all, return, leave it running
//	flint-lab status [--dir .work/lab]                       the machines as flint sees them
//	flint-lab down   [--dir .work/lab]                       stop everything (by PID), delete the namespace
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/flint-boot/flint/e2e/vlab"
)

// namespace is fixed, so there is one lab per host and `down` always finds it.
const namespace = "flt-lab"

// vmTimeout ends a lab machine that neither powered off nor was stopped.
const vmTimeout = 10 * time.Minute

// state is what `up` leaves for `down` in DIR/lab.json.
type state struct {
	NS       string    `json:"namespace"`
	Dir      string    `json:"dir"`
	FlintBin string    `json:"flint_bin"`
	Config   string    `json:"config"`
	DataDir  string    `json:"data_dir"`
	FlintPID int       `json:"flint_pid"`
	VMs      []vmState `json:"vms"`
	Started  time.Time `json:"started"`
}

type vmState struct {
	Name   string `json:"name"`
	PID    int    `json:"pid"`
	Serial string `json:"serial_log"`
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", ".work/lab", "directory for config, flint's data, logs and the lab state")
	flintBin := fs.String("flint", "bin/flint", "flint binary to serve the lab (up only)")
	_ = fs.Parse(os.Args[2:])
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fail(err)
	}
	switch os.Args[1] {
	case "up":
		err = up(abs, *flintBin)
	case "down":
		err = down(abs)
	case "status":
		err = status(abs)
	default:
		usage()
	}
	if err != nil {
		fail(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: flint-lab up|status|down [--dir .work/lab] [--flint bin/flint]")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "flint-lab:", err)
	os.Exit(1)
}

func up(dir, flintBin string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, tap devices): sudo make lab")
	}
	if _, err := os.Stat("/run/netns/" + namespace); err == nil {
		return fmt.Errorf("namespace %s exists: a lab is already up; stop it with `make lab-down` first", namespace)
	}
	flintBin, err := filepath.Abs(flintBin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(flintBin); err != nil {
		return fmt.Errorf("%w (make build)", err)
	}
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	fmt.Println("flint-lab: building the test OS (cached after the first run)")
	osDir, err := vlab.BuildTestOS(repo, filepath.Join(repo, ".work", "e2e"), os.Stderr)
	if err != nil {
		return err
	}
	// A fresh lab every time: no leases or timelines from the last one.
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	lab, err := vlab.Up(vlab.Options{
		NS: namespace, Dir: dir, FlintBin: flintBin, TestOSDir: osDir,
		VMs: vlab.Machines, Detached: true, VMTimeout: vmTimeout,
	})
	if err != nil {
		return err
	}
	st := state{NS: namespace, Dir: dir, FlintBin: flintBin, Config: lab.ConfigPath, DataDir: lab.DataDir,
		FlintPID: lab.Flint.PID(), Started: time.Now()}
	for _, v := range vlab.Machines {
		p, err := lab.StartVM(v)
		if err != nil {
			return errors.Join(err, lab.Down())
		}
		st.VMs = append(st.VMs, vmState{Name: v.Name, PID: p.PID(), Serial: v.SerialLog(dir)})
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "lab.json"), b, 0o644); err != nil {
		return errors.Join(err, lab.Down())
	}

	rel := func(p string) string {
		if r, err := filepath.Rel(repo, p); err == nil {
			return r
		}
		return p
	}
	fmt.Printf(`
flint lab is up in network namespace %s: bridge %s, flint at %s and %s
  flint   pid %-7d log %s, config %s, admin socket %s
`, namespace, vlab.Bridge, vlab.FlintURL, vlab.FlintHTTPSURL, st.FlintPID, rel(lab.FlintLog), rel(lab.ConfigPath), rel(lab.Admin.Socket))
	for i, v := range vlab.Machines {
		fmt.Printf("  %-7s pid %-7d %s %s %s  %s\n          serial console: tail -f %s\n",
			v.Name, st.VMs[i].PID, v.Hostname, v.MAC, v.IP, v.Desc, rel(st.VMs[i].Serial))
	}
	fmt.Printf(`
The machines boot now (about a minute without KVM) and power off once
Ignition has applied their configs. flint keeps running. Watch them, as root
(flint's admin API is on its socket, 0600, not on plain HTTP):
  watch -n1 %[1]s machines --data %[2]s
  curl -s --unix-socket %[3]s http://flint/api/v1/machines/%[4]s/events     (one machine's boot timeline)
  go run ./e2e/cmd/flint-lab status
Stop it all (VMs, flint, namespace; logs stay in %[5]s):
  make lab-down
`, rel(flintBin), rel(lab.DataDir), rel(lab.Admin.Socket), vlab.Machines[1].HexHyp(), rel(dir))
	return nil
}

func readState(dir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil {
		return nil, fmt.Errorf("no lab state in %s (%w): is a lab up? (make lab)", dir, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s/lab.json: %w", dir, err)
	}
	return &st, nil
}

func down(dir string) error {
	st, err := readState(dir)
	if err != nil {
		// No state but a namespace: an `up` that died half-way. Still clean up.
		if _, statErr := os.Stat("/run/netns/" + namespace); statErr == nil {
			fmt.Printf("flint-lab: no state file, deleting namespace %s\n", namespace)
			return (&vlab.Network{NS: namespace}).Destroy()
		}
		fmt.Printf("flint-lab: no lab is up (%v)\n", err)
		return nil
	}
	var errs []error
	for _, v := range st.VMs {
		// QEMU's command line names the machine (-name flint-NAME): a reused PID is left alone.
		errs = append(errs, vlab.StopPID(v.PID, "flint-"+v.Name, 3*time.Second))
	}
	errs = append(errs, vlab.StopPID(st.FlintPID, st.Config, 10*time.Second))
	n := &vlab.Network{NS: st.NS}
	if n.Exists() {
		errs = append(errs, n.Destroy())
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(dir, "lab.json"))
	fmt.Printf("flint-lab: stopped flint (pid %d) and %d machines, deleted namespace %s; logs kept in %s\n",
		st.FlintPID, len(st.VMs), st.NS, dir)
	return nil
}

func status(dir string) error {
	st, err := readState(dir)
	if err != nil {
		return err
	}
	for _, v := range st.VMs {
		state := "powered off"
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", v.PID)); err == nil {
			state = "running"
		}
		c := vlab.ParseConsole(readFile(v.Serial))
		progress := "firmware / iPXE"
		switch {
		case c.Fail != "":
			progress = "test OS failed: " + c.Fail
		case c.Done != "":
			progress = "Ignition applied: " + c.Done
		case c.IgnitionURL != "":
			progress = "test OS running Ignition"
		case c.Booted:
			progress = "test OS booting"
		}
		fmt.Printf("%-6s pid %-7d %-12s %s\n", v.Name, v.PID, state, progress)
	}
	fmt.Println()
	cmd := vlab.FlintMachinesCmd(st.FlintBin, st.DataDir)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
