package main

// -data-binary @file: every attempt sends the bytes of the file opened
// first. A file replaced by rename between attempts (as an atomic writer
// does) does not change what the retry sends; one changed in place ends
// the command with 26 before a retry sends other bytes.

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bodyFile writes content to a new file, dated an hour ago so that a
// change made in place shows in its modification time whatever the
// filesystem's timestamp granularity.
func bodyFile(t *testing.T, content string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "body.json")
	require.NoError(t, os.WriteFile(name, []byte(content), 0o600))
	past := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(name, past, past))
	return name
}

// firstAttemptFails answers 503 to the first attempt, after change ran
// (the whole body was read by then), and 200 to the others.
func firstAttemptFails(t *testing.T, change func()) *server {
	t.Helper()
	return newServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			change()
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
}

func TestDoDataBinaryRetrySendsTheFileOpenedFirst(t *testing.T) {
	t.Parallel()
	const original = `{"version":1}`
	for _, tt := range []struct{ name, replacement string }{
		{"same size", `{"version":2}`},
		{"longer", `{"version":2,"more":true}`},
		{"shorter", `{}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name := bodyFile(t, original)
			s := firstAttemptFails(t, func() { // as an atomic writer replaces a file
				tmp := name + ".new"
				if err := os.WriteFile(tmp, []byte(tt.replacement), 0o600); err == nil {
					_ = os.Rename(tmp, name)
				}
			})
			r := do(t, "", "-X", "PUT", "-data-binary", "@"+name, s.URL)
			assert.Equal(t, 0, r.code, r.stderr)
			assert.Equal(t, "ok", r.stdout)
			s.mu.Lock()
			defer s.mu.Unlock()
			assert.Equal(t, []string{original, original}, s.bodies, "the retry sent other bytes")
			got, _ := os.ReadFile(name)
			assert.Equal(t, tt.replacement, string(got), "the file was replaced")
		})
	}
}

func TestDoDataBinaryChangedInPlaceIsNotSentAgain(t *testing.T) {
	t.Parallel()
	const original = `{"version":1}`
	for _, tt := range []struct {
		name   string
		change func(name string) error
		how    string
	}{
		{"grown", func(name string) error {
			f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("appended")
			return err
		}, "its size is now 21 bytes, not 13"},
		{"truncated", func(name string) error { return os.Truncate(name, 3) }, "its size is now 3 bytes, not 13"},
		{"rewritten at the same size", func(name string) error {
			return os.WriteFile(name, []byte(`{"version":2}`), 0o600)
		}, "it was modified"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name := bodyFile(t, original)
			s := firstAttemptFails(t, func() { assert.NoError(t, tt.change(name)) })
			r := do(t, "", "-X", "PUT", "-data-binary", "@"+name, "-w", "%{http_code} %{exitcode}", s.URL)
			assert.Equal(t, 26, r.code, r.stderr)
			assert.Equal(t, "503 26", r.stdout)
			assert.Equal(t, int32(1), s.attempts.Load(), "a retry was sent with other bytes")
			line := onlyLine(t, r.stderr)
			assert.Contains(t, line, "-data-binary @"+name+" changed while being sent: "+tt.how)
			assert.Contains(t, line, "stopped after 1 attempt rather than send other bytes")
		})
	}
}

// The file is truncated while the first attempt is still reading it: the
// attempt ends there, rather than send fewer bytes than it announced, and
// no retry follows.
func TestDoDataBinaryTruncatedWhileBeingSent(t *testing.T) {
	t.Parallel()
	const size = 32 << 20 // far more than the loopback socket buffers hold
	name := bodyFile(t, strings.Repeat("x", size))
	var attempts atomic.Int32
	received := make(chan int64, 4)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		head := make([]byte, 64<<10)
		n, _ := io.ReadFull(r.Body, head)
		if err := os.Truncate(name, 0); err != nil {
			t.Error(err)
		}
		rest, _ := io.Copy(io.Discard, r.Body)
		received <- int64(n) + rest
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	t.Cleanup(s.Close)
	r := do(t, "", "-X", "PUT", "-data-binary", "@"+name, s.URL)
	assert.Equal(t, 26, r.code, r.stderr)
	assert.Equal(t, int32(1), attempts.Load(), "a retry was sent with other bytes")
	line := onlyLine(t, r.stderr)
	assert.Contains(t, line, "-data-binary @"+name+" changed while being sent: it ended after ")
	assert.Contains(t, line, "of its 33554432 bytes")
	select {
	case got := <-received:
		assert.Less(t, got, int64(size), "the attempt was not cut short")
	case <-time.After(10 * time.Second):
		t.Error("the server never finished reading the body")
	}
	assert.Empty(t, r.stdout)
}
