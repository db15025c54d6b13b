package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A body cut short (the connection closed before its Content-Length, or a
// chunked body without its last chunk) going to -o's temporary file, which
// nobody has seen, is asked for again from the start, within the attempts
// left; on standard output the bytes are already out, and it is not.
func TestDoResendsABodyCutShortIntoOutput(t *testing.T) {
	t.Parallel()
	const whole = "0123456789abcdefghij"
	tests := []struct {
		name    string
		cuts    int32 // the first requests whose body is cut short
		chunked bool
		args    []string
		toFile  bool
		code    int
		sent    int32
	}{
		{"cut once, Content-Length", 1, false, nil, true, 0, 2},
		{"cut once, chunked", 1, true, nil, true, 0, 2},
		{"cut twice, --retry 2", 2, false, []string{"--retry", "2"}, true, 0, 3},
		{"always cut: the attempts run out", 99, false, []string{"-attempts", "3"}, true, 18, 3},
		{"always cut, --retry 1", 99, true, []string{"--retry", "1"}, true, 18, 2},
		{"-attempts 1: not sent again", 99, false, []string{"-attempts", "1"}, true, 18, 1},
		{"POST without a key: not sent again", 99, false, []string{"-d", "x"}, true, 18, 1},
		{"POST with a key: sent again", 1, false, []string{"-d", "x", "-idempotency-key", "k"}, true, 0, 2},
		{"standard output: not sent again", 1, false, nil, false, 18, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var sent atomic.Int32
			url := serveConns(t, func(c net.Conn) {
				defer c.Close()
				if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					_, _ = io.Copy(io.Discard, req.Body) // read whole: closing with bytes unread would reset the connection
				}
				n := sent.Add(1)
				switch {
				case n <= tt.cuts && tt.chunked:
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n"+whole[:10]+"\r\n")
				case n <= tt.cuts:
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n"+whole[:10])
				default:
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"+whole)
				}
			})
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			args := append([]string{"-base-delay", "1ms"}, tt.args...)
			if tt.toFile {
				args = append(args, "-o", out)
			}
			r := do(t, "", append(args, url+"/file")...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			assert.Equal(t, tt.sent, sent.Load(), "requests sent")
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			switch {
			case !tt.toFile:
				assert.Equal(t, whole[:10], r.stdout, "the bytes that came, once")
				assert.Empty(t, entries)
			case tt.code == 0:
				got, err := os.ReadFile(out)
				require.NoError(t, err)
				assert.Equal(t, whole, string(got))
				assert.Len(t, entries, 1, "a temporary file was left")
				assert.Empty(t, r.stderr)
			default:
				assert.Empty(t, entries, "nothing at -o, no temporary file left")
				assert.Contains(t, r.stderr, "200 OK: the body was cut short (unexpected EOF) after ")
				if tt.name == "POST without a key: not sent again" {
					assert.Contains(t, r.stderr, "not sent again: POST is not idempotent and the server may have processed it; -idempotency-key allows it")
				}
				if tt.name == "standard output: not sent again" {
					assert.Contains(t, r.stderr, "not sent again: its bytes were already written out")
				}
			}
		})
	}
}
