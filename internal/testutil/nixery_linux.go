package testutil

import "syscall"

// sysProcAttr makes the kernel send the server SIGTERM when the process
// that started it dies, so that no server outlives its test or harness.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
