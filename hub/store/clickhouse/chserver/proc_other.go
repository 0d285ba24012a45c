//go:build !unix

package chserver

import (
	"os"
	"syscall"
)

// sysProcAttr has nothing to add where there are no process groups.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup kills p: without Unix signals there is no graceful stop.
func signalGroup(p *os.Process, _ syscall.Signal) error { return p.Kill() }
