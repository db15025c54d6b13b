package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// built holds the command a test binary built, once.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Retryhttp returns the path of the retryhttp command, built once per test
// binary, for tests that run it as a user would. Call RemoveBuilt from
// TestMain once the tests have run.
func Retryhttp(tb testing.TB) string {
	tb.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "retryhttp-cmd"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "retryhttp")
		out, err := exec.Command("go", "build", "-o", built.path, "github.com/retryhttp/retryhttp/cmd/retryhttp").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("building the retryhttp command: %v: %s", err, out)
		}
	})
	if built.err != nil {
		tb.Fatal(built.err)
	}
	return built.path
}

// RemoveBuilt removes what Retryhttp built, if anything.
func RemoveBuilt() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}
