//go:build unix && !linux

package chserver

import (
	"os"
	"syscall"
)

// sysProcAttr puts the server in its own process group. Outside Linux there
// is no parent-death signal: a test binary that is killed leaves its server
// running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup sends sig to the process group led by p.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	return syscall.Kill(-p.Pid, sig)
}
