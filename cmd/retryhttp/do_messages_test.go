package main

import (
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The command's messages are in its own words: the attempts counted once,
// flag names rather than the library's fields, no Go wording; the -timeout
// message says when it passed during an attempt or while the body was read.
func TestDoMessagesInTheCommandsWords(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/"
	ln.Close()
	hang := newServer(t, func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	stall := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write([]byte("0123456789"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	url := regexp.QuoteMeta
	tests := []struct {
		name string
		args []string
		code int
		line string // the last line of stderr, a regexp
	}{
		{"--retry exhausted", []string{"--retry", "2", "-base-delay", "1ms", closed}, 7,
			`^retryhttp do: GET ` + url(closed) + `: dial tcp [^ ]+: connect: connection refused after 3 attempts; gave up: that is all --retry 2 allows$`},
		{"-attempts exhausted", []string{"-attempts", "2", "-base-delay", "1ms", "-v", closed}, 7,
			`^retryhttp do: GET ` + url(closed) + `: dial tcp [^ ]+: connect: connection refused after 2 attempts; gave up: that is all -attempts allows$`},
		{"-attempt-timeout", []string{"-attempts", "2", "-base-delay", "1ms", "-attempt-timeout", "0.2", "-v", hang.URL + "/"}, 28,
			`^retryhttp do: GET ` + url(hang.URL) + `/: no response headers within -attempt-timeout 200ms after 2 attempts; gave up: that is all -attempts allows$`},
		{"-timeout during an attempt", []string{"-attempts", "3", "-timeout", "0.3", "-v", hang.URL + "/"}, 28,
			`^retryhttp do: GET ` + url(hang.URL) + `/: -timeout 300ms passed during attempt 1, before its response headers$`},
		{"-timeout during the body", []string{"-timeout", "0.3", "-o", "/dev/null", stall.URL + "/"}, 28,
			`^retryhttp do: GET ` + url(stall.URL) + `/: 200 OK: -timeout 300ms passed while the body was read$`},
		{"-max-delay below -base-delay", []string{"-base-delay", "1s", "-max-delay", "1ms", closed}, 2,
			`^retryhttp do: -max-delay: 1ms is below -base-delay 1s \(see retryhttp do -h\)$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, "", tt.args...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			assert.Regexp(t, tt.line, lines[len(lines)-1])
			for _, goWords := range []string{"context canceled", "deadline exceeded", "Policy.", "attempts failed"} {
				assert.NotContains(t, r.stderr, goWords)
			}
		})
	}
}
