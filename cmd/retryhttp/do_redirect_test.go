package main

// Redirects and credentials: where do follows, with which method, and that
// credentials never reach another origin or an error message.

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// curl (since 7.83, CVE-2022-27776) never sends -u's credentials, nor a
// custom Authorization, to another port: it is another service.
func TestCredentialsNotSentToAnotherPort(t *testing.T) {
	t.Parallel()
	other := newServer(t, failing(0, 0))
	start := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/landing", http.StatusFound)
	})
	for _, auth := range [][]string{{"-u", "alice:s3cret"}, {"-H", "Authorization: Bearer t0ken"}} {
		r := do(t, "", append(auth, start.URL)...)
		require.Equal(t, 0, r.code, r.stderr)
		_, _, h := lastRequest(other)
		assert.Empty(t, h.Get("Authorization"), "%v leaked to %s", auth, other.URL)
	}
}

// Another host name (localhost for 127.0.0.1): credentials dropped, as curl.
func TestCredentialsNotSentToAnotherHost(t *testing.T) {
	t.Parallel()
	other := newServer(t, failing(0, 0))
	otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	start := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/same" {
			_, _ = io.WriteString(w, "same")
			return
		}
		if r.URL.Path == "/rel" {
			w.Header().Set("Location", "same") // relative
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		http.Redirect(w, r, otherURL+"/landing", http.StatusFound)
	})
	r := do(t, "", "-u", "alice:s3cret", start.URL)
	require.Equal(t, 0, r.code, r.stderr)
	_, _, h := lastRequest(other)
	assert.Empty(t, h.Get("Authorization"))

	r = do(t, "", "-u", "alice:s3cret", start.URL+"/rel")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "same", r.stdout, "a relative Location is resolved")
	_, _, h = lastRequest(start)
	assert.NotEmpty(t, h.Get("Authorization"), "the same host keeps them")
}

// POST, then 301/302/303: GET without the body (as curl -L); 307/308 keep
// the method and the body (-d is in memory).
func TestRedirectMethods(t *testing.T) {
	t.Parallel()
	for _, code := range []int{301, 302, 303, 307, 308} {
		s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/target" {
				_, _ = io.WriteString(w, "arrived")
				return
			}
			w.Header().Set("Location", "/target")
			w.WriteHeader(code)
			_, _ = io.WriteString(w, "moved")
		})
		r := do(t, "", "-d", "a=1", s.URL)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, "arrived", r.stdout)
		method, body, _ := lastRequest(s)
		if code >= 307 {
			assert.Equal(t, "POST a=1", method+" "+body, "%d", code)
		} else {
			assert.Equal(t, "GET ", method+" "+body, "%d", code)
		}
	}
}

// The stderr line after a redirect counts the attempts of the request that
// failed, and says how many redirects came before; -w's num_attempts
// counts them all (it once said "after 2 attempts; gave up: all 1
// attempts failed").
func TestAttemptCountAfterARedirect(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, "/moved", http.StatusFound)
	})
	for _, tt := range []struct{ attempts, line, writeOut string }{
		{"1", "503 Service Unavailable after 1 attempt (and 1 redirect before); not retried: -attempts 1 allows no retry", "2"},
		{"3", "503 Service Unavailable after 3 attempts (and 1 redirect before); gave up: that is all -attempts allows", "4"},
	} {
		r := do(t, "", "-attempts", tt.attempts, "-w", "%{num_attempts}", s.URL)
		assert.Equal(t, 22, r.code)
		assert.Contains(t, r.stderr, tt.line)
		assert.Equal(t, tt.writeOut, r.stdout, "num_attempts counts every redirect's")
	}
}

func TestNoPasswordOrQueryInMessages(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/start" {
			http.Redirect(w, r, "/next?sig=redirsecret", http.StatusFound)
			return
		}
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	u := strings.Replace(s.URL, "http://", "http://bob:pw-hunter2@", 1)
	r := do(t, "", "-v", "-attempts", "2", u+"/start?token=qsecret")
	assert.Equal(t, 22, r.code)
	for _, secret := range []string{"hunter2", "qsecret", "redirsecret"} {
		assert.NotContains(t, r.stderr, secret)
	}
	_, _, h := lastRequest(s)
	assert.NotEmpty(t, h.Get("Authorization"), "userinfo is sent as basic auth")

	r = do(t, "", "-attempts", "2", "http://bob:pw-hunter2@127.0.0.1:1/x?token=qsecret")
	assert.Equal(t, 7, r.code)
	assert.NotContains(t, r.stderr, "hunter2")
	assert.NotContains(t, r.stderr, "qsecret")
}

// user:pass@host is sent as basic auth, percent-decoded; -u wins over it,
// as curl's -u does.
func TestURLUserinfoAndU(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	auth := func() (string, string, bool) {
		_, _, h := lastRequest(s)
		req := &http.Request{Header: h}
		return req.BasicAuth()
	}
	u := strings.Replace(s.URL, "http://", "http://bob:p%40ss%3Aw@", 1)
	r := do(t, "", u+"/")
	require.Equal(t, 0, r.code, r.stderr)
	user, pass, ok := auth()
	assert.True(t, ok)
	assert.Equal(t, "bob p@ss:w", user+" "+pass, "URL userinfo is percent-decoded")

	r = do(t, "", "-u", "alice:secret", u+"/")
	require.Equal(t, 0, r.code, r.stderr)
	user, pass, _ = auth()
	assert.Equal(t, "alice secret", user+" "+pass, "-u overrides the URL's userinfo, as curl")
}

// The README: "the credentials of -u and of -H Authorization or Cookie are
// not sent to another host, port or scheme", so they are sent on a
// redirect to the same origin: with -u, and with user:pass@host in the
// URL (which curl treats as -u) too.
func TestURLCredentialsFollowASameOriginRedirect(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/start" {
			http.Redirect(w, r, "/next", http.StatusFound)
			return
		}
		if _, _, ok := r.BasicAuth(); !ok {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "welcome")
	})
	r := do(t, "", "-u", "bob:pw", s.URL+"/start")
	require.Equal(t, 0, r.code, "with -u: %s", r.stderr)
	assert.Equal(t, "welcome", r.stdout)

	u := strings.Replace(s.URL, "http://", "http://bob:pw@", 1)
	r = do(t, "", u+"/start")
	assert.Equal(t, 0, r.code, "credentials in the URL are not sent after a same-origin redirect (curl sends them, and -u does): %s", r.stderr)
	assert.Equal(t, "welcome", r.stdout)
}

// A redirect to a host that refuses: the line says the first URL (which
// answered 302 fine) failed with "connection refused", and -w
// %{url_effective} names it too; curl's url_effective is the URL that
// was tried last. The cause: runDo builds the line and -w's URL from the
// original request when client.Do returns an error, though the
// *url.Error it returns names the URL that failed.
func TestFailureAfterRedirectNamesTheTarget(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/target", http.StatusFound)
	})
	r := do(t, "", "-attempts", "2", "-w", "%{url_effective} %{num_redirects} %{exitcode}", s.URL+"/start")
	assert.Equal(t, 7, r.code, r.stderr)
	assert.Equal(t, "http://127.0.0.1:1/target 1 7", r.stdout, "-w names the URL that answered, not the one that failed")
	assert.Regexp(t, `^retryhttp do: GET http://127\.0\.0\.1:1/target: dial tcp 127\.0\.0\.1:1: connect: connection refused after 2 attempts \(and 1 redirect before\)`, r.stderr,
		"the line blames the URL that redirected")
}
