package chserver

import (
	"os"
	"syscall"
)

// sysProcAttr puts the server in its own process group, so that a signal to
// the test's process group (Ctrl-C) does not reach it before Stop does, and
// asks the kernel to SIGKILL it when its parent dies, so that a test binary
// that panics or is killed leaves no server behind. Pdeathsig fires when the
// OS thread that started the child exits; the Go runtime only ends threads of
// goroutines that exit while locked to them, which Start never does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends sig to the process group led by p.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	return syscall.Kill(-p.Pid, sig)
}
