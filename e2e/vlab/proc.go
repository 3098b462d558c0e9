package vlab

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Proc is a process the lab started: flint or a QEMU machine. It is only
// ever stopped by its own PID.
type Proc struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string // stdout and stderr
	done    chan struct{}
}

// Start runs cmd with its output appended to logPath. A detached process gets
// a session of its own and outlives the caller (`make lab`); otherwise it is
// killed when the caller dies, so a crashed or timed-out test leaves nothing.
func Start(name string, cmd *exec.Cmd, logPath string, detached bool) (*Proc, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if detached {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the process to end; false means it still runs.
func (p *Proc) Wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Done is closed when the process ends.
func (p *Proc) Done() <-chan struct{} { return p.done }

// State describes how the process ended, or that it runs.
func (p *Proc) State() string {
	if !p.Exited() {
		return fmt.Sprintf("pid %d running", p.PID())
	}
	return fmt.Sprintf("pid %d %v", p.PID(), p.Cmd.ProcessState)
}

// ExitCode is the exit status (-1 when killed by a signal or still running).
func (p *Proc) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.Cmd.ProcessState.ExitCode()
}

// Stop sends SIGTERM, then SIGKILL after grace, and waits for the end.
func (p *Proc) Stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	if p.Wait(grace) {
		return nil
	}
	_ = p.Cmd.Process.Kill()
	if !p.Wait(5 * time.Second) {
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.PID())
	}
	return nil
}

// StopPID stops a process started by an earlier `make lab` run, by PID. It
// first checks /proc/PID/cmdline still contains want, so a PID the kernel
// has since given to another program is left alone.
func StopPID(pid int, want string, grace time.Duration) error {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil // gone already
	}
	if !strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), want) {
		return nil // the PID was reused by something else
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for range 50 {
		if !alive(pid) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("pid %d (%s) survived SIGKILL", pid, want)
}

// alive is false once the process is gone or a zombie (it has exited).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses: "PID (comm) S ...".
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
