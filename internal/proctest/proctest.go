// Package proctest tells where a process is blocked, from Linux's
// /proc/PID/task/TID/syscall, so that a test signals a command only once
// it is blocked in a given system call, rather than after a guessed sleep.
// Tests only.
package proctest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Available reports whether this system shows where its threads block
// (Linux with /proc/PID/syscall); a test that needs it skips otherwise.
func Available() error {
	_, err := os.ReadFile("/proc/self/syscall")
	return err
}

// InSyscall reports whether a thread of process pid is in system call nr
// now, with fd as its first argument when fd is not negative.
func InSyscall(pid int, nr uintptr, fd int) bool {
	want := strconv.FormatUint(uint64(nr), 10) + " "
	if fd >= 0 {
		want += fmt.Sprintf("0x%x ", fd)
	}
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(b), want) {
			return true
		}
	}
	return false
}
