package retryhttp

import (
	"bufio"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawServer answers every connection with the bytes of reply, after reading
// the request head, and counts the connections.
func rawServer(t *testing.T, reply string) (addr string, conns func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	count := make(chan struct{}, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			count <- struct{}{}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				_, _ = c.Write([]byte(reply))
			}()
		}
	}()
	return ln.Addr().String(), func() int { return len(count) }
}

func TestMalformedAndHugeResponsesAreClearErrors(t *testing.T) {
	huge := "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\nContent-Length: 0\r\n\r\n"
	// A header line without a colon is what a response cut in the middle of
	// its header looks like, so it is retried like a broken connection;
	// the rest is final.
	tests := []struct {
		name     string
		reply    string
		want     string
		attempts int
	}{
		{"malformed header line", "HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n", "malformed MIME header", 3},
		{"malformed status line", "HTTP/9 banana\r\n\r\n", "malformed HTTP", 1},
		{"headers over the limit", huge, "exceeded", 1},
		{"not HTTP at all", "\x00\x01\x02garbage\r\n\r\n", "malformed HTTP", 1},
	}
	before := runtime.NumGoroutine()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, conns := rawServer(t, tt.reply)
			tr, clock := newTestTransport(t)
			tr.base.(*http.Transport).MaxResponseHeaderBytes = 16 << 10
			resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://"+addr+"/", nil))
			require.Error(t, err)
			assert.Nil(t, resp)
			assert.Contains(t, err.Error(), tt.want)
			var rerr *Error
			require.ErrorAs(t, err, &rerr)
			assert.Equal(t, tt.attempts, rerr.Attempts)
			assert.Len(t, clock.recorded(), tt.attempts-1)
			assert.Equal(t, tt.attempts, conns())
			tr.CloseIdleConnections()
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), before, "no goroutine left behind")
}
